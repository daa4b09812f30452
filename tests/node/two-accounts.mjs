// two-accounts: A and B sign up; A creates a group and a CoMap, loads B's
// account through the server and adds B as writer; B loads the map on its own
// node and reads A's (encrypted) values; live updates flow both ways.
//
// Usage: node two-accounts.mjs ws://127.0.0.1:PORT/sync
import {
  addMemberByID,
  assertEqual,
  canonical,
  log,
  newClient,
  scenario,
  subscribeUntil,
  urlArg,
} from "./lib.mjs";

const url = urlArg();

await scenario("two-accounts", async () => {
  const a = await newClient(url, "Alice");
  const b = await newClient(url, "Bob");
  // B's account must be on the server before A can load it from there.
  await b.synced();
  log("B signed up", b.accountID);

  const group = a.node.createGroup();
  await addMemberByID(a, group, b.accountID, "writer");
  assertEqual(group.roleOf(b.accountID), "writer", "B's role in A's group (A's view)");
  const map = group.createMap({ title: "hello from A", count: 1 });
  map.set("nested", { list: [1, 2, 3], flag: true });
  await a.synced();
  log("A created map", map.id, "in group", group.id);

  const mapInB = await b.load(map.id, "A's map");
  assertEqual(mapInB.get("title"), "hello from A", "B reads title");
  assertEqual(mapInB.get("count"), 1, "B reads count");
  assertEqual(mapInB.get("nested"), { list: [1, 2, 3], flag: true }, "B reads nested");
  assertEqual(mapInB.group.roleOf(b.accountID), "writer", "B's role (B's view)");
  log("B loaded the map");

  // Live A -> B: B subscribes first, then A writes.
  let t = Date.now();
  const seenByB = subscribeUntil(b, map.id, "A's live update", (m) => m.get("count") === 2, 10_000);
  map.set("count", 2);
  map.set("fromA", "live-1");
  const viewB = await seenByB;
  log(`A -> B live update arrived in ${Date.now() - t} ms`);
  assertEqual(viewB.get("fromA"), "live-1", "B sees fromA");

  // Live B -> A: A subscribes first, then B writes (B is a writer).
  t = Date.now();
  const seenByA = subscribeUntil(a, map.id, "B's live update", (m) => m.get("fromB") === "live-2", 10_000);
  mapInB.set("fromB", "live-2");
  const viewA = await seenByA;
  log(`B -> A live update arrived in ${Date.now() - t} ms`);

  // Both converge to the same full content.
  await b.synced();
  const expected = canonical({
    count: 2,
    fromA: "live-1",
    fromB: "live-2",
    nested: { list: [1, 2, 3], flag: true },
    title: "hello from A",
  });
  assertEqual(canonical(viewA.toJSON()), expected, "A's final map");
  const finalB = b.content(map.id).toJSON();
  assertEqual(canonical(finalB), expected, "B's final map");
});
