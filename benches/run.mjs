// Benchmark driver: runs every scenario against the reference server
// (tests/node/reference-server.mjs: cojson 0.20.19 LocalNode + ws +
// better-sqlite3) and against maia-sync (target/release/maia-sync), one after
// the other, each on a fresh database in a temp dir, with the same load
// (benches/load.mjs workers replaying messages pre-signed by benches/gen.mjs).
//
//   cargo build --release && node benches/run.mjs [options]
//
// Options:
//   --quick               short runs (3 s windows, fewer writes/cycles)
//   --only LIST           comma-separated scenarios: tput1,tput10,tput100,
//                         tput16,fanout,cold,rss,kill,fair (default: all)
//   --servers LIST        reference,maia (default both, in that order)
//   --duration S          measuring window of throughput runs (default 10; quick 3)
//   --warmup S            discarded start of each throughput run (default 1; quick 0.5)
//   --kill-cycles N       SIGKILL cycles per server (default 10; TARGETS: 100)
//   --fair-tx N           transactions per writer in the unfairness run (default 2000; quick 500)
//   --writers-per-proc N  writer connections per load process (default 8)
//   --subs-per-proc N     subscriber connections per load process (default 4)
//   --batch               writers send every message the window allows in one
//                         frame (default: one message per frame, like a cojson
//                         client's fast path)
//   --data DIR            pre-signed messages (default $TMPDIR/maia-bench-data;
//                         generated if missing)
//   --json FILE           where to write the results (default: the run dir)
//   --maia-bin PATH       default target/release/maia-sync
//   --keep                keep the run dir (databases, server logs)
//   --in-memory           diagnostic: both servers without a database (no
//                         restart/kill measurements then)
import { execFileSync, fork, spawn } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  createWriteStream,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { testsNodeDir } from "./deps.mjs";
import { DEFAULT_DATA_DIR, dataMatches, generate, genParams, loadMeta, writerSetupFile } from "./gen.mjs";

const benchDir = fileURLToPath(new URL(".", import.meta.url));
const repoDir = fileURLToPath(new URL("..", import.meta.url));
const ALL = ["tput1", "tput10", "tput100", "tput16", "fanout", "cold", "rss", "kill", "fair"];

// ------------------------------------------------------------------ options

function parseArgs(argv) {
  const o = { servers: ["reference", "maia"], only: ALL, quick: false, batch: false, keep: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === "--quick") o.quick = true;
    else if (a === "--only") o.only = v().split(",");
    else if (a === "--servers") o.servers = v().split(",");
    else if (a === "--duration") o.duration = Number(v());
    else if (a === "--warmup") o.warmup = Number(v());
    else if (a === "--kill-cycles") o.killCycles = Number(v());
    else if (a === "--fair-tx") o.fairTx = Number(v());
    else if (a === "--writers-per-proc") o.writersPerProc = Number(v());
    else if (a === "--subs-per-proc") o.subsPerProc = Number(v());
    else if (a === "--batch") o.batch = true;
    else if (a === "--data") o.data = v();
    else if (a === "--json") o.json = v();
    else if (a === "--maia-bin") o.maiaBin = v();
    else if (a === "--keep") o.keep = true;
    else if (a === "--in-memory") o.inMemory = true;
    else if (a === "--help" || a === "-h") {
      console.log(readFileSync(fileURLToPath(import.meta.url), "utf8").split("\nimport ")[0]);
      process.exit(0);
    } else throw new Error(`unknown argument ${a} (see --help)`);
  }
  for (const s of o.only) if (!ALL.includes(s)) throw new Error(`unknown scenario ${s}; known: ${ALL.join(",")}`);
  for (const s of o.servers) if (!["reference", "maia"].includes(s)) throw new Error(`unknown server ${s}`);
  o.duration ??= o.quick ? 3 : 10;
  o.warmup ??= o.quick ? 0.5 : 1;
  o.killCycles ??= o.quick ? 3 : 10;
  o.fairTx ??= o.quick ? 500 : 2000;
  o.writersPerProc ??= 8;
  o.subsPerProc ??= 4;
  o.data ??= DEFAULT_DATA_DIR;
  o.maiaBin ??= join(repoDir, "target/release/maia-sync");
  return o;
}

const opt = parseArgs(process.argv.slice(2));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const log = (...a) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...a);
const CLK_TCK = 100; // sysconf(_SC_CLK_TCK) on Linux x86-64

// ------------------------------------------------------------------ servers

const refScript = join(testsNodeDir, "reference-server.mjs");
const refHasDb = existsSync(refScript) && readFileSync(refScript, "utf8").includes('"--db"');
const runDir = mkdtempSync(join(tmpdir(), "maia-bench-run-"));
const children = new Set(); // every process we started: ended by PID on exit
let logSeq = 0;

