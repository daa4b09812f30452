// unavailable: loading a well-formed CoValue ID that nobody has (the hash of a
// random header, never created on any node) returns "unavailable" promptly.
//  - load(id, skipRetry) resolves on the server's first answer
//    (`known` header:false): must take < 2 s;
//  - load(id) retries once after 3 s (CO_VALUE_LOADING_CONFIG), so ~3 s is
//    normal: must take < 15 s (cojson's own load timeout is 60 s).
// Afterwards the same connection still works: a value created after the
// misses is loaded by the same node.
//
// Usage: node unavailable.mjs ws://127.0.0.1:PORT/sync
import { assert, assertEqual, log, newClient, nonexistentID, scenario, urlArg } from "./lib.mjs";

const url = urlArg();

await scenario("unavailable", async () => {
  const c = await newClient(url, "Seeker");
  await c.synced();

  const id1 = nonexistentID();
  let t = Date.now();
  const r1 = await c.node.load(id1, true);
  const d1 = Date.now() - t;
  log(`load(${id1}, skipRetry) -> ${r1} in ${d1} ms`);
  assertEqual(r1, "unavailable", "result of load with skipRetry");
  assert(d1 < 2_000, `load with skipRetry took ${d1} ms (limit 2000 ms)`);

  const id2 = nonexistentID();
  t = Date.now();
  const r2 = await c.node.load(id2);
  const d2 = Date.now() - t;
  log(`load(${id2}) -> ${r2} in ${d2} ms`);
  assertEqual(r2, "unavailable", "result of load with retry");
  assert(d2 < 15_000, `load with retry took ${d2} ms (limit 15000 ms)`);

  // The connection is still usable: another client publishes, we load it.
  const other = await newClient(url, "Publisher");
  const group = other.node.createGroup();
  group.addMember("everyone", "reader");
  const map = group.createMap({ after: "the misses" });
  await other.synced();
  const loaded = await c.load(map.id, "a value created after the misses");
  assertEqual(loaded.get("after"), "the misses", "value loaded after the misses");
});
