// colist-1000: a writer appends 1 000 items to a CoList, one transaction per
// append, in batches of 50 with a yield to the event loop in between (so the
// appends stream to the server while it is being written). A subscriber that
// loaded the list before the appends sees all of them live; a client that
// loads the list afterwards gets all of them. Both must see exactly
// item-0000 .. item-0999 in order.
//
// Usage: node colist-1000.mjs ws://127.0.0.1:PORT/sync
import {
  assert,
  assertEqual,
  log,
  newClient,
  scenario,
  subscribeUntil,
  tick,
  urlArg,
  waitFor,
} from "./lib.mjs";

const url = urlArg();
const N = 1000;
const BATCH = 50;
const expected = Array.from({ length: N }, (_, i) => `item-${String(i).padStart(4, "0")}`);

function firstDifference(actual) {
  const i = expected.findIndex((v, idx) => actual[idx] !== v);
  return i < 0 ? "none" : `index ${i}: expected ${expected[i]}, got ${actual[i]}`;
}

await scenario("colist-1000", async () => {
  const writer = await newClient(url, "Writer");
  const early = await newClient(url, "EarlySubscriber");
  const group = writer.node.createGroup();
  group.addMember("everyone", "reader");
  const list = group.createList();
  await writer.synced();
  log("list created", list.id);

  // Subscribed before the appends: loads the (empty) list and listens.
  const earlyList = await early.load(list.id, "the empty list");
  assertEqual(earlyList.asArray(), [], "early subscriber's initial list");
  const earlySawAll = subscribeUntil(
    early,
    list.id,
    `${N} live appends`,
    (l) => l.asArray().length >= N,
    45_000,
  );

  const t = Date.now();
  for (let i = 0; i < N; i++) {
    list.append(expected[i]);
    if (i % BATCH === BATCH - 1) await tick();
  }
  assertEqual(list.asArray().length, N, "writer's own list length");
  await writer.synced(40_000);
  log(`writer appended ${N} items and the server acked them in ${Date.now() - t} ms`);

  const liveView = (await earlySawAll).asArray();
  log(`early subscriber saw all ${N} items ${Date.now() - t} ms after the first append`);
  assert(
    JSON.stringify(liveView) === JSON.stringify(expected),
    `early subscriber's list differs (length ${liveView.length}); first difference: ${firstDifference(liveView)}`,
  );

  const late = await newClient(url, "LateLoader");
  const tl = Date.now();
  const lateList = await late.load(list.id, "the full list");
  // A large value arrives in pieces (docs/protocol.md §4.6): load() resolves as soon
  // as the first piece is in, the rest streams in after it.
  log(`late loader: load() resolved with ${lateList.asArray().length} items after ${Date.now() - tl} ms`);
  const lateView = (
    await waitFor(`late loader to have ${N} items`, () => {
      const l = late.content(list.id);
      return l.asArray().length >= N && l;
    })
  ).asArray();
  log(`late loader has ${lateView.length} items after ${Date.now() - tl} ms`);
  assert(
    JSON.stringify(lateView) === JSON.stringify(expected),
    `late loader's list differs (length ${lateView.length}); first difference: ${firstDifference(lateView)}`,
  );
  const sessions = Object.values(lateList.core.knownState().sessions);
  log("late loader's known state per session:", JSON.stringify(sessions));
});
