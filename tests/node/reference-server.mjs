// Reference sync server: what `jazz-run sync` does with cojson 0.20.19 — one
// LocalNode with a random agent and no account, every WebSocket connection
// added as a peer with role "client". It is the yardstick the interop
// scenarios are validated against, and a baseline for benchmarks.
//
// Usage:
//   node reference-server.mjs [--host 127.0.0.1] [--port N | N] [--db PATH]
//     port also from PORT (default 4203; 0 = pick a free port)
//     --db PATH: persist into SQLite at PATH with cojson's own storage
//                (`getSqliteStorage` + a better-sqlite3 driver in WAL mode,
//                like jazz-run's cojson-storage-sqlite); the file is created
//                and migrated if needed. Without --db (or with --in-memory)
//                everything is kept in memory, like `jazz-run sync --in-memory`.
//                As in jazz-run, the database is not closed on exit, so a
//                `-wal` file is left beside it.
//     --log-frames (or LOG_FRAMES=1): print a one-line summary of every frame
//                  in/out to stderr (pings out are not shown) - handy to
//                  study the protocol.
//
// Prints `listening on HOST:PORT` to stderr once it accepts connections.
// GET /health answers 200 "ok"; a WebSocket upgrade on any other path is a
// sync connection. Exits on SIGINT/SIGTERM.
import { createServer } from "node:http";
import { LocalNode } from "cojson";
import { openSqliteStorage } from "./sqlite-storage.mjs";
import { WasmCrypto } from "cojson/crypto/WasmCrypto";
import { createWebSocketPeer } from "cojson-transport-ws";
import { WebSocketServer } from "ws";

const args = process.argv.slice(2);
let host = process.env.HOST || "127.0.0.1";
let port = process.env.PORT ?? "4203";
let logFrames = process.env.LOG_FRAMES === "1";
let dbPath;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--host") host = args[++i];
  else if (a === "--port") port = args[++i];
  else if (a === "--log-frames") logFrames = true;
  else if (a === "--db") {
    dbPath = args[++i];
    if (!dbPath) {
      console.error("reference-server: --db needs a file path");
      process.exit(2);
    }
  }
  else if (a === "--in-memory") {
    // accepted for command-line compatibility with maia-sync
    dbPath = undefined;
  } else if (/^\d+$/.test(a)) port = a;
  else {
    console.error(`reference-server: unknown argument ${a}`);
    process.exit(2);
  }
}
if (!/^\d+$/.test(String(port))) {
  console.error(`reference-server: bad port ${port}`);
  process.exit(2);
}

const crypto = await WasmCrypto.create();
const agentSecret = crypto.newRandomAgentSecret();
const node = new LocalNode(
  agentSecret,
  crypto.newRandomSessionID(crypto.getAgentID(agentSecret)),
  crypto,
);

if (dbPath) {
  let opened;
  try {
    opened = await openSqliteStorage(dbPath);
  } catch (e) {
    console.error(`reference-server: cannot open database ${dbPath}: ${e.message}`);
    process.exit(1);
  }
  const { storage, db } = opened;
  node.setStorage(storage);
  console.error(`database ${dbPath} (cojson schema ${db.pragma("user_version", { simple: true })})`);
}

// One line per frame: its size and a summary of each message in it.
const summarize = (data) => {
  const raw = typeof data === "string" ? data : Buffer.from(data).toString("utf8");
  const short = (id) => (typeof id === "string" ? `${id.slice(0, 10)}..` : String(id));
  const sessions = (obj, f) =>
    Object.entries(obj ?? {})
      .map(([sid, v]) => `${sid.slice(-6)}:${f(v)}`)
      .join(",");
  const parts = raw.split("\n").map((line) => {
    let m;
    try {
      m = JSON.parse(line);
    } catch {
      return `UNPARSEABLE(${line.length} chars)`;
    }
    if (m.type === "ping") return "ping";
    switch (m.action) {
      case "content":
        return `content ${short(m.id)}${m.header ? " +header" : ""} prio=${m.priority} {${sessions(
          m.new,
          (v) => `after ${v.after} +${v.newTransactions.length}`,
        )}}${m.expectContentUntil ? ` until{${sessions(m.expectContentUntil, (v) => v)}}` : ""}`;
      case "known":
      case "load":
        return `${m.action}${m.isCorrection ? "(correction)" : ""} ${short(m.id)} header=${m.header} {${sessions(
          m.sessions,
          (v) => v,
        )}}`;
      default:
        return `${m.action} ${short(m.id)}`;
    }
  });
  return `[${raw.length} chars, ${parts.length} msg] ${parts.join(" | ")}`;
};

const server = createServer((req, res) => {
  if (req.url === "/health") {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("ok");
    return;
  }
  res.writeHead(426, { "content-type": "text/plain" });
  res.end("websocket upgrade required");
});

// Same payload limit as the `ws` default used by jazz-run (100 MiB).
const wss = new WebSocketServer({ noServer: true, maxPayload: 100 * 1024 * 1024 });
let connCounter = 0;

wss.on("connection", (ws, req) => {
  const id = `conn${++connCounter}`;
  if (logFrames) {
    console.error(`${id} open ${req.socket.remoteAddress}:${req.socket.remotePort} ${req.url}`);
    const origSend = ws.send.bind(ws);
    ws.send = (data, ...rest) => {
      if (!String(data).startsWith('{"type":"ping"')) {
        console.error(`${id} s2c ${summarize(data)}`);
      }
      return origSend(data, ...rest);
    };
    ws.on("message", (data) => console.error(`${id} c2s ${summarize(data)}`));
    ws.on("close", (code) => console.error(`${id} close ${code}`));
  }
  // Liveness pings every 1.5 s, exactly like jazz-run's sync server.
  const pinging = setInterval(() => {
    if (ws.readyState === ws.OPEN) {
      ws.send(JSON.stringify({ type: "ping", time: Date.now(), dc: "unknown" }));
    }
  }, 1500);
  ws.on("close", () => clearInterval(pinging));
  ws.on("error", () => clearInterval(pinging));

  node.syncManager.addPeer(
    createWebSocketPeer({
      id,
      role: "client",
      websocket: ws,
      expectPings: false,
      batchingByDefault: false,
      deletePeerStateOnClose: true,
    }),
  );
});

server.on("upgrade", (req, socket, head) => {
  if (req.url === "/health") {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit("connection", ws, req));
});

server.on("error", (err) => {
  console.error(`reference-server: ${err.message}`);
  process.exit(1);
});

server.listen(Number(port), host, () => {
  const addr = server.address();
  console.error(`listening on ${addr.address}:${addr.port}`);
});

const shutdown = () => {
  for (const c of wss.clients) c.terminate();
  server.close();
  process.exit(0);
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
