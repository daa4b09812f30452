// Message generator: pre-signed cojson 0.20.19 `content` messages, made once
// with the real cojson client in-process (a LocalNode with a newly created
// account and no peers) and saved as JSONL, so that the load generator can
// replay them over raw WebSockets without any cojson code in its hot path.
//
// Usage:
//   node benches/gen.mjs [--out DIR] [--writers 100] [--big 16]
//                        [--tx-big 20000] [--tx 3000] [--tx-solo 100000]
//                        [--cold 10000]
//                        [--jobs 2] [--crypto napi|wasm] [--force]
//
// Layout of DIR (default $TMPDIR/maia-bench-data):
//   meta.json                 parameters + per-writer ids (see below)
//   writer-NNN.setup.jsonl    upload messages, in dependency order: the
//                             account, its profile group, its profile, a
//                             group with `everyone` as writer, one CoMap
//   writer-NNN.tx.jsonl       line i = a `content` for the CoMap with exactly
//                             one transaction, `after: i`, its lastSignature
//   cold.setup.jsonl          account + profile group + profile + one group
//   cold.maps.jsonl           10 000 small CoMaps of that group (header + one
//                             transaction each), one `content` per line
//
// Writer 0 gets --tx-solo transactions (the 1-writer run), writers 1..big-1
// --tx-big, the others --tx (the 16-writer scenarios need many per writer,
// the 100-writer one few per writer).
// Generation is parallel over --jobs child processes. If DIR/meta.json already
// matches the parameters nothing is done (use --force to regenerate).
import { fork } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { importDep } from "./deps.mjs";

export const DEFAULT_DATA_DIR = join(tmpdir(), "maia-bench-data");

export function genParams(opts = {}) {
  return {
    version: 3,
    writers: Number(opts.writers ?? 100),
    txSolo: Number(opts.txSolo ?? 100000),
    big: Number(opts.big ?? 16),
    txBig: Number(opts.txBig ?? 20000),
    tx: Number(opts.tx ?? 3000),
    cold: Number(opts.cold ?? 10000),
  };
}

/** True if DIR holds a complete data set made with (at least) these parameters. */
export function dataMatches(dir, params) {
  const f = join(dir, "meta.json");
  if (!existsSync(f)) return false;
  try {
    const m = JSON.parse(readFileSync(f, "utf8"));
    const p = m.params;
    return (
      m.complete === true &&
      p.version === params.version &&
      p.writers >= params.writers &&
      p.big >= params.big &&
      p.txBig >= params.txBig &&
      p.txSolo >= params.txSolo &&
      p.tx >= params.tx &&
      p.cold >= params.cold
    );
  } catch {
    return false;
  }
}

export function loadMeta(dir) {
  return JSON.parse(readFileSync(join(dir, "meta.json"), "utf8"));
}

const pad = (i) => String(i).padStart(3, "0");
export const writerSetupFile = (dir, i) => join(dir, `writer-${pad(i)}.setup.jsonl`);
export const writerTxFile = (dir, i) => join(dir, `writer-${pad(i)}.tx.jsonl`);

async function makeCrypto(kind) {
  if (kind === "wasm") {
    const { WasmCrypto } = await importDep("cojson/crypto/WasmCrypto");
    return WasmCrypto.create();
  }
  const { NapiCrypto } = await importDep("cojson/crypto/NapiCrypto");
  return NapiCrypto.create();
}

function assert(c, m) {
  if (!c) throw new Error(`gen: ${m}`);
}

/** All upload messages of a CoValue as its owner would send them to a peer that has nothing. */
function uploadMessages(node, id) {
  const core = node.getCoValue(id);
  const pieces = core.newContentSince(undefined);
  assert(pieces && pieces.length > 0, `no content for ${id}`);
  return pieces;
}

/** The account's own CoValues in creation order (account, profile group, profile, ...). */
function ownedIds(node) {
  return [...node.coValues.keys()].filter((id) => node.getCoValue(id).isAvailable());
}

async function writeLines(file, lines) {
  const ws = createWriteStream(file);
  for (const l of lines) {
    if (!ws.write(`${l}\n`)) await new Promise((r) => ws.once("drain", r));
  }
  await new Promise((r, j) => ws.end((e) => (e ? j(e) : r())));
}

async function genWriter(LocalNode, crypto, dir, i, nTx) {
  const { node, accountID } = await LocalNode.withNewlyCreatedAccount({
    creationProps: { name: `bench-writer-${i}` },
    crypto,
    peers: [],
  });
  const group = node.createGroup();
  group.addMember("everyone", "writer");
  const map = group.createMap();
  const sid = node.currentSessionID;
  // Setup: everything the node holds, in creation (= dependency) order.
  const setupIds = ownedIds(node);
  assert(setupIds[0] === accountID, "account is not the first CoValue");
  assert(setupIds.includes(group.id) && setupIds.at(-1) === map.id, "unexpected CoValue order");
  const setup = [];
  for (const id of setupIds) for (const m of uploadMessages(node, id)) setup.push(JSON.stringify(m));
  await writeLines(writerSetupFile(dir, i), setup);

  const core = map.core;
  const lines = new Array(nTx);
  for (let t = 0; t < nTx; t++) {
    // one transaction = what `map.set(key, value)` makes
    core.makeTransaction([{ op: "set", key: `k${t % 8}`, value: t }], "private");
    const pieces = core.newContentSince({ id: map.id, header: true, sessions: { [sid]: t } });
    assert(pieces.length === 1, "more than one piece");
    const s = pieces[0].new[sid];
    assert(s && s.after === t && s.newTransactions.length === 1 && s.lastSignature, "bad piece");
    assert(Object.keys(pieces[0].new).length === 1 && !pieces[0].header, "unexpected sessions/header");
    lines[t] = JSON.stringify(pieces[0]);
  }
  await writeLines(writerTxFile(dir, i), lines);
  node.gracefulShutdown();
  return { idx: i, accountID, groupID: group.id, mapID: map.id, sessionID: sid, nTx, setupIds };
}

