// reconcile: storage reconciliation (docs/protocol.md §4.5) with the real cojson
// 0.20.19 client. A client with local SQLite storage and
// `enableFullStorageReconciliation` connects to a server that lacks some of
// what the storage holds (or holds an older state of it); the client sends
// `reconcile` batches (100 CoValues each, only those not in memory), the
// server answers with `load`s for what it lacks or holds differently, the
// client uploads those from its storage, and the server sends one
// `reconcile-ack` per batch once it has them.
//
// The test (tests/interop.rs `storage_reconciliation`) runs the phases as
// separate processes on one client database and state file, against servers
// it starts (X lives from `seed` to the first `reconcile`, Y only for
// `offline-edit`, Z is fresh for the second `reconcile`):
//
//   node reconcile.mjs seed URL_X DB STATE
//     New account with storage DB (reconciliation off: the client must not
//     take the per-peer reconciliation lock yet), a private group and
//     SEED_MAPS CoMaps {i, label, v: 1}; waits until X has acknowledged
//     everything. STATE records the account, IDs, values and each map's
//     known state on X.
//   node reconcile.mjs offline-edit URL_Y DB STATE
//     Same account and DB (reconciliation off), connected to Y instead of X:
//     edits EDITED_MAPS of the seed maps (v: 2) and creates NEW_MAPS more
//     CoMaps and a CoList. X never sees any of this.
//   node reconcile.mjs reconcile URL DB STATE --server-has seed|nothing [--reset-lock]
//     Same account and DB, reconciliation ON, nothing loaded but the account
//     (withLoadedAccount). The frames on the client's socket are tapped.
//     Waits until the client has released its reconciliation lock (all
//     batches acked), then asserts:
//       - no lock row and no unsynced CoValue existed before (so only
//         reconciliation can upload the maps: nothing loads them);
//       - ceil(CoValues in storage / 100) `reconcile` batches were sent, each
//         map ID in exactly one of them, each batch (after the first) only
//         after the previous one was acked;
//       - exactly one `reconcile-ack` per batch, with the batch's ID;
//       - `--server-has seed` (X): a `load {header:false, sessions:{}}` for
//         every map X lacks, a `load` carrying exactly X's known state for
//         every edited map, and no `load` at all for a map X holds unchanged;
//         `--server-has nothing` (Z): a `load {header:false, sessions:{}}`
//         for every map and the list;
//       - every `load` of a batch's CoValue was answered with `content`
//         before that batch's ack arrived.
//     `--reset-lock` deletes the lock row a previous `reconcile` run left
//     (the client reconciles a peer at most once per 30 days).
//   node reconcile.mjs verify URL DB STATE
//     A fresh node logged in as the account, WITHOUT storage, loads every map
//     and the list from the server and checks every value.
//
// Prints one `RESULT ...` / `FRAMES ...` summary line per phase.
import { existsSync } from "node:fs";
import { cojsonInternals, LocalNode } from "cojson";
import { createWebSocketPeer } from "cojson-transport-ws";
import {
  assert,
  assertEqual,
  describe,
  fail,
  log,
  scenario,
  sleep,
  waitFor,
  WebSocket,
  withTimeout,
  crypto,
} from "./lib.mjs";
import { assertSame, closeAll, loginClient, openSqliteStorage, readJson, writeJson } from "./storage-lib.mjs";

const SEED_MAPS = 150;
const EDITED_MAPS = 40;
const NEW_MAPS = 120;
const LIST_ITEMS = ["a", "b", "c", "d", "e"];
/** The client's ID for its server peer in the `reconcile` phase (the lock row is `lock#<it>`). */
const RECONCILE_PEER = "upstream-reconcile";
const BATCH_SIZE = cojsonInternals.STORAGE_RECONCILIATION_CONFIG.BATCH_SIZE;