function serverCommand(kind, db) {
  if (opt.inMemory) db = undefined;
  if (kind === "maia") {
    const args = ["--host", "127.0.0.1", "--port", "0"];
    if (db) args.push("--db", db);
    else args.push("--in-memory");
    return [opt.maiaBin, args];
  }
  const args = [refScript, "--host", "127.0.0.1", "--port", "0"];
  if (db && refHasDb) args.push("--db", db);
  return [process.execPath, args];
}

/** Starts a server, resolves once it logs `listening on ADDR`. */
async function startServer(kind, db, label) {
  const [cmd, args] = serverCommand(kind, db);
  const logFile = join(runDir, `${String(++logSeq).padStart(3, "0")}-${kind}-${label}.log`);
  const out = createWriteStream(logFile);
  const p = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], cwd: testsNodeDir });
  children.add(p);
  const srv = { kind, proc: p, pid: p.pid, logFile, exited: null, tail: [] };
  const keepTail = (d) => {
    out.write(d);
    for (const l of d.toString().split("\n")) if (l) srv.tail.push(l);
    if (srv.tail.length > 400) srv.tail.splice(0, srv.tail.length - 200);
  };
  p.stdout.on("data", keepTail);
  p.on("exit", (code, sig) => {
    children.delete(p);
    srv.exited = { code, sig };
  });
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${kind} did not log "listening on" within 30 s (${logFile})`)), 30_000);
    let buf = "";
    p.stderr.on("data", (d) => {
      keepTail(d);
      buf += d.toString();
      const m = /listening on (\S+)\r?\n/.exec(buf); // whole line: stderr may arrive split
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    p.on("exit", (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`${kind} exited (${code ?? sig}) before listening; log ${logFile}:\n${srv.tail.slice(-20).join("\n")}`));
    });
  });
  if (!/^127\.0\.0\.1:\d+$/.test(addr)) throw new Error(`${kind} listens on ${addr}, expected 127.0.0.1:PORT`);
  srv.url = `ws://${addr}/sync`;
  srv.addr = addr;
  return srv;
}

async function stopServer(srv, signal = "SIGTERM") {
  if (srv.exited) return;
  const done = new Promise((r) => srv.proc.once("exit", r));
  srv.proc.kill(signal);
  const t = setTimeout(() => {
    if (!srv.exited) srv.proc.kill("SIGKILL");
  }, 5000);
  await done;
  clearTimeout(t);
}

function procCpuMs(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK; // utime, stime
  } catch {
    return NaN;
  }
}

/** Busy CPU time of the whole machine (all cores), ms. */
function machineBusyMs() {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  const busy = f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] || 0);
  return (busy * 1000) / CLK_TCK;
}

