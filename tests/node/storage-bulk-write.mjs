// storage-bulk-write: fills the server with many binary streams (for the
// memory-budget test: more data than the server's cache may hold), waits
// until the server acknowledged all of it, and saves the IDs and SHA-256 of
// every stream to a JSON file for storage-bulk-read.mjs.
//
// usage: node storage-bulk-write.mjs ws://HOST:PORT/sync OUT.json [--count N] [--bytes B]
//   N streams (default 40) of B bytes each (default 400 000), in 100 KiB
//   chunks, in a group readable by `everyone`. Prints `TOTAL bytes=...`.
import { cojsonInternals } from "cojson";
import { log, newClient, scenario, tick, urlArg } from "./lib.mjs";
import { patternBytes, sha256, writeJson } from "./storage-lib.mjs";

const url = urlArg();
const args = process.argv.slice(2);
const outPath = args.find((a) => a.endsWith(".json"));
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const COUNT = opt("--count", 40);
const BYTES = opt("--bytes", 400_000);
if (!outPath || !(COUNT > 0) || !(BYTES > 0)) {
  console.error("usage: node storage-bulk-write.mjs ws://HOST:PORT/sync OUT.json [--count N] [--bytes B]");
  process.exit(2);
}

await scenario(
  "storage-bulk-write",
  async () => {
    const w = await newClient(url, "Bulk Writer");
    const group = w.node.createGroup();
    group.addMember("everyone", "reader");
    const CHUNK = cojsonInternals.TRANSACTION_CONFIG.MAX_RECOMMENDED_TX_SIZE;
    const streams = [];
    for (let n = 0; n < COUNT; n++) {
      const bytes = patternBytes(BYTES, 1000 + n);
      const file = group.createBinaryStream();
      file.startBinaryStream({
        mimeType: "application/x-maia-test",
        fileName: `bulk-${n}.bin`,
        totalSizeBytes: BYTES,
      });
      for (let off = 0; off < BYTES; off += CHUNK) {
        file.pushBinaryStreamChunk(bytes.subarray(off, off + CHUNK));
        await tick();
      }
      file.endBinaryStream();
      streams.push({ id: file.id, fileName: `bulk-${n}.bin`, sha256: sha256(bytes) });
      // Keep the amount in flight bounded.
      if (n % 8 === 7) await w.synced(60_000);
    }
    await w.synced(60_000);
    writeJson(outPath, { bytes: BYTES, streams });
    console.log(`TOTAL bytes=${COUNT * BYTES} streams=${COUNT}`);
    log("all acknowledged by the server");
  },
  { timeoutMs: 80_000 },
);