const argv = process.argv.slice(2);
const [phase, url, dbPath, statePath] = argv;
const flag = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
if (!["seed", "offline-edit", "reconcile", "verify"].includes(phase) || !url?.startsWith("ws") || !dbPath || !statePath) {
  console.error("usage: node reconcile.mjs seed|offline-edit|reconcile|verify ws://HOST:PORT/sync DB STATE [--server-has seed|nothing] [--reset-lock]");
  process.exit(2);
}

const toClose = [];
process.on("exit", () => {
  for (const f of toClose.splice(0)) {
    try {
      f();
    } catch {
      // best effort
    }
  }
});

const mapValue = (i, v) => ({ i, label: `map ${i}`, v, ...(v === 2 ? { note: "edited offline" } : {}) });

/** Every message in a frame (cojson-transport-ws joins batched messages with "\n"). */
function messagesOf(data) {
  const text = typeof data === "string" ? data : Buffer.from(data).toString("utf8");
  const out = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      out.push({ action: "UNPARSABLE", raw: line.slice(0, 200) });
    }
  }
  return out;
}

/**
 * Records every message sent and received on the client's socket, in order
 * (`seq` is global across both directions; pings are left out).
 */
class FrameTap {
  constructor() {
    this.events = [];
    this.seq = 0;
  }
  record(dir, data) {
    for (const msg of messagesOf(data)) {
      if (msg?.type === "ping") continue;
      this.events.push({ seq: this.seq++, dir, msg });
    }
  }
  out(action) {
    return this.events.filter((e) => e.dir === "out" && e.msg.action === action);
  }
  in(action) {
    return this.events.filter((e) => e.dir === "in" && e.msg.action === action);
  }
  webSocketClass() {
    const tap = this;
    return class TappedWebSocket extends WebSocket {
      constructor(...args) {
        super(...args);
        this.addEventListener("message", (ev) => tap.record("in", ev.data));
      }
      send(data, ...rest) {
        tap.record("out", data);
        return super.send(data, ...rest);
      }
    };
  }
}

function serverPeer(id, WebSocketClass = WebSocket) {
  // Default options, as jazz-tools uses: `persistent` (deletePeerStateOnClose
  // false), which is what makes the peer eligible for reconciliation.
  return createWebSocketPeer({ id, websocket: new WebSocketClass(url), role: "server" });
}

async function synced(node, what, timeoutMs = 20_000) {
  await withTimeout(node.syncManager.waitForAllCoValuesSync(timeoutMs), timeoutMs + 1000, `${what}: waiting for the server to acknowledge everything`);
}

/** Waits until the client has persisted "synced" for everything (its tracker flushes every 200 ms). */
async function noUnsynced(db, what) {
  await waitFor(`${what}: the unsynced_covalues table to be empty`, () => db.prepare("SELECT COUNT(*) AS n FROM unsynced_covalues").get().n === 0, {
    timeoutMs: 10_000,
  });
}

const lockRows = (db) => db.prepare("SELECT * FROM storageReconciliationLocks").all();

async function shutdown(node, db) {
  await node.gracefulShutdown();
  db.close();
}

async function seed() {
  if (existsSync(dbPath)) fail(`${dbPath} already exists: the seed phase needs a fresh database`);
  const { storage, db } = await openSqliteStorage(dbPath);
  toClose.push(() => db.close());
  const { node, accountID, accountSecret } = await withTimeout(
    LocalNode.withNewlyCreatedAccount({
      creationProps: { name: "Reconciler" },
      crypto,
      peers: [serverPeer("upstream-seed")],
      storage,
      enableFullStorageReconciliation: false,
    }),
    30_000,
    "creating the account",
  );
  const group = node.createGroup();
  const maps = [];
  for (let i = 0; i < SEED_MAPS; i++) {
    const value = mapValue(i, 1);
    const map = group.createMap(value);
    maps.push({ id: map.id, i, value, phase: "seed", edited: false });
  }
  await synced(node, "seed");
  await noUnsynced(db, "seed");
  for (const m of maps) m.seedSessions = node.getCoValue(m.id).knownState().sessions;
  const locks = lockRows(db);
  assertEqual(locks, [], "reconciliation lock rows after the seed phase (reconciliation was off)");
  const stored = db.prepare("SELECT COUNT(*) AS n FROM coValues").get().n;
  writeJson(statePath, { accountID, accountSecret, groupID: group.id, maps });
  console.log(`RESULT seed account=${accountID} group=${group.id} maps=${maps.length} coValuesInStorage=${stored}`);
  await shutdown(node, db);
}