async function genCold(LocalNode, crypto, dir, n) {
  const { node, accountID } = await LocalNode.withNewlyCreatedAccount({
    creationProps: { name: "bench-cold" },
    crypto,
    peers: [],
  });
  const group = node.createGroup();
  const setupIds = ownedIds(node);
  const setup = [];
  for (const id of setupIds) for (const m of uploadMessages(node, id)) setup.push(JSON.stringify(m));
  await writeLines(join(dir, "cold.setup.jsonl"), setup);
  const lines = [];
  const ids = [];
  for (let k = 0; k < n; k++) {
    const map = group.createMap({ n: k, label: `item ${k}` });
    const pieces = uploadMessages(node, map.id);
    assert(pieces.length === 1, "cold map in more than one piece");
    ids.push(map.id);
    lines.push(JSON.stringify(pieces[0]));
  }
  await writeLines(join(dir, "cold.maps.jsonl"), lines);
  node.gracefulShutdown();
  return { accountID, groupID: group.id, setupIds, n, mapIdsFile: "cold.maps.jsonl" };
}

/** Child: generate the writers in `list` (and the cold set if asked); reply with their meta. */
async function child(task) {
  const { LocalNode, logger, LogLevel } = await importDep("cojson");
  logger.setLevel(LogLevel.ERROR);
  const crypto = await makeCrypto(task.crypto);
  const writers = [];
  for (const [i, nTx] of task.list) writers.push(await genWriter(LocalNode, crypto, task.dir, i, nTx));
  const cold = task.cold ? await genCold(LocalNode, crypto, task.dir, task.cold) : undefined;
  process.send({ writers, cold });
}

export async function generate(dir, params, { jobs = 2, crypto = "napi", log = console.error } = {}) {
  mkdirSync(dir, { recursive: true });
  const metaFile = join(dir, "meta.json");
  if (existsSync(metaFile)) writeFileSync(metaFile, JSON.stringify({ complete: false }));
  const t0 = performance.now();
  const work = [];
  for (let i = 0; i < params.writers; i++)
    work.push([i, i === 0 ? Math.max(params.txSolo, params.txBig) : i < params.big ? params.txBig : params.tx]);
  // Deal writers round-robin by size so the jobs get similar work.
  const tasks = Array.from({ length: jobs }, (_, j) => ({ dir, crypto, list: [], cold: 0 }));
  work.sort((a, b) => b[1] - a[1]);
  const load = new Array(jobs).fill(0);
  for (const w of work) {
    const j = load.indexOf(Math.min(...load));
    tasks[j].list.push(w);
    load[j] += w[1];
  }
  const jc = load.indexOf(Math.min(...load));
  tasks[jc].cold = params.cold;
  const total = work.reduce((s, w) => s + w[1], 0) + params.cold;
  log(`gen: ${params.writers} writers, ${total} transactions in ${jobs} processes -> ${dir}`);
  const results = await Promise.all(
    tasks.map(
      (task) =>
        new Promise((resolve, reject) => {
          const c = fork(fileURLToPath(import.meta.url), ["--child"], { stdio: "inherit" });
          let got;
          c.on("message", (m) => (got = m));
          c.on("exit", (code) => (got ? resolve(got) : reject(new Error(`gen child exited ${code}`))));
          c.send(task);
        }),
    ),
  );
  const writers = results.flatMap((r) => r.writers).sort((a, b) => a.idx - b.idx);
  const cold = results.find((r) => r.cold)?.cold;
  const meta = { complete: true, params, crypto, generatedAt: new Date().toISOString(), writers, cold };
  writeFileSync(metaFile, JSON.stringify(meta, null, 1));
  log(`gen: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return meta;
}

function parseArgs(argv) {
  const o = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === "--out") o.out = v();
    else if (a === "--writers") o.writers = v();
    else if (a === "--big") o.big = v();
    else if (a === "--tx-big") o.txBig = v();
    else if (a === "--tx") o.tx = v();
    else if (a === "--tx-solo") o.txSolo = v();
    else if (a === "--cold") o.cold = v();
    else if (a === "--jobs") o.jobs = Number(v());
    else if (a === "--crypto") o.crypto = v();
    else if (a === "--force") o.force = true;
    else if (a === "--help" || a === "-h") {
      console.log(readFileSync(fileURLToPath(import.meta.url), "utf8").split("\nimport ")[0]);
      process.exit(0);
    }
    else throw new Error(`gen: unknown argument ${a}`);
  }
  return o;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv[2] === "--child") {
    process.once("message", (task) =>
      child(task).then(
        () => process.exit(0),
        (e) => {
          console.error(e?.stack ?? e);
          process.exit(1);
        },
      ),
    );
  } else {
    const o = parseArgs(process.argv.slice(2));
    const dir = o.out ?? DEFAULT_DATA_DIR;
    const params = genParams(o);
    if (!o.force && dataMatches(dir, params)) {
      console.error(`gen: ${dir} already holds this data set (--force to regenerate)`);
    } else {
      await generate(dir, params, { jobs: o.jobs ?? 2, crypto: o.crypto ?? "napi" });
    }
  }
}
