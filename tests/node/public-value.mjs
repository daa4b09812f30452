// public-value: A puts values (private = encrypted, and trusting = plain) in a
// CoMap owned by a group with `everyone` as reader; a fresh node with a fresh
// account, which nobody ever added to anything, loads the map by ID and reads
// the values (it decrypts them with the read key the group reveals to
// everyone), and sees itself as a reader through `everyone`.
//
// Usage: node public-value.mjs ws://127.0.0.1:PORT/sync
import { assertEqual, log, newClient, scenario, urlArg } from "./lib.mjs";

const url = urlArg();

await scenario("public-value", async () => {
  const a = await newClient(url, "Publisher");
  const group = a.node.createGroup();
  group.addMember("everyone", "reader");
  const map = group.createMap({ greeting: "hello, world", answer: 42 });
  map.set("plain", "visible to the server too", "trusting");
  await a.synced();
  log("published", map.id);

  const stranger = await newClient(url, "Stranger");
  const t = Date.now();
  const loaded = await stranger.load(map.id, "the public map");
  log(`stranger loaded it in ${Date.now() - t} ms`);
  assertEqual(loaded.get("greeting"), "hello, world", "private value greeting");
  assertEqual(loaded.get("answer"), 42, "private value answer");
  assertEqual(loaded.get("plain"), "visible to the server too", "trusting value plain");
  assertEqual(loaded.group.id, group.id, "owner group");
  assertEqual(loaded.group.roleOf("everyone"), "reader", "everyone's role");
  assertEqual(loaded.group.myRole(), "reader", "stranger's own role");
  // The stranger got the group and the publisher's account as dependencies.
  assertEqual(stranger.node.getCoValue(group.id).isAvailable(), true, "group available at stranger");
  assertEqual(stranger.node.getCoValue(a.accountID).isAvailable(), true, "publisher's account available at stranger");
});