async function offlineEdit() {
  const state = readJson(statePath);
  const { storage, db } = await openSqliteStorage(dbPath);
  toClose.push(() => db.close());
  const node = await withTimeout(
    LocalNode.withLoadedAccount({
      accountID: state.accountID,
      accountSecret: state.accountSecret,
      sessionID: undefined,
      peers: [serverPeer("upstream-offline-edit")],
      crypto,
      storage,
      enableFullStorageReconciliation: false,
    }),
    30_000,
    "logging in from storage",
  );
  const group = await node.load(state.groupID);
  if (group === "unavailable") fail("the group is not in storage");
  for (const m of state.maps.slice(0, EDITED_MAPS)) {
    const map = await node.load(m.id);
    if (map === "unavailable") fail(`map ${m.i} (${m.id}) is not in storage`);
    map.set("v", 2);
    map.set("note", "edited offline");
    m.value = mapValue(m.i, 2);
    m.edited = true;
  }
  for (let i = SEED_MAPS; i < SEED_MAPS + NEW_MAPS; i++) {
    const value = mapValue(i, 1);
    const map = group.createMap(value);
    state.maps.push({ id: map.id, i, value, phase: "offline-edit", edited: false });
  }
  const list = group.createList(LIST_ITEMS.slice(0, 3));
  for (const item of LIST_ITEMS.slice(3)) list.append(item);
  state.listID = list.id;
  await synced(node, "offline-edit");
  await noUnsynced(db, "offline-edit");
  assertEqual(lockRows(db), [], "reconciliation lock rows after the offline-edit phase (reconciliation was off)");
  const stored = db.prepare("SELECT COUNT(*) AS n FROM coValues").get().n;
  writeJson(statePath, state);
  console.log(`RESULT offline-edit edited=${EDITED_MAPS} newMaps=${NEW_MAPS} list=${list.id} coValuesInStorage=${stored}`);
  await shutdown(node, db);
}

