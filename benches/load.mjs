// Load generator worker: raw `ws` clients (no cojson code in the hot path)
// replaying the pre-signed messages made by gen.mjs. run.mjs forks several of
// these and drives them over IPC; each reports its own CPU time so the reader
// can tell which process was saturated.
//
// IPC commands (parent -> worker), each answered by one message:
//   {cmd:"writers", url, dataDir, writers:[{idx,mapID,sessionID,n}], window,
//    sampleEvery, batch}      open one connection per writer, upload its setup
//                             messages, wait for their acks -> {type:"ready"}
//   {cmd:"subscribers", url, count, maps:[{mapID,writerIdx,n}], sampleEvery}
//                             open `count` connections that `load` every map
//                             and wait for the answers -> {type:"ready"}
//   {cmd:"go"}                writers start: each keeps up to `window` unacked
//                             content messages in flight -> {type:"started"}
//                             later, once per writer: {type:"writer-done",idx,t}
//   {cmd:"snap"}              -> {type:"snap", t, acked, forwarded, cpu, ...}
//   {cmd:"results"}           -> {type:"results", writers:[...], subs:[...]}
//   {cmd:"upload", url, files:[...], window}   upload JSONL files pipelined,
//                             wait for every ack -> {type:"uploaded", ms, n}
//   {cmd:"coldload", url, ids:[...], inFlight}
//                             fresh connection, `load` every id with at most
//                             `inFlight` outstanding -> {type:"coldloaded", ms}
//   {cmd:"check", url, expect:[{id, sessions}]}
//                             `load` each id claiming `sessions`; report the
//                             server's counts -> {type:"checked", got:[...]}
//   {cmd:"idle", url, count, concurrency}     open `count` idle connections
//                             -> {type:"idle-open", open, failed}
//   {cmd:"close"}             close everything and exit.
//
// An ack of a content message = a `known` for the same id whose count for the
// session reaches `after + len(newTransactions)` (and header: true).
// Times are process.hrtime (CLOCK_MONOTONIC, shared by all processes of the
// machine) in milliseconds, so send/receive times compare across processes.
import { readFileSync } from "node:fs";
import { importDep } from "./deps.mjs";
import { writerSetupFile, writerTxFile } from "./gen.mjs";

const wsMod = await importDep("ws");
const WebSocket = wsMod.WebSocket ?? wsMod.default?.WebSocket ?? wsMod.default;

const now = () => Number(process.hrtime.bigint()) / 1e6;
const send = (m) => process.send(m);
const events = { closes: 0, errors: [], corrections: 0, unexpected: 0 };
const sockets = new Set();

function note(kind, detail) {
  if (events.errors.length < 20) events.errors.push(`${kind}: ${detail}`);
}

function openSocket(url, label) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { skipUTF8Validation: true, perMessageDeflate: false });
    sockets.add(ws);
    let opened = false;
    const timer = setTimeout(() => {
      if (!opened) {
        ws.terminate();
        reject(new Error(`${label}: connect timeout`));
      }
    }, 20_000);
    ws.once("open", () => {
      opened = true;
      clearTimeout(timer);
      resolve(ws);
    });
    ws.on("error", (e) => {
      if (!opened) {
        clearTimeout(timer);
        reject(new Error(`${label}: ${e.message}`));
      } else note("socket error", `${label}: ${e.message}`);
    });
    ws.on("close", (code) => {
      sockets.delete(ws);
      if (opened && !closing) {
        events.closes++;
        note("closed by server", `${label} code ${code}`);
      }
    });
  });
}
let closing = false;

/**
 * Runs `fn` (which sends a burst of frames on `ws`) with the TCP socket
 * corked, so the burst leaves in one write syscall instead of one per frame.
 * The frames themselves are unchanged (one message per frame).
 */
function burst(ws, fn) {
  const sock = ws._socket;
  if (!sock) return fn();
  sock.cork();
  try {
    return fn();
  } finally {
    sock.uncork();
  }
}

/** Splits a frame (Buffer) into JSON texts (Buffers), at LF. */
function* lines(buf) {
  let start = 0;
  for (;;) {
    const nl = buf.indexOf(10, start);
    if (nl < 0) {
      if (start < buf.length) yield start === 0 ? buf : buf.subarray(start);
      return;
    }
    if (nl > start) yield buf.subarray(start, nl);
    start = nl + 1;
  }
}