function procRssKiB(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

function serverTrouble(srv, what) {
  const lines = srv.tail.filter((l) => /warn|error|panic|drop|clos|fail/i.test(l)).slice(-15);
  return `${what}: ${srv.kind} ${srv.exited ? `exited (${srv.exited.code ?? srv.exited.sig})` : "running"}; log ${srv.logFile}${
    lines.length ? `\n    ${lines.join("\n    ")}` : ""
  }`;
}

// ------------------------------------------------------------------ workers

let reqSeq = 0;
function forkWorker(name) {
  const p = fork(join(benchDir, "load.mjs"), [], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  children.add(p);
  const pending = new Map();
  const w = { name, proc: p, pid: p.pid, listeners: [] };
  p.on("message", (m) => {
    if (m.reqId !== undefined && pending.has(m.reqId)) {
      const { resolve, reject } = pending.get(m.reqId);
      pending.delete(m.reqId);
      if (m.type === "error") reject(new Error(`${name}: ${m.message}`));
      else resolve(m);
    } else for (const l of w.listeners) l(m);
  });
  p.on("exit", (code) => {
    children.delete(p);
    for (const { reject } of pending.values()) reject(new Error(`${name} exited (${code})`));
    pending.clear();
  });
  w.call = (cmd, timeoutMs = 180_000) =>
    new Promise((resolve, reject) => {
      const reqId = ++reqSeq;
      const timer = setTimeout(() => {
        pending.delete(reqId);
        reject(new Error(`${name}: no answer to ${cmd.cmd} within ${timeoutMs} ms`));
      }, timeoutMs);
      pending.set(reqId, {
        resolve: (m) => (clearTimeout(timer), resolve(m)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      p.send({ ...cmd, reqId });
    });
  w.close = async () => {
    if (p.exitCode !== null || p.signalCode !== null) return;
    const done = new Promise((r) => p.once("exit", r));
    try {
      p.send({ cmd: "close", reqId: ++reqSeq });
    } catch {
      p.kill("SIGKILL");
    }
    const t = setTimeout(() => p.kill("SIGKILL"), 3000);
    await done;
    clearTimeout(t);
  };
  return w;
}

function chunk(list, size) {
  const out = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}

const pct = (sorted, q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : NaN);
const median = (xs) => pct([...xs].sort((a, b) => a - b), 0.5);

// ---------------------------------------------------------------- scenarios

let meta;

function writerCfgs(W, nCap) {
  const ws = meta.writers.slice(0, W);
  if (ws.length < W) throw new Error(`data set has only ${meta.writers.length} writers`);
  const n = Math.min(nCap ?? Infinity, ...ws.map((w) => w.nTx));
  return ws.map((w) => ({ idx: w.idx, mapID: w.mapID, sessionID: w.sessionID, n }));
}

function freshDb(kind, label) {
  const d = mkdtempSync(join(runDir, `${kind}-${label}-`));
  return join(d, "sync.db");
}

/**
 * W writers (window K) [+ S subscribers on every map]: acked tx/s over the
 * measuring window, forwarded tx/s, fan-out latency, CPU of every process.
 * With `untilDone` (unfairness) every writer writes `nCap` and the run lasts
 * until all are done; finish times are reported instead.
 */
async function writeRun(kind, label, { W, K, S = 0, nCap, untilDone = false, sampleEvery = 1 }) {
  const db = freshDb(kind, label);
  const srv = await startServer(kind, db, label);
  const workers = [];
  const res = { scenario: label, server: kind, writers: W, window: K, subscribers: S };
  try {
    const cfgs = writerCfgs(W, nCap);
    // at most 4 writer processes (2 cores): 100 writers -> 25 per process
    const wGroups = chunk(cfgs, Math.max(opt.writersPerProc, Math.ceil(W / 4)));
    const wWorkers = wGroups.map((g, i) => forkWorker(`writers#${i}`));
    workers.push(...wWorkers);
    await Promise.all(
      wWorkers.map((w, i) =>
        w.call({ cmd: "writers", url: srv.url, dataDir: opt.data, writers: wGroups[i], window: K, sampleEvery, batch: opt.batch }),
      ),
    );
    const sWorkers = [];
    if (S) {
      const maps = cfgs.map((c) => ({ mapID: c.mapID, writerIdx: c.idx, n: c.n }));
      const per = opt.subsPerProc;
      for (let first = 0; first < S; first += per) {
        const w = forkWorker(`subscribers#${sWorkers.length}`);
        sWorkers.push(w);
        workers.push(w);
      }
      await Promise.all(
        sWorkers.map((w, i) =>
          w.call({ cmd: "subscribers", url: srv.url, count: Math.min(per, S - i * per), firstIdx: i * per, maps, sampleEvery }),
        ),
      );
    }
    // Everything is set up: go.
    const doneTimes = new Map();
    let firstDone = null;
    const allDone = new Promise((resolve) => {
      for (const w of wWorkers)
        w.listeners.push((m) => {
          if (m.type !== "writer-done") return;
          doneTimes.set(m.idx, m.t);
          firstDone ??= m.t;
          if (doneTimes.size === W) resolve();
        });
    });
    const snap = async () => {
      const cpuSrv = procCpuMs(srv.pid);
      const busy = machineBusyMs();
      const t = nowMs();
      const snaps = await Promise.all(workers.map((w) => w.call({ cmd: "snap" })));
      return { t, cpuSrv, busy, snaps, rss: procRssKiB(srv.pid) };
    };
    const s0 = await snap();
    const starts = await Promise.all(wWorkers.map((w) => w.call({ cmd: "go" })));
    const tGo = Math.min(...starts.map((s) => s.t));
    let sA;
    let sB;
    if (untilDone) {
      sA = s0;
      const limit = 300_000;
      const timedOut = await Promise.race([allDone.then(() => false), sleep(limit).then(() => true)]);
      sB = await snap();
      if (timedOut) res.error = `not all writers done after ${limit / 1000} s (${doneTimes.size}/${W})`;
    } else {
      await sleep(opt.warmup * 1000);
      sA = await snap();
      if (firstDone) res.error = "a writer ran out of messages during warm-up (generate more: gen.mjs --tx-big)";
      const endBy = nowMs() + opt.duration * 1000;
      while (nowMs() < endBy && !firstDone && !srv.exited) await sleep(50);
      sB = await snap();
      if (firstDone) res.note = `window cut to ${((sB.t - sA.t) / 1000).toFixed(1)} s: a writer ran out of messages`;
    }
    const dt = (sB.t - sA.t) / 1000;
    const sum = (s, f) => s.snaps.reduce((a, x) => a + f(x), 0);
    const ackedA = sum(sA, (x) => x.acked.reduce((a, [, c]) => a + c, 0));
    const ackedB = sum(sB, (x) => x.acked.reduce((a, [, c]) => a + c, 0));
    res.seconds = dt;
    res.ackedPerSec = (ackedB - ackedA) / dt;
    res.acked = ackedB;
    if (S) res.forwardedPerSec = (sum(sB, (x) => x.forwarded) - sum(sA, (x) => x.forwarded)) / dt;
    res.cpu = {
      server: ((sB.cpuSrv - sA.cpuSrv) / (dt * 1000)) * 100,
      load: workers.map((w, i) => ({
        proc: w.name,
        pct: ((sB.snaps[i].cpuMs - sA.snaps[i].cpuMs) / (dt * 1000)) * 100,
      })),
    };
    // everything else that ran on the machine meanwhile (other builds/tests):
    // machine busy time minus the server and our load processes
    const ours = res.cpu.server + res.cpu.load.reduce((a, l) => a + l.pct, 0);
    res.cpu.machine = ((sB.busy - sA.busy) / (dt * 1000)) * 100;
    res.cpu.others = Math.max(0, res.cpu.machine - ours);
    res.serverRssMiB = sB.rss / 1024;
    const ev = sB.snaps.map((x) => x.events);
    res.events = {
      closedByServer: ev.reduce((a, e) => a + e.closes, 0),
      corrections: ev.reduce((a, e) => a + e.corrections, 0),
      unexpected: ev.reduce((a, e) => a + e.unexpected, 0),
      messages: ev.flatMap((e) => e.errors).slice(0, 10),
    };
    if (untilDone) {
      const fin = cfgs.map((c) => (doneTimes.has(c.idx) ? (doneTimes.get(c.idx) - tGo) / 1000 : NaN));
      res.finishSec = fin;
      const sorted = [...fin].filter(Number.isFinite).sort((a, b) => a - b);
      res.finishMedian = pct(sorted, 0.5);
      res.finishMin = sorted[0];
      res.finishMax = sorted.at(-1);
      res.finishP95 = pct(sorted, 0.95);
      res.maxOverMedian = res.finishMax / res.finishMedian;
      res.medianOverMin = res.finishMedian / res.finishMin;
      res.ackedPerSec = (W * cfgs[0].n) / res.finishMax;
    }
    if (S) {
      // fan-out latency: send time (writer) -> receive time (subscriber),
      // for transactions sent inside the measuring window.
      const results = await Promise.all(workers.map((w) => w.call({ cmd: "results" })));
      const sendT = new Map();
      for (const r of results) for (const w of r.writers) sendT.set(w.idx, w.sendT);
      const lat = [];
      let missing = 0;
      for (const r of results)
        for (const s of r.subs)
          for (const m of s.maps) {
            const st = sendT.get(m.writerIdx);
            for (let k = 0; k < m.recvT.length; k++) {
              const t0 = st[k];
              if (!t0 || t0 < sA.t || t0 > sB.t) continue;
              if (m.recvT[k]) lat.push(m.recvT[k] - t0);
              else if (t0 < sB.t - 5000) missing++;
            }
          }
      lat.sort((a, b) => a - b);
      res.latency = { samples: lat.length, p50: pct(lat, 0.5), p90: pct(lat, 0.9), p99: pct(lat, 0.99), max: lat.at(-1), missing };
      res.subsReceived = results.flatMap((r) => r.subs.map((s) => s.forwarded));
    }
    if (srv.exited) res.error = serverTrouble(srv, "server died during the run");
    else if (res.events.closedByServer || res.events.corrections) res.warning = serverTrouble(srv, "connections closed or corrections");
  } catch (e) {
    res.error = `${e.message}${srv.exited ? `\n  ${serverTrouble(srv, "server")}` : ""}`;
  } finally {
    await Promise.all(workers.map((w) => w.close()));
    await stopServer(srv);
  }
  return res;
}

async function coldRun(kind) {
  const db = freshDb(kind, "cold");
  let srv = await startServer(kind, db, "cold");
  const res = { scenario: "cold", server: kind, n: meta.cold.n };
  const workers = [];
  try {
    const up = forkWorker("uploader");
    workers.push(up);
    const u = await up.call(
      { cmd: "upload", url: srv.url, files: [join(opt.data, "cold.setup.jsonl"), join(opt.data, "cold.maps.jsonl")], window: 1000 },
      600_000,
    );
    res.uploadMs = u.ms;
    await up.close();
    const ids = readFileSync(join(opt.data, "cold.maps.jsonl"), "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l).id);
    const measure = async (what) => {
      const w = forkWorker(`cold-loader-${what}`);
      workers.push(w);
      const c0 = procCpuMs(srv.pid);
      const r = await w.call({ cmd: "coldload", url: srv.url, ids, inFlight: 1000, batch: opt.batch, timeoutMs: 300_000 }, 320_000);
      const c1 = procCpuMs(srv.pid);
      await w.close();
      return { ms: r.ms, known: r.known, content: r.content, bytes: r.bytes, frames: r.frames, loaderCpuPct: (r.cpuMs / r.ms) * 100, serverCpuPct: ((c1 - c0) / r.ms) * 100 };
    };
    res.warm = await measure("warm");
    if (kind === "reference" && !refHasDb) {
      res.restart = null;
      res.note = "reference-server.mjs has no --db: no restart measurement";
    } else {
      await stopServer(srv);
      srv = await startServer(kind, db, "cold-restarted");
      res.restart = await measure("restart");
    }
  } catch (e) {
    res.error = `${e.message}${srv.exited ? `\n  ${serverTrouble(srv, "server")}` : ""}`;
  } finally {
    await Promise.all(workers.map((w) => w.close()));
    await stopServer(srv);
  }
  return res;
}

async function rssRun(kind) {
  const db = freshDb(kind, "rss");
  const srv = await startServer(kind, db, "rss");
  const res = { scenario: "rss", server: kind, points: [] };
  const workers = [];
  try {
    await sleep(2000);
    res.idleKiB = procRssKiB(srv.pid);
    // 5 000 connections need as many fds in the server (and in our workers)
    const steps = fdLimit() >= 5200 ? [1000, 5000] : [1000];
    if (steps.length === 1) res.note = `ulimit -n ${fdLimit()} < 5200: 5 000 connections skipped`;
    let open = 0;
    for (const target of steps) {
      // open the missing connections over two processes
      const need = target - open;
      const ws = [forkWorker(`idle#${workers.length}`), forkWorker(`idle#${workers.length + 1}`)];
      workers.push(...ws);
      const rs = await Promise.all(
        ws.map((w, i) => w.call({ cmd: "idle", url: srv.url, count: Math.floor(need / 2) + (i === 0 ? need % 2 : 0), concurrency: 50 }, 300_000)),
      );
      const ok = rs.reduce((a, r) => a + r.open, 0);
      const failed = rs.reduce((a, r) => a + r.failed, 0);
      open += ok;
      await sleep(3000); // a few pings go out, buffers settle
      const rss = procRssKiB(srv.pid);
      res.points.push({
        connections: open,
        failed,
        firstErrors: rs.flatMap((r) => r.firstErrors),
        rssKiB: rss,
        perConnKiB: (rss - res.idleKiB) / open,
      });
      if (srv.exited) throw new Error(serverTrouble(srv, "server died with idle connections"));
      if (failed) break;
    }
  } catch (e) {
    res.error = e.message;
  } finally {
    await Promise.all(workers.map((w) => w.close()));
    await stopServer(srv);
  }
  return res;
}

/** Soft limit of open files of this process (inherited by the servers and workers). */
function fdLimit() {
  const m = /Max open files\s+(\d+|unlimited)/.exec(readFileSync("/proc/self/limits", "utf8"));
  return !m ? 0 : m[1] === "unlimited" ? Infinity : Number(m[1]);
}

/** What each setup CoValue of a writer holds, from its upload messages. */
function setupExpect(idx) {
  const exp = new Map();
  for (const l of readFileSync(writerSetupFile(opt.data, idx), "utf8").split("\n").filter(Boolean)) {
    const m = JSON.parse(l);
    const e = exp.get(m.id) ?? { id: m.id, sessions: {} };
    for (const [sid, s] of Object.entries(m.new ?? {}))
      e.sessions[sid] = Math.max(e.sessions[sid] ?? 0, s.after + s.newTransactions.length);
    exp.set(m.id, e);
  }
  return [...exp.values()];
}

async function killRun(kind, cycles) {
  const res = { scenario: "kill", server: kind, cycles, lossyCycles: 0, lostTx: 0, ackedTx: 0, details: [] };
  if (kind === "reference" && !refHasDb) {
    res.error = "reference-server.mjs has no --db";
    return res;
  }
  const W = 8;
  const cfgs = writerCfgs(W);
  const selfTest = Number(process.env.BENCH_KILL_SELFTEST ?? 0);
  for (let c = 0; c < cycles; c++) {
    const db = freshDb(kind, `kill${c}`);
    let srv = await startServer(kind, db, `kill${c}`);
    const workers = [];
    const d = { cycle: c };
    try {
      const groups = chunk(cfgs, 4);
      const ws = groups.map((g, i) => forkWorker(`kill-writers#${i}`));
      workers.push(...ws);
      await Promise.all(ws.map((w, i) => w.call({ cmd: "writers", url: srv.url, dataDir: opt.data, writers: groups[i], window: 8, sampleEvery: 1000, batch: opt.batch })));
      await Promise.all(ws.map((w) => w.call({ cmd: "go" })));
      d.killAfterMs = Math.round(200 + Math.random() * 1300);
      await sleep(d.killAfterMs);
      srv.proc.kill("SIGKILL");
      await new Promise((r) => (srv.exited ? r() : srv.proc.once("exit", r)));
      await sleep(300); // let the workers see the close
      const results = await Promise.all(ws.map((w) => w.call({ cmd: "results" })));
      const acked = new Map(results.flatMap((r) => r.writers.map((x) => [x.idx, x.acked])));
      await Promise.all(workers.map((w) => w.close()));
      workers.length = 0;
      srv = await startServer(kind, db, `kill${c}-restarted`);
      const expect = [];
      for (const cfg of cfgs) {
        expect.push(...setupExpect(cfg.idx));
        // BENCH_KILL_SELFTEST=N claims N more than acked: the check must then report losses
        expect.push({ id: cfg.mapID, sessions: { [cfg.sessionID]: acked.get(cfg.idx) + selfTest } });
      }
      const checker = forkWorker("checker");
      workers.push(checker);
      const got = (await checker.call({ cmd: "check", url: srv.url, expect }, 90_000)).got;
      let lost = 0;
      let ackedTx = 0;
      const lostIn = [];
      got.forEach((g, i) => {
        for (const [sid, n] of Object.entries(expect[i].sessions)) {
          ackedTx += n;
          const have = g.header ? (g.sessions?.[sid] ?? 0) : 0;
          if (have < n) {
            lost += n - have;
            if (lostIn.length < 5) lostIn.push(`${g.id.slice(0, 12)}.. acked ${n}, has ${have}`);
          }
        }
      });
      d.maps = cfgs.map((cfg) => {
        const g = got.find((x) => x.id === cfg.mapID);
        return [acked.get(cfg.idx), g?.header ? (g.sessions?.[cfg.sessionID] ?? 0) : 0];
      });
      d.ackedTx = ackedTx;
      d.lostTx = lost;
      d.lostIn = lostIn;
      res.ackedTx += ackedTx;
      res.lostTx += lost;
      if (lost) res.lossyCycles++;
    } catch (e) {
      d.error = `${e.message}${srv.exited ? `\n  ${serverTrouble(srv, "server")}` : ""}`;
      res.errors = (res.errors ?? 0) + 1;
    } finally {
      await Promise.all(workers.map((w) => w.close()));
      await stopServer(srv);
    }
    res.details.push(d);
    log(`  ${kind} kill cycle ${c + 1}/${cycles}: killed after ${d.killAfterMs} ms, acked ${d.ackedTx ?? "?"} tx, lost ${d.lostTx ?? "?"}${d.error ? ` ERROR ${d.error}` : ""}`);
  }
  return res;
}

// ------------------------------------------------------------------- table

const fmt = (x, digits = 0) =>
  x === undefined || x === null || Number.isNaN(x) ? "n/a" : Number(x).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** rows: [measure, get(result) -> number, higherIsBetter, digits] */
function buildRows(results) {
  const r = (scenario, server) => results.find((x) => x.scenario === scenario && x.server === server);
  const defs = [
    ["acked tx/s, 1 writer, window 8", "tput1", (x) => x.ackedPerSec, true, 0],
    ["acked tx/s, 10 writers, window 8", "tput10", (x) => x.ackedPerSec, true, 0],
    ["acked tx/s, 100 writers, window 8", "tput100", (x) => x.ackedPerSec, true, 0],
    ["acked tx/s, 16 writers, window 8 (TARGETS)", "tput16", (x) => x.ackedPerSec, true, 0],
    ["16 writers + 16 subscribers: acked tx/s", "fanout", (x) => x.ackedPerSec, true, 0],
    ["16 writers + 16 subscribers: forwarded tx/s", "fanout", (x) => x.forwardedPerSec, true, 0],
    ["fan-out latency p50 (ms)", "fanout", (x) => x.latency?.p50, false, 1],
    ["fan-out latency p99 (ms)", "fanout", (x) => x.latency?.p99, false, 1],
    ["cold load 10k CoValues, warm (ms)", "cold", (x) => x.warm?.ms, false, 0],
    ["cold load 10k CoValues, after restart (ms)", "cold", (x) => x.restart?.ms, false, 0],
    ["RSS idle (MiB)", "rss", (x) => x.idleKiB / 1024, false, 1],
    ["RSS with 1,000 idle connections (MiB)", "rss", (x) => x.points?.[0]?.rssKiB / 1024, false, 1],
    ["RSS per connection at 1,000 (KiB)", "rss", (x) => x.points?.[0]?.perConnKiB, false, 1],
    ["RSS with 5,000 idle connections (MiB)", "rss", (x) => x.points?.[1]?.rssKiB / 1024, false, 1],
    ["RSS per connection at 5,000 (KiB)", "rss", (x) => x.points?.[1]?.perConnKiB, false, 1],
    ["SIGKILL: cycles losing acked writes", "kill", (x) => (x.error ? NaN : x.lossyCycles), false, 0, (x) => (x.error ? "n/a" : `${x.lossyCycles} / ${x.cycles}`)],
    ["SIGKILL: acked transactions lost (total)", "kill", (x) => (x.error ? NaN : x.lostTx), false, 0],
    ["unfairness (window 256): median finish (s)", "fair", (x) => x.finishMedian, false, 2],
    ["unfairness: slowest finish (s)", "fair", (x) => x.finishMax, false, 2],
    ["unfairness: slowest / median", "fair", (x) => x.maxOverMedian, false, 2],
    ["unfairness: fastest finish (s)", "fair", (x) => x.finishMin, false, 2],
    ["unfairness: median / fastest", "fair", (x) => x.finishMedian / x.finishMin, false, 2],
  ];
  const rows = [];
  for (const [name, sc, get, higher, digits, show] of defs) {
    const a = r(sc, "reference");
    const b = r(sc, "maia");
    if (!a && !b) continue;
    const va = a && !a.error?.startsWith?.("reference-server") ? safe(get, a) : NaN;
    const vb = b ? safe(get, b) : NaN;
    let ratio = NaN;
    if (Number.isFinite(va) && Number.isFinite(vb) && va > 0 && vb > 0) ratio = higher ? vb / va : va / vb;
    rows.push({
      measure: name,
      reference: a ? (show ? show(a) : fmt(va, digits)) : "-",
      maia: b ? (show ? show(b) : fmt(vb, digits)) : "-",
      ratio: Number.isFinite(ratio) ? `${fmt(ratio, ratio < 10 ? 2 : 1)}×` : "n/a",
      raw: { reference: va, maia: vb },
    });
  }
  return rows;
}

function safe(get, x) {
  try {
    const v = get(x);
    return typeof v === "number" ? v : NaN;
  } catch {
    return NaN;
  }
}

function renderTable(rows) {
  const head = ["measure", "reference", "maia-sync", "ratio (>1 = maia better)"];
  const body = rows.map((r) => [r.measure, r.reference, r.maia, r.ratio]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(" | ")} |`;
  return [line(head), `|${w.map((x, i) => (i === 0 ? "-".repeat(x + 2) : `${"-".repeat(x + 1)}:`)).join("|")}|`, ...body.map(line)].join("\n");
}

function renderCpu(results) {
  const out = [
    "| scenario | server | server CPU % | load processes CPU % | other processes on the machine CPU % | notes |",
    "|---|---|---:|---|---:|---|",
  ];
  for (const x of results) {
    const notes = [x.error && `ERROR: ${x.error.split("\n")[0]}`, x.warning && `WARNING: ${x.warning.split("\n")[0]}`, x.note]
      .filter(Boolean)
      .join("; ");
    if (x.cpu)
      out.push(
        `| ${x.scenario} | ${x.server} | ${fmt(x.cpu.server)} | ${x.cpu.load.map((l) => `${l.proc} ${fmt(l.pct)}`).join(", ")} | ${fmt(x.cpu.others)} | ${notes} |`,
      );
    else if (x.scenario === "cold")
      out.push(
        `| cold | ${x.server} | warm ${fmt(x.warm?.serverCpuPct)}, restart ${fmt(x.restart?.serverCpuPct)} | loader warm ${fmt(x.warm?.loaderCpuPct)}, restart ${fmt(x.restart?.loaderCpuPct)} | | ${notes} |`,
      );
    else if (notes) out.push(`| ${x.scenario} | ${x.server} | | | | ${notes} |`);
  }
  return out.join("\n");
}

// -------------------------------------------------------------------- main

function gitDescribe() {
  try {
    const head = execFileSync("git", ["-C", repoDir, "log", "-1", "--format=%h %s"], { encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["-C", repoDir, "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"], {
      encoding: "utf8",
    }).trim();
    return `git ${head}${dirty ? " + uncommitted changes in src/" : ""}`;
  } catch {
    return "git: unknown";
  }
}

function cleanup() {
  for (const p of children) {
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}
process.on("exit", cleanup);
process.on("SIGINT", () => process.exit(130));
process.on("SIGTERM", () => process.exit(143));

async function main() {
  if (opt.servers.includes("maia")) {
    if (!existsSync(opt.maiaBin)) throw new Error(`${opt.maiaBin} not found: cargo build --release`);
    // Run a private copy: a `cargo build` elsewhere must not swap the binary mid-run.
    const copy = join(runDir, "maia-sync");
    copyFileSync(opt.maiaBin, copy);
    chmodSync(copy, 0o755);
    log(`maia-sync: ${opt.maiaBin} (${statSync(opt.maiaBin).mtime.toISOString()}), ${gitDescribe()}`);
    opt.maiaBinBuiltFrom = opt.maiaBin;
    opt.maiaBin = copy;
    opt.git = gitDescribe();
  }
  const params = genParams(opt.quick && !dataMatches(opt.data, genParams()) ? { txBig: 6000, tx: 1000, txSolo: 20000 } : {});
  if (!dataMatches(opt.data, params)) await generate(opt.data, params, { log });
  meta = loadMeta(opt.data);
  log(`run dir ${runDir}; data ${opt.data}; reference --db: ${refHasDb ? "yes" : "NO (in memory)"}; ${cpus().length} CPUs`);
  const results = [];
  const t0 = Date.now();
  const scenarios = {
    tput1: (k) => writeRun(k, "tput1", { W: 1, K: 8 }),
    tput10: (k) => writeRun(k, "tput10", { W: 10, K: 8 }),
    tput100: (k) => writeRun(k, "tput100", { W: 100, K: 8 }),
    tput16: (k) => writeRun(k, "tput16", { W: 16, K: 8 }),
    fanout: (k) => writeRun(k, "fanout", { W: 16, K: 8, S: 16, sampleEvery: 4 }),
    cold: (k) => coldRun(k),
    rss: (k) => rssRun(k),
    kill: (k) => killRun(k, opt.killCycles),
    fair: (k) => writeRun(k, "fair", { W: 16, K: 256, nCap: opt.fairTx, untilDone: true }),
  };
  for (const sc of ALL) {
    if (!opt.only.includes(sc)) continue;
    for (const kind of opt.servers) {
      log(`${sc} on ${kind} ...`);
      const r = await scenarios[sc](kind);
      results.push(r);
      const brief = { ...r };
      delete brief.details;
      delete brief.finishSec;
      delete brief.subsReceived;
      log(`${sc} on ${kind}: ${JSON.stringify(brief)}`);
    }
  }
  const rows = buildRows(results);
  const table = renderTable(rows);
  const cpuTable = renderCpu(results);
  const header = `maia-sync benchmark, ${new Date().toISOString()}, ${cpus().length} × ${cpus()[0]?.model ?? "?"}, ${
    opt.quick ? "--quick, " : ""
  }window ${opt.duration} s after ${opt.warmup} s warm-up, ${opt.batch ? "batched frames" : "one message per frame"}${
    opt.git ? `, maia-sync from ${opt.git}` : ""
  }${opt.inMemory ? ", IN MEMORY (no database)" : ""}`;
  console.log(`\n${header}\n\n${table}\n\nCPU during the measuring window (100 = one core saturated):\n\n${cpuTable}\n`);
  const fair = results.filter((x) => x.scenario === "fair" && x.finishSec);
  for (const f of fair) console.log(`unfairness ${f.server}: finish times (s) ${f.finishSec.map((s) => fmt(s, 2)).join(" ")}`);
  const json = opt.json ?? join(runDir, "results.json");
  writeFileSync(json, JSON.stringify({ header, options: opt, rows, results, elapsedSec: (Date.now() - t0) / 1000 }, null, 1));
  console.log(`\nresults: ${json}${opt.keep ? `; run dir kept: ${runDir}` : ""}`);
  // keep the server logs and results (small), drop the databases
  if (!opt.keep) for (const d of readdirSync(runDir)) if (!/\.(log|json)$/.test(d)) rmSync(join(runDir, d), { recursive: true, force: true });
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`bench: ${e?.stack ?? e}`);
    process.exit(1);
  },
);