async function reconcile() {
  const serverHas = flag("--server-has");
  if (serverHas !== "seed" && serverHas !== "nothing") fail("reconcile needs --server-has seed|nothing");
  const state = readJson(statePath);
  const { storage, db } = await openSqliteStorage(dbPath);
  toClose.push(() => db.close());

  const lockKey = `lock#${RECONCILE_PEER}`;
  const before = lockRows(db);
  if (argv.includes("--reset-lock")) {
    const row = before.find((r) => r.key === lockKey);
    assert(row?.releasedAt, `--reset-lock: expected the released lock row of the previous run, found ${describe(before)}`);
    db.prepare("DELETE FROM storageReconciliationLocks WHERE key = ?").run(lockKey);
    log(`deleted the previous run's lock row ${describe(row)}`);
  } else {
    assertEqual(before, [], "reconciliation lock rows before the reconcile phase");
  }
  assertEqual(db.prepare("SELECT COUNT(*) AS n FROM unsynced_covalues").get().n, 0, "unsynced CoValues before the reconcile phase");
  const storedIDs = db.prepare("SELECT id FROM coValues ORDER BY rowID").all().map((r) => r.id);
  const expectedBatches = Math.ceil(storedIDs.length / BATCH_SIZE);

  const tap = new FrameTap();
  const node = await withTimeout(
    LocalNode.withLoadedAccount({
      accountID: state.accountID,
      accountSecret: state.accountSecret,
      sessionID: undefined,
      peers: [serverPeer(RECONCILE_PEER, tap.webSocketClass())],
      crypto,
      storage,
      enableFullStorageReconciliation: true,
    }),
    30_000,
    "logging in from storage with reconciliation enabled",
  );
  toClose.unshift(() => node.gracefulShutdown());
  const t0 = Date.now();
  const mapIDs = new Set(state.maps.map((m) => m.id));

  // The client releases its lock (releasedAt set) when the last batch is acked.
  const lock = await waitFor(
    "the client to finish storage reconciliation (its lock row released)",
    () => lockRows(db).find((r) => r.key === lockKey && r.releasedAt),
    { timeoutMs: 20_000 },
  ).catch((e) => {
    const sent = tap.out("reconcile").map((e) => `${e.msg.id}(${e.msg.values.length})`);
    const acks = tap.in("reconcile-ack").map((e) => e.msg.id);
    throw new Error(`${e.message}\nreconcile sent: ${sent.join(" ")}\nreconcile-ack received: ${acks.join(" ")}\nloads received: ${tap.in("load").length}; lock rows: ${describe(lockRows(db))}`);
  });
  const tookMs = Date.now() - t0;
  await synced(node, "reconcile");
  await sleep(200); // late frames, if any, would show up in the checks below

  const reconciles = tap.out("reconcile");
  const acks = tap.in("reconcile-ack");
  const loads = tap.in("load");
  const contents = tap.out("content");

  // Batches: as many as storage has rows / 100, each map in exactly one.
  assertEqual(reconciles.length, expectedBatches, `reconcile batches for ${storedIDs.length} CoValues in storage`);
  const batchOf = new Map();
  for (const [b, e] of reconciles.entries()) {
    assert(e.msg.values.length > 0 && e.msg.values.length <= BATCH_SIZE, `batch ${b} has ${e.msg.values.length} entries`);
    for (const [id, hash] of e.msg.values) {
      assert(!batchOf.has(id), `${id} in two reconcile batches`);
      assert(typeof hash === "string" && hash.startsWith("shortHash_z"), `entry hash ${describe(hash)}`);
      batchOf.set(id, b);
    }
  }
  for (const id of [...mapIDs, state.listID]) assert(batchOf.has(id), `${id} (map or list) in no reconcile batch`);

  // Acks: one per batch, the batch's ID, and the next batch only after it.
  assertEqual(
    acks.map((e) => e.msg.id).sort(),
    reconciles.map((e) => e.msg.id).sort(),
    "reconcile-ack IDs (one per batch sent)",
  );
  const ackSeq = new Map(acks.map((e) => [e.msg.id, e.seq]));
  for (let b = 1; b < reconciles.length; b++) {
    assert(
      reconciles[b].seq > ackSeq.get(reconciles[b - 1].msg.id),
      `batch ${b} was sent before the ack of batch ${b - 1}`,
    );
  }

  // Loads: exactly what the server lacks or holds differently.
  const loadsOf = new Map();
  for (const e of loads) {
    if (!loadsOf.has(e.msg.id)) loadsOf.set(e.msg.id, []);
    loadsOf.get(e.msg.id).push(e);
  }
  const missing = [];
  const stale = [];
  const current = [];
  for (const m of state.maps) {
    if (serverHas === "nothing" || m.phase === "offline-edit") missing.push(m.id);
    else if (m.edited) stale.push(m);
    else current.push(m.id);
  }
  missing.push(state.listID);
  for (const id of missing) {
    const l = loadsOf.get(id);
    assert(l?.length, `no load from the server for ${id}, which it lacks`);
    assertSame({ header: l[0].msg.header, sessions: l[0].msg.sessions }, { header: false, sessions: {} }, `the server's load of ${id}, which it lacks`);
  }
  for (const m of stale) {
    const l = loadsOf.get(m.id);
    assert(l?.length, `no load from the server for map ${m.i} (${m.id}), which it holds in an older state`);
    assertSame(
      { header: l[0].msg.header, sessions: l[0].msg.sessions },
      { header: true, sessions: m.seedSessions },
      `the server's load of map ${m.i} (${m.id}), which it holds in its seed state`,
    );
  }
  for (const id of current) {
    if (loadsOf.has(id)) fail(`the server sent ${describe(loadsOf.get(id).map((e) => e.msg))} for ${id}, which it holds unchanged`);
  }

  // Nothing else was asked for: the loaded IDs are exactly those.
  const expectedLoads = serverHas === "nothing" ? storedIDs : [...missing, ...stale.map((m) => m.id)];
  assertEqual([...loadsOf.keys()].sort(), [...expectedLoads].sort(), "the IDs the server sent a load for");

  // Every loaded CoValue of a batch was uploaded before that batch's ack.
  for (const [id, ls] of loadsOf) {
    const b = batchOf.get(id);
    if (b === undefined) continue;
    const ack = ackSeq.get(reconciles[b].msg.id);
    const answered = contents.find((c) => c.msg.id === id && c.seq > ls[0].seq);
    assert(answered, `the client never answered the server's load of ${id} with content`);
    assert(answered.seq < ack, `the ack of batch ${b} arrived before the client uploaded ${id}`);
  }

  const loadsForBatches = [...loadsOf.keys()].filter((id) => batchOf.has(id));
  const headerFalse = loads.filter((e) => e.msg.header === false).length;
  console.log(
    `RESULT reconcile server-has=${serverHas} coValuesInStorage=${storedIDs.length} batches=${reconciles.length} acks=${acks.length} ` +
      `in ${tookMs} ms; loads received=${loads.length} (header:false ${headerFalse}, with state ${loads.length - headerFalse}) ` +
      `for ${loadsForBatches.length} reconciled CoValues; missing maps+list=${missing.length} stale=${stale.length} unchanged=${current.length}; ` +
      `contents sent=${contents.length}`,
  );
  for (const [b, e] of reconciles.entries()) {
    const ids = new Set(e.msg.values.map(([id]) => id));
    const batchLoads = [...loadsOf.keys()].filter((id) => ids.has(id)).length;
    console.log(
      `FRAMES batch ${b}: reconcile id=${e.msg.id} values=${e.msg.values.length} sent at #${e.seq}; loads for ${batchLoads} of them; reconcile-ack at #${ackSeq.get(e.msg.id)}`,
    );
  }
  const first = reconciles[0]?.msg;
  if (first) console.log(`FRAMES first reconcile: ${describe({ ...first, values: first.values.slice(0, 2) })}`);
  const ex = (id) => loadsOf.get(id)?.[0]?.msg;
  console.log(`FRAMES load (lacking): ${describe(ex(missing[0]))}`);
  if (stale.length) console.log(`FRAMES load (stale): ${describe(ex(stale[0].id))}`);
  console.log(`FRAMES reconcile-ack: ${describe(acks[0]?.msg)}`);
  console.log(`lock after: ${describe(lock)}`);
  toClose.shift();
  await shutdown(node, db);
}

async function verify() {
  const state = readJson(statePath);
  const node = await loginClient(url, state.accountID, state.accountSecret, "verifier");
  const results = await Promise.all(
    state.maps.map(async (m) => {
      const map = await withTimeout(node.load(m.id), 30_000, `loading map ${m.i}`);
      if (map === "unavailable") fail(`map ${m.i} (${m.id}) is unavailable on the server`);
      return [m, map.toJSON()];
    }),
  );
  for (const [m, json] of results) assertSame(json, m.value, `map ${m.i} (${m.id}, ${m.phase}${m.edited ? ", edited" : ""})`);
  const list = await withTimeout(node.load(state.listID), 30_000, "loading the list");
  if (list === "unavailable") fail(`the list (${state.listID}) is unavailable on the server`);
  assertEqual(list.asArray(), LIST_ITEMS, "the list");
  closeAll();
  console.log(`RESULT verify maps=${results.length} (edited ${results.filter(([m]) => m.edited).length}) list=${list.asArray().length} items: all values as written`);
}

await scenario(
  `reconcile ${phase}`,
  { seed, "offline-edit": offlineEdit, reconcile, verify }[phase],
  { timeoutMs: 45_000 },
);