// Needles as Buffers: Buffer#indexOf(string) would encode the string on every call.
const N = Object.fromEntries(
  Object.entries({
    ping: '"type":"ping"',
    id: '"id":"',
    content: '"action":"content"',
    known: '"action":"known"',
    after: '"after":',
    madeAt: '"madeAt":',
    expect: '"expectContentUntil"',
  }).map(([k, v]) => [k, Buffer.from(v)]),
);
/** Pings are small and never carry an action. */
const isPing = (b) => b.length < 200 && b.indexOf(N.ping) >= 0;

/** What a content line needs acknowledged: {id, header, sessions:{sid: count}}. */
function ackNeed(line) {
  const m = JSON.parse(line);
  const sessions = {};
  for (const [sid, s] of Object.entries(m.new ?? {})) sessions[sid] = s.after + s.newTransactions.length;
  return { id: m.id, sessions };
}

function covers(known, need) {
  if (!known.header) return false;
  for (const [sid, n] of Object.entries(need.sessions)) if ((known.sessions?.[sid] ?? 0) < n) return false;
  return true;
}

/**
 * Sends `lineList` (content messages) over `ws` with at most `window` unacked,
 * resolves when every one is acked. Used for setup uploads.
 */
function uploadPipelined(ws, lineList, window, label, timeoutMs = 120_000) {
  return new Promise((resolve, reject) => {
    const needs = lineList.map(ackNeed);
    const byId = new Map();
    needs.forEach((n, i) => {
      if (!byId.has(n.id)) byId.set(n.id, []);
      byId.get(n.id).push(i);
    });
    const acked = new Array(needs.length).fill(false);
    let next = 0;
    let inFlight = 0;
    let done = 0;
    const timer = setTimeout(() => {
      ws.off("message", onMsg);
      reject(new Error(`${label}: upload not acked after ${timeoutMs} ms (${done}/${needs.length})`));
    }, timeoutMs);
    const pump = () => {
      burst(ws, () => {
        while (inFlight < window && next < lineList.length) {
          ws.send(lineList[next++]);
          inFlight++;
        }
      });
      if (done === needs.length) {
        clearTimeout(timer);
        ws.off("message", onMsg);
        resolve();
      }
    };
    const onMsg = (data) => {
      for (const l of lines(data)) {
        if (isPing(l)) continue;
        const m = JSON.parse(l.toString());
        if (m.action !== "known") continue;
        if (m.isCorrection) {
          events.corrections++;
          note("correction", `${label} ${l.toString().slice(0, 300)}`);
        }
        for (const i of byId.get(m.id) ?? []) {
          if (!acked[i] && i < next && covers(m, needs[i])) {
            acked[i] = true;
            inFlight--;
            done++;
          }
        }
      }
      pump();
    };
    ws.on("message", onMsg);
    pump();
  });
}

// ---------------------------------------------------------------- writers

const writers = [];

class Writer {
  constructor(cfg, ws, txLines, window, sampleEvery, batch) {
    Object.assign(this, cfg);
    this.ws = ws;
    this.lines = txLines;
    this.window = window;
    this.batch = batch;
    this.sent = 0;
    this.acked = 0;
    this.doneAt = 0;
    this.S = sampleEvery;
    this.sendT = new Float64Array(Math.ceil(this.n / sampleEvery));
    this.mapKey = `"${this.mapID}"`;
    ws.on("message", (data) => this.onMessage(data));
  }
  start(t0) {
    this.t0 = t0;
    this.pump();
  }
  pump() {
    const lim = Math.min(this.n, this.acked + this.window);
    if (this.sent >= lim || this.ws.readyState !== 1) return;
    const t = now();
    if (this.batch) {
      const parts = [];
      for (; this.sent < lim; this.sent++) {
        if (this.sent % this.S === 0) this.sendT[this.sent / this.S] = t;
        parts.push(this.lines[this.sent]);
      }
      this.ws.send(parts.join("\n"));
    } else {
      burst(this.ws, () => {
        for (; this.sent < lim; this.sent++) {
          if (this.sent % this.S === 0) this.sendT[this.sent / this.S] = t;
          this.ws.send(this.lines[this.sent]);
        }
      });
    }
  }
  onMessage(data) {
    if (!this.t0) return; // setup phase: uploadPipelined listens
    let changed = false;
    for (const l of lines(data)) {
      if (isPing(l)) continue;
      if (l.indexOf(this.mapKey) < 0) continue;
      const m = JSON.parse(l.toString());
      if (m.action !== "known" || m.id !== this.mapID) {
        events.unexpected++;
        continue;
      }
      if (m.isCorrection) {
        events.corrections++;
        note("correction", `writer ${this.idx}: ${l.toString().slice(0, 300)}`);
      }
      const c = m.sessions?.[this.sessionID] ?? 0;
      if (c > this.acked) {
        if (c > this.sent) note("ack beyond sent", `writer ${this.idx}: ${c} > ${this.sent}`);
        this.acked = c;
        changed = true;
      }
    }
    if (!changed) return;
    if (this.acked >= this.n && !this.doneAt) {
      this.doneAt = now();
      send({ type: "writer-done", idx: this.idx, t: this.doneAt });
    }
    this.pump();
  }
}

