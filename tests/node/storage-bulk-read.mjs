// storage-bulk-read: a fresh account reads every stream storage-bulk-write.mjs
// wrote, one after the other, byte-exact, then the first few again (by then a
// server with a small memory budget has evicted them and reads them from its
// database again).
//
// usage: node storage-bulk-read.mjs ws://HOST:PORT/sync IN.json [--again N]
//   N (default 5): how many of the first streams are read a second time, by
//   a second fresh client (the first one holds them already).
import { log, newClient, scenario, urlArg } from "./lib.mjs";
import { assertSame, readBinary, readJson } from "./storage-lib.mjs";

const url = urlArg();
const args = process.argv.slice(2);
const inPath = args.find((a) => a.endsWith(".json"));
const againIdx = args.indexOf("--again");
const AGAIN = againIdx >= 0 ? Number(args[againIdx + 1]) : 5;
if (!inPath) {
  console.error("usage: node storage-bulk-read.mjs ws://HOST:PORT/sync IN.json [--again N]");
  process.exit(2);
}
const { bytes, streams } = readJson(inPath);

async function readAll(client, list, what) {
  for (const s of list) {
    const got = await readBinary(client.node, s.id, `${what} ${s.fileName}`);
    assertSame(
      { fileName: got.fileName, totalSizeBytes: got.totalSizeBytes, sha256: got.sha256 },
      { fileName: s.fileName, totalSizeBytes: bytes, sha256: s.sha256 },
      `${what} ${s.fileName}`,
    );
  }
}

await scenario(
  "storage-bulk-read",
  async () => {
    const reader = await newClient(url, "Bulk Reader");
    await readAll(reader, streams, "stream");
    log(`read ${streams.length} streams of ${bytes} bytes`);
    console.log(`READ ALL streams=${streams.length}`);
    const again = await newClient(url, "Bulk Reader Again");
    await readAll(again, streams.slice(0, AGAIN), "stream (again)");
    log(`read the first ${AGAIN} again`);
  },
  { timeoutMs: 80_000 },
);
