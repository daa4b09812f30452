// storage-fixture-read: a real cojson client logs in, through the server, with
// the account of a shared/fixtures database the server was started on, and
// reads every value back: the CoMap, the profile name, the group (whose extra
// key is invalid and so invisible) and both binary streams byte-exact.
//
// usage: node storage-fixture-read.mjs ws://HOST:PORT/sync <fixture>.expected.json
//
// Loading the account makes the client write an account migration (new
// transactions in its own session), which the server stores; that is fine.
import { log, scenario, urlArg } from "./lib.mjs";
import { assertSame, closeAll, loadFully, loginClient, readBinary, readJson } from "./storage-lib.mjs";

const url = urlArg();
const expectedPath = process.argv.slice(2).find((a) => a.endsWith(".json"));
if (!expectedPath) {
  console.error("usage: node storage-fixture-read.mjs ws://HOST:PORT/sync <fixture>.expected.json");
  process.exit(2);
}
const exp = readJson(expectedPath);

await scenario(
  "storage-fixture-read",
  async () => {
    try {
      const node = await loginClient(url, exp.accountID, exp.accountSecret, "FixtureOwner");
      log("logged in as", exp.accountID);
      const ids = exp.ids;

      const account = node.expectCurrentAccount("fixture reader");
      assertSame(account.get("profile"), ids.profile, "the account's profile ID");

      const map = (await loadFully(node, ids.map, "map")).getCurrentContent();
      assertSame(map.toJSON(), exp.values.map, "map values");
      assertSame(map.get("temp"), undefined, "deleted key temp");

      const profile = (await loadFully(node, ids.profile, "profile")).getCurrentContent();
      assertSame(profile.get("name"), exp.values.profile.name, "profile name");
      assertSame(profile.toJSON(), exp.values.profile, "profile values");

      const group = (await loadFully(node, ids.group, "group")).getCurrentContent();
      assertSame(group.get("fixtureLabel"), undefined, "the group's invalid fixtureLabel");
      assertSame(group.myRole(), "admin", "the account's role in the group");

      for (const name of ["fileLarge", "streamSmall"]) {
        const want = exp.values[name];
        const got = await readBinary(node, ids[name], name);
        assertSame(
          got,
          {
            mimeType: want.mimeType,
            fileName: want.fileName,
            totalSizeBytes: want.totalSizeBytes,
            chunkCount: want.chunkCount,
            finished: true,
            sha256: want.expectedSha256,
          },
          `${name} (binary stream)`,
        );
        log(`${name}: ${got.chunkCount} chunks, ${got.totalSizeBytes} bytes, sha256 ok`);
      }
      console.log(`values ok: map ${JSON.stringify(map.toJSON())}, profile ${profile.get("name")}`);
    } finally {
      closeAll();
    }
  },
  { timeoutMs: 50_000 },
);