async function cmdWriters(c) {
  const tasks = c.writers.map(async (w) => {
    const ws = await openSocket(c.url, `writer ${w.idx}`);
    const setup = readFileSync(writerSetupFile(c.dataDir, w.idx), "utf8").split("\n").filter(Boolean);
    const tx = readFileSync(writerTxFile(c.dataDir, w.idx), "utf8").split("\n").filter(Boolean);
    if (tx.length < w.n) throw new Error(`writer ${w.idx}: only ${tx.length} messages, need ${w.n}`);
    tx.length = w.n;
    const writer = new Writer(w, ws, tx, c.window, c.sampleEvery, c.batch);
    writers.push(writer);
    await uploadPipelined(ws, setup, 1, `writer ${w.idx} setup`);
  });
  await Promise.all(tasks);
  return { type: "ready" };
}

// ------------------------------------------------------------ subscribers

const subs = [];

class Subscriber {
  constructor(idx, ws, maps, sampleEvery) {
    this.idx = idx;
    this.ws = ws;
    this.S = sampleEvery;
    this.byId = new Map();
    this.maps = maps.map((m) => {
      const st = {
        ...m,
        max: 0,
        answered: false,
        recvT: new Float64Array(Math.ceil(m.n / sampleEvery)),
      };
      this.byId.set(m.mapID, st);
      return st;
    });
    this.forwarded = 0; // new transactions received for the maps
    this.dups = 0;
    this.answered = 0;
    ws.on("message", (data) => this.onMessage(data));
  }
  onMessage(data) {
    const t = now();
    for (const l of lines(data)) {
      if (isPing(l)) continue;
      const idAt = l.indexOf(N.id);
      if (idAt < 0) continue;
      const idEnd = l.indexOf(34, idAt + 6);
      const st = this.byId.get(l.toString("latin1", idAt + 6, idEnd));
      if (!st) continue;
      if (!st.answered) {
        st.answered = true;
        this.answered++;
        if (this.answered === this.maps.length && this.onAllAnswered) this.onAllAnswered();
      }
      if (l.indexOf(N.content) < 0) continue;
      const a = l.indexOf(N.after);
      if (a < 0) continue;
      if (l.indexOf(N.after, a + 8) >= 0) {
        this.slowPath(l, st, t);
        continue;
      }
      let after = 0;
      for (let i = a + 8; i < l.length; i++) {
        const ch = l[i];
        if (ch < 48 || ch > 57) break;
        after = after * 10 + (ch - 48);
      }
      let len = 0;
      for (let p = l.indexOf(N.madeAt, a); p >= 0; p = l.indexOf(N.madeAt, p + 9)) len++;
      this.record(st, after, len, t);
    }
  }
  slowPath(l, st, t) {
    const m = JSON.parse(l.toString());
    for (const s of Object.values(m.new ?? {})) this.record(st, s.after, s.newTransactions.length, t);
  }
  record(st, after, len, t) {
    const end = after + len;
    if (end <= st.max) {
      this.dups += len;
      return;
    }
    const from = Math.max(after, st.max);
    if (after > st.max) note("gap in forwarded content", `sub ${this.idx} map ${st.writerIdx}: after ${after} > ${st.max}`);
    this.forwarded += end - from;
    this.dups += from - after;
    st.max = end;
    const S = this.S;
    for (let i = Math.ceil(from / S) * S; i < end; i += S) if (i / S < st.recvT.length) st.recvT[i / S] = t;
  }
}

