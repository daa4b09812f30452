// storage-write: a new account writes a known set of values to the server and
// waits until the server has acknowledged all of it, then saves what it wrote
// (IDs, the account's secret and the expected values) to a JSON file for
// storage-read.mjs, which reads them back later (after a restart, or through
// another server opened on the same database).
//
// usage: node storage-write.mjs ws://HOST:PORT/sync OUT.json
//
// Written:
//   - a group readable by `everyone`, holding
//       pubMap: title, count 1 -> 2 -> 3, nested JSON (private), plain
//               (trusting), temp set then deleted;
//       list:   "a","b","c" appended one by one, then "d", then "b" deleted;
//       file:   a binary stream of 300 000 deterministic bytes in 100 KiB
//               chunks one tick apart, as jazz-tools FileStream writes (each
//               chunk is its own content message with its own signature);
//       stream: a plain CoStream with 3 entries;
//   - a private group (only the writer), holding secretMap (readable only by
//     logging in as the writer).
import { cojsonInternals } from "cojson";
import { log, newClient, scenario, tick, urlArg } from "./lib.mjs";
import { patternBytes, sha256, writeJson } from "./storage-lib.mjs";

const url = urlArg();
const outPath = process.argv.slice(2).find((a) => a.endsWith(".json"));
if (!outPath) {
  console.error("usage: node storage-write.mjs ws://HOST:PORT/sync OUT.json");
  process.exit(2);
}

const FILE_BYTES = 300_000;
const FILE_SEED = 99;

await scenario(
  "storage-write",
  async () => {
    const w = await newClient(url, "Persistent Writer");
    const pub = w.node.createGroup();
    pub.addMember("everyone", "reader");

    const pubMap = pub.createMap();
    pubMap.set("title", "persisted title");
    pubMap.set("count", 1);
    await tick();
    pubMap.set("count", 2);
    pubMap.set("nested", { a: [1, 2, 3], b: { c: "d" } });
    await tick();
    pubMap.set("count", 3);
    pubMap.set("plain", "trusting value", "trusting");
    pubMap.set("temp", "to be deleted", "trusting");
    await tick();
    pubMap.delete("temp", "trusting");

    const list = pub.createList();
    for (const item of ["a", "b", "c"]) {
      list.append(item);
      await tick();
    }
    list.append("d", undefined, "trusting");
    list.delete(1);

    const stream = pub.createStream();
    for (const item of ["s1", { s: 2 }, 3]) stream.push(item);

    const bytes = patternBytes(FILE_BYTES, FILE_SEED);
    const CHUNK = cojsonInternals.TRANSACTION_CONFIG.MAX_RECOMMENDED_TX_SIZE;
    const file = pub.createBinaryStream();
    file.startBinaryStream({
      mimeType: "application/x-maia-test",
      fileName: "persisted.bin",
      totalSizeBytes: FILE_BYTES,
    });
    let chunks = 0;
    for (let off = 0; off < FILE_BYTES; off += CHUNK) {
      file.pushBinaryStreamChunk(bytes.subarray(off, off + CHUNK));
      chunks++;
      await tick();
    }
    file.endBinaryStream();

    const priv = w.node.createGroup();
    const secretMap = priv.createMap();
    secretMap.set("secret", "only the writer can read this");
    secretMap.set("n", 7);

    await w.synced();
    log("all acknowledged by the server");

    const account = w.node.expectCurrentAccount("writer");
    writeJson(outPath, {
      accountID: w.accountID,
      accountSecret: w.accountSecret,
      ids: {
        account: w.accountID,
        profile: account.get("profile"),
        pubGroup: pub.id,
        privGroup: priv.id,
        pubMap: pubMap.id,
        list: list.id,
        stream: stream.id,
        file: file.id,
        secretMap: secretMap.id,
      },
      expected: {
        profileName: "Persistent Writer",
        pubMap: {
          title: "persisted title",
          count: 3,
          nested: { a: [1, 2, 3], b: { c: "d" } },
          plain: "trusting value",
        },
        list: ["a", "c", "d"],
        stream: ["s1", { s: 2 }, 3],
        file: {
          mimeType: "application/x-maia-test",
          fileName: "persisted.bin",
          totalSizeBytes: FILE_BYTES,
          chunkCount: chunks,
          finished: true,
          sha256: sha256(bytes),
        },
        secretMap: { secret: "only the writer can read this", n: 7 },
      },
    });
    log(`wrote ${outPath}`);
  },
  { timeoutMs: 50_000 },
);
