// storage-read: reads back what storage-write.mjs wrote (its OUT.json), from a
// server that was restarted on the same database, or another server (the
// reference, or maia-sync) opened on that database.
//
// usage: node storage-read.mjs ws://HOST:PORT/sync IN.json
//
// 1. A fresh account (new, never seen by the writer) loads the public values
//    (readable by `everyone`): the map, the list, the CoStream and the binary
//    stream (byte-exact), and the writer's profile name.
// 2. A client logged in as the writer (its account loaded from the server with
//    the secret) reads the private map and the public map.
import { log, newClient, scenario, urlArg, waitFor } from "./lib.mjs";
import { assertSame, closeAll, loadFully, loginClient, readBinary, readJson } from "./storage-lib.mjs";

const url = urlArg();
const inPath = process.argv.slice(2).find((a) => a.endsWith(".json"));
if (!inPath) {
  console.error("usage: node storage-read.mjs ws://HOST:PORT/sync IN.json");
  process.exit(2);
}
const { accountID, accountSecret, ids, expected } = readJson(inPath);

await scenario(
  "storage-read",
  async () => {
    try {
      const reader = await newClient(url, "Fresh Reader");
      const rn = reader.node;

      const pubMap = (await loadFully(rn, ids.pubMap, "pubMap")).getCurrentContent();
      assertSame(pubMap.toJSON(), expected.pubMap, "pubMap read by a fresh account");

      const list = (await loadFully(rn, ids.list, "list")).getCurrentContent();
      assertSame(list.asArray(), expected.list, "list read by a fresh account");

      const stream = (await loadFully(rn, ids.stream, "stream")).getCurrentContent();
      assertSame(stream.getSingleStream(), expected.stream, "CoStream read by a fresh account");

      const file = await readBinary(rn, ids.file, "file");
      assertSame(file, expected.file, "binary stream read by a fresh account");

      const account = (await loadFully(rn, ids.account, "the writer's account")).getCurrentContent();
      assertSame(account.get("profile"), ids.profile, "the writer's profile ID");
      const profile = (await loadFully(rn, ids.profile, "the writer's profile")).getCurrentContent();
      assertSame(profile.get("name"), expected.profileName, "the writer's profile name");

      // Private data: the fresh account may load it (the server serves
      // anything) but cannot decrypt it.
      const hidden = (await loadFully(rn, ids.secretMap, "secretMap (as a stranger)")).getCurrentContent();
      assertSame(hidden.get("secret"), undefined, "secretMap as seen by a stranger");
      log("fresh account read the public values");

      const owner = await loginClient(url, accountID, accountSecret, "Writer again");
      const secretMap = (await loadFully(owner, ids.secretMap, "secretMap")).getCurrentContent();
      assertSame(secretMap.toJSON(), expected.secretMap, "secretMap read by the writer's account");
      const pubAgain = (await loadFully(owner, ids.pubMap, "pubMap (writer)")).getCurrentContent();
      assertSame(pubAgain.toJSON(), expected.pubMap, "pubMap read by the writer's account");
      await waitFor("the writer's role in its private group", async () => {
        const g = (await loadFully(owner, ids.privGroup, "privGroup")).getCurrentContent();
        return g.myRole() === "admin";
      });
      log("the writer's account read its private values");
      console.log(
        `values ok: pubMap ${JSON.stringify(pubMap.toJSON())}, list ${JSON.stringify(list.asArray())}, ` +
          `file ${file.totalSizeBytes} bytes in ${file.chunkCount} chunks, secretMap ${JSON.stringify(secretMap.toJSON())}`,
      );
    } finally {
      closeAll();
    }
  },
  { timeoutMs: 50_000 },
);