async function cmdSubscribers(c) {
  const tasks = [];
  for (let k = 0; k < c.count; k++) {
    tasks.push(
      (async () => {
        const idx = c.firstIdx + k;
        const ws = await openSocket(c.url, `subscriber ${idx}`);
        const sub = new Subscriber(idx, ws, c.maps, c.sampleEvery);
        subs.push(sub);
        await new Promise((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new Error(`subscriber ${idx}: ${sub.answered}/${c.maps.length} loads answered after 60 s`)),
            60_000,
          );
          sub.onAllAnswered = () => {
            clearTimeout(timer);
            resolve();
          };
          for (const m of c.maps) ws.send(JSON.stringify({ action: "load", id: m.mapID, header: false, sessions: {} }));
        });
      })(),
    );
  }
  await Promise.all(tasks);
  return { type: "ready" };
}

// ------------------------------------------------------------- one-shots

async function cmdUpload(c) {
  const ws = await openSocket(c.url, "uploader");
  const all = c.files.flatMap((f) => readFileSync(f, "utf8").split("\n").filter(Boolean));
  const t0 = now();
  await uploadPipelined(ws, all, c.window, "uploader", 300_000);
  const ms = now() - t0;
  closing = true;
  ws.close();
  closing = false;
  return { type: "uploaded", ms, n: all.length };
}

async function cmdColdload(c) {
  const ws = await openSocket(c.url, "cold loader");
  const cpu0 = process.cpuUsage();
  const pending = new Set(c.ids);
  const result = await new Promise((resolve, reject) => {
    let next = 0;
    let inFlight = 0;
    let known = 0;
    let content = 0;
    let bytes = 0;
    let t0 = 0;
    const timer = setTimeout(
      () => reject(new Error(`cold load: ${pending.size} of ${c.ids.length} not answered after ${c.timeoutMs} ms`)),
      c.timeoutMs,
    );
    let frames = 0;
    const pump = () => {
      if (c.batch) {
        // several loads per frame (what a cojson client does once it batches)
        const parts = [];
        while (inFlight < c.inFlight && next < c.ids.length) {
          parts.push(`{"action":"load","id":"${c.ids[next++]}","header":false,"sessions":{}}`);
          inFlight++;
        }
        for (let i = 0; i < parts.length; i += 200) ws.send(parts.slice(i, i + 200).join("\n"));
        return;
      }
      burst(ws, () => {
        while (inFlight < c.inFlight && next < c.ids.length) {
          ws.send(`{"action":"load","id":"${c.ids[next++]}","header":false,"sessions":{}}`);
          inFlight++;
        }
      });
    };
    ws.on("message", (data) => {
      bytes += data.length;
      frames++;
      for (const l of lines(data)) {
        if (isPing(l)) continue;
        const idAt = l.indexOf(N.id);
        if (idAt < 0) continue;
        const id = l.toString("latin1", idAt + 6, l.indexOf(34, idAt + 6));
        if (!pending.has(id)) continue;
        // a load is answered by a `known` or a content that is not streaming
        const isKnown = l.indexOf(N.known) >= 0;
        if (!isKnown && l.indexOf(N.expect) >= 0) continue;
        if (isKnown) known++;
        else content++;
        pending.delete(id);
        inFlight--;
      }
      if (pending.size === 0) {
        clearTimeout(timer);
        resolve({ ms: now() - t0, known, content, bytes, frames });
        return;
      }
      pump();
    });
    t0 = now();
    pump();
  });
  const cpu = process.cpuUsage(cpu0);
  closing = true;
  ws.close();
  closing = false;
  return { type: "coldloaded", ...result, cpuMs: (cpu.user + cpu.system) / 1000 };
}

