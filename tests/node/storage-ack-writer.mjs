// storage-ack-writer: writes small transactions as fast as it can into a few
// CoValues until the server goes away (the test SIGKILLs it mid-load), and
// records, for every CoValue and session, the highest transaction count the
// server ACKNOWLEDGED: the largest `sessions[sid]` of any `known` message
// that arrived from the server on the WebSocket (counted on the raw frames,
// before cojson sees them). storage-ack-check.mjs then checks, against the
// restarted server, that nothing acknowledged was lost.
//
// usage: node storage-ack-writer.mjs ws://HOST:PORT/sync OUT.json [--max N]
//
// Output lines (stdout), for the test to act on:
//   READY ids=...                    the CoValues exist and are acknowledged
//   progress written=W acked=A       every ~50 ms (A: acked transactions of
//                                    the written CoValues)
//   ALL WRITTEN written=W            hit --max (default 50 000) before the
//                                    server went away; keeps waiting for it
//   RESULT written=W acked=A ...     the server went away; OUT.json is saved
// Exits 0 after RESULT; 1 on errors; 3 if the server is still up after 45 s.
import { performance } from "node:perf_hooks";
import { log, newClient, tick } from "./lib.mjs";
import { AckTracker, trackingWebSocket, writeJson } from "./storage-lib.mjs";

const args = process.argv.slice(2);
const url = args.find((a) => a.startsWith("ws://"));
const outPath = args.find((a) => a.endsWith(".json"));
const maxIdx = args.indexOf("--max");
const MAX = maxIdx >= 0 ? Number(args[maxIdx + 1]) : 50_000;
if (!url || !outPath || !(MAX > 0)) {
  console.error("usage: node storage-ack-writer.mjs ws://HOST:PORT/sync OUT.json [--max N]");
  process.exit(2);
}

const overall = setTimeout(() => {
  console.error("FAIL storage-ack-writer: the server was still up after 45 s");
  process.exit(3);
}, 45_000);

const tracker = new AckTracker();
let closed = false;
let onClosed = () => {};
const WS = trackingWebSocket(tracker, () => {
  closed = true;
  onClosed();
});

try {
  const w = await newClient(url, "Ack Writer", { WebSocketConstructor: WS });
  const group = w.node.createGroup();
  // Private and trusting CoMaps, a private and a trusting CoList.
  const targets = [
    { v: group.createMap(), op: (v, i) => v.set(`k${i % 64}`, i) },
    { v: group.createMap(), op: (v, i) => v.set(`t${i % 16}`, { i, s: `value ${i}` }, "trusting") },
    { v: group.createList(), op: (v, i) => v.append(i) },
    { v: group.createList(), op: (v, i) => v.append(`item ${i}`, undefined, "trusting") },
  ];
  const targetIds = new Set(targets.map((t) => t.v.id));
  await w.synced();
  console.log(`READY ids=${[...targetIds].join(",")}`);

  let written = 0;
  let lastReport = 0;
  const report = () => {
    console.log(`progress written=${written} acked=${tracker.total(targetIds)}`);
    lastReport = performance.now();
  };
  // Batches of 1..8 operations per event-loop turn, round robin over the
  // targets, so the server sees many small content messages.
  while (!closed && written < MAX) {
    const batch = 1 + (written % 8);
    for (let b = 0; b < batch && written < MAX; b++) {
      const t = targets[written % targets.length];
      t.op(t.v, written);
      written++;
    }
    await tick();
    if (performance.now() - lastReport > 50) report();
  }
  if (!closed) {
    report();
    console.log(`ALL WRITTEN written=${written}`);
    await new Promise((resolve) => {
      onClosed = resolve;
    });
  }

  // What this node holds (all of it was sent or queued for sending).
  const local = {};
  for (const id of tracker.acked.keys()) {
    const core = w.node.getCoValue(id);
    if (core.isAvailable()) local[id] = core.knownState().sessions;
  }
  for (const id of targetIds) local[id] = w.node.getCoValue(id).knownState().sessions;
  const acked = tracker.acked.size ? tracker.toJSON() : {};
  writeJson(outPath, {
    accountID: w.accountID,
    targets: [...targetIds],
    written,
    acked,
    local,
    knownMessages: tracker.knownMessages,
    frames: tracker.frames,
  });
  const ackedTotal = tracker.total(targetIds);
  const localTotal = [...targetIds].reduce(
    (s, id) => s + Object.values(local[id]).reduce((a, b) => a + b, 0),
    0,
  );
  console.log(
    `RESULT written=${written} acked=${ackedTotal} local=${localTotal} knownMessages=${tracker.knownMessages} frames=${tracker.frames}`,
  );
  log("done");
  clearTimeout(overall);
  process.exit(0);
} catch (e) {
  console.error(`FAIL storage-ack-writer: ${e?.stack ?? e}`);
  process.exit(1);
}