async function cmdCheck(c) {
  const ws = await openSocket(c.url, "checker");
  const want = new Map(c.expect.map((e) => [e.id, e]));
  const got = new Map();
  const partial = new Map();
  await new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`check: ${want.size - got.size} of ${want.size} loads not answered after 60 s`)),
      60_000,
    );
    ws.on("message", (data) => {
      for (const l of lines(data)) {
        if (isPing(l)) continue;
        const m = JSON.parse(l.toString());
        const e = want.get(m.id);
        if (process.env.BENCH_DEBUG_CHECK)
          console.error(
            "check <",
            m.action,
            m.id,
            JSON.stringify(m.sessions ?? Object.fromEntries(Object.entries(m.new ?? {}).map(([k, v]) => [k.slice(-6), [v.after, v.newTransactions.length]]))),
            m.expectContentUntil ? JSON.stringify(m.expectContentUntil) : "",
          );
        if (!e || got.has(m.id)) continue;
        if (m.action === "known") {
          // merged with what a content for this id already told
          const seen = partial.get(m.id) ?? {};
          const sessions = { ...(m.sessions ?? {}) };
          for (const [sid, n] of Object.entries(seen)) sessions[sid] = Math.max(sessions[sid] ?? 0, n);
          got.set(m.id, { header: m.header || Object.keys(seen).length > 0, sessions });
        } else if (m.action === "content") {
          // The server sends content when it has more than claimed, or (the
          // reference, for values it loads from storage) everything from 0:
          // the count is after + len, or expectContentUntil when streamed.
          const seen = partial.get(m.id) ?? {};
          for (const [sid, s] of Object.entries(m.new ?? {}))
            seen[sid] = Math.max(seen[sid] ?? 0, m.expectContentUntil?.[sid] ?? s.after + s.newTransactions.length);
          partial.set(m.id, seen);
          if (Object.keys(e.sessions).every((sid) => sid in seen)) got.set(m.id, { header: true, sessions: { ...seen } });
        }
      }
      if (got.size === want.size) {
        clearTimeout(timer);
        resolve();
      }
    });
    for (const e of c.expect) ws.send(JSON.stringify({ action: "load", id: e.id, header: true, sessions: e.sessions }));
  });
  closing = true;
  ws.close();
  closing = false;
  return { type: "checked", got: c.expect.map((e) => ({ id: e.id, ...got.get(e.id) })) };
}

async function cmdIdle(c) {
  let open = 0;
  let failed = 0;
  let next = 0;
  const firstErrors = [];
  const worker = async () => {
    while (next < c.count) {
      next++;
      try {
        await openSocket(c.url, `idle ${next}`);
        open++;
      } catch (e) {
        failed++;
        if (firstErrors.length < 3) firstErrors.push(e.message);
      }
    }
  };
  await Promise.all(Array.from({ length: c.concurrency }, worker));
  return { type: "idle-open", open, failed, firstErrors };
}

// ---------------------------------------------------------------- stats

function cmdSnap() {
  const cpu = process.cpuUsage();
  return {
    type: "snap",
    t: now(),
    cpuMs: (cpu.user + cpu.system) / 1000,
    acked: writers.map((w) => [w.idx, w.acked]),
    sent: writers.reduce((s, w) => s + w.sent, 0),
    forwarded: subs.reduce((s, x) => s + x.forwarded, 0),
    dups: subs.reduce((s, x) => s + x.dups, 0),
    events: { ...events, errors: [...events.errors] },
  };
}

function cmdResults() {
  return {
    type: "results",
    writers: writers.map((w) => ({
      idx: w.idx,
      n: w.n,
      sent: w.sent,
      acked: w.acked,
      doneAt: w.doneAt,
      t0: w.t0,
      sendT: Array.from(w.sendT),
    })),
    subs: subs.map((s) => ({
      idx: s.idx,
      forwarded: s.forwarded,
      maps: s.maps.map((m) => ({ writerIdx: m.writerIdx, max: m.max, recvT: Array.from(m.recvT) })),
    })),
    events,
  };
}

const handlers = {
  writers: cmdWriters,
  subscribers: cmdSubscribers,
  upload: cmdUpload,
  coldload: cmdColdload,
  check: cmdCheck,
  idle: cmdIdle,
  snap: cmdSnap,
  results: cmdResults,
  go: () => {
    const t0 = now();
    for (const w of writers) w.start(t0);
    return { type: "started", t: t0 };
  },
  close: () => {
    closing = true;
    for (const ws of sockets) ws.terminate();
    setTimeout(() => process.exit(0), 50);
    return { type: "closed" };
  },
};

process.on("message", async (c) => {
  try {
    const h = handlers[c.cmd];
    if (!h) throw new Error(`unknown command ${c.cmd}`);
    send({ ...(await h(c)), reqId: c.reqId });
  } catch (e) {
    send({ type: "error", reqId: c.reqId, message: e?.stack ?? String(e) });
  }
});
process.on("disconnect", () => process.exit(0));
// Hard bound: no worker outlives this (the parent closes us long before).
setTimeout(() => process.exit(4), Number(process.env.BENCH_WORKER_MAX_MS ?? 900_000)).unref();
