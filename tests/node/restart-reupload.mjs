// restart-reupload: a client that outlives a server restart re-uploads what it
// holds, and a fresh client can then load it.
//
// Design: the server must be killed and restarted on the same port while the
// client node keeps running, so this script runs the server itself. It takes
// the server command as a JSON array (argv, no shell) in `--server-cmd JSON`
// or the SERVER_CMD environment variable; every "{PORT}" in it is replaced by
// a free port picked here, the same one for both runs. The command must print
// `listening on HOST:PORT` to stdout or stderr and keep everything in memory.
// Default: the reference server, i.e.
//   ["node", "<this dir>/reference-server.mjs", "--host", "127.0.0.1", "--port", "{PORT}"]
// Examples:
//   node restart-reupload.mjs
//   SERVER_CMD='["target/debug/maia-sync","--in-memory","--host","127.0.0.1","--port","{PORT}"]' \
//     node restart-reupload.mjs
//
// Steps and assertions:
//  1. Start the server. The keeper (a client with WebSocketPeerWithReconnection,
//     as jazz-tools uses) creates an account, a group (`everyone` reader), a
//     CoMap and a CoList; the server acks all of it; a first fresh client
//     loads the map (the data was really on the server).
//  2. The keeper is taken offline (its reconnection attempts are sent to a
//     local port that drops every connection), the server is killed (SIGKILL)
//     and started again with the same command on the same port.
//  3. A probe client loads the map with skipRetry: it must be "unavailable"
//     (the restarted in-memory server lost everything).
//  4. The keeper goes back online: it reconnects by itself and re-uploads
//     everything (its `load`s with its known states get `known header:false`
//     answers, then it sends the content). Its node waits until the server
//     has acked everything again.
//  5. A second fresh client loads the map, the list and the keeper's account
//     profile and reads the exact values; the probe client, which asked for the
//     map before it was re-uploaded and stayed subscribed, receives it too.
//  6. A write made by the keeper after the restart reaches the second fresh
//     client live.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  assertEqual,
  log,
  newClient,
  scenario,
  sleep,
  subscribeUntil,
  waitFor,
  WebSocket,
} from "./lib.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const argv = process.argv.slice(2);
const flag = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const serverCmdJson = flag("--server-cmd") ?? process.env.SERVER_CMD;
const serverCmd = serverCmdJson
  ? JSON.parse(serverCmdJson)
  : [process.execPath, join(here, "reference-server.mjs"), "--host", "127.0.0.1", "--port", "{PORT}"];
if (!Array.isArray(serverCmd) || serverCmd.length === 0 || !serverCmd.every((s) => typeof s === "string")) {
  console.error("restart-reupload: the server command must be a non-empty JSON array of strings");
  process.exit(2);
}
const urlPath = flag("--path") ?? "/sync";
const echoLogs = Boolean(process.env.MAIA_TEST_ECHO_LOGS);

/** A free TCP port on 127.0.0.1 (bound and released). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const serverLogs = [];
const children = new Set();
process.on("exit", () => {
  for (const c of children) c.kill("SIGKILL");
  if (process.exitCode && serverLogs.length) {
    console.error(`--- last server log lines (of ${serverLogs.length}) ---`);
    console.error(serverLogs.slice(-150).join("\n"));
  }
});

/** Starts the server command; resolves with {child, addr} once it listens. */
function startServerOnce(port, label) {
  const args = serverCmd.map((a) => a.replaceAll("{PORT}", String(port)));
  const child = spawn(args[0], args.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      if (!settled) {
        settled = true;
        child.kill("SIGKILL");
        reject(new Error(`${label}: no "listening on" line within 20 s`));
      }
    }, 20_000);
    const onLine = (line) => {
      serverLogs.push(`[${label}] ${line}`);
      if (echoLogs) console.error(`[${label}] ${line}`);
      const m = /listening on (\S+)/.exec(line);
      if (m && !settled) {
        settled = true;
        clearTimeout(timer);
        resolve({ child, addr: m[1] });
      }
    };
    for (const stream of [child.stdout, child.stderr]) {
      let buf = "";
      stream.setEncoding("utf8");
      stream.on("data", (d) => {
        buf += d;
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          onLine(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
        }
      });
    }
    child.on("error", (e) => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        reject(new Error(`${label}: cannot start ${JSON.stringify(args)}: ${e.message}`));
      }
    });
    child.on("exit", (code, signal) => {
      children.delete(child);
      serverLogs.push(`[${label}] exited code=${code} signal=${signal}`);
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        reject(new Error(`${label}: exited (code ${code}, signal ${signal}) before listening`));
      }
    });
  });
}

/** Starts the server, retrying a few times (the port may take a moment to free up). */
async function startServer(port, label) {
  let lastErr;
  for (let attempt = 1; attempt <= 10; attempt++) {
    try {
      return await startServerOnce(port, `${label}${attempt > 1 ? `#${attempt}` : ""}`);
    } catch (e) {
      lastErr = e;
      await sleep(300);
    }
  }
  throw lastErr;
}

function killServer(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}

/** A local port that accepts and immediately drops every connection. */
async function blackHole() {
  const srv = createServer((sock) => sock.destroy());
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  return { url: `ws://127.0.0.1:${srv.address().port}/offline`, close: () => srv.close() };
}

await scenario(
  "restart-reupload",
  async () => {
    const port = await freePort();
    const url = `ws://127.0.0.1:${port}${urlPath}`;
    const s1 = await startServer(port, "server1");
    log("server 1 listening on", s1.addr);

    // The keeper's WebSocket constructor: while `offline`, connections go to
    // the black hole instead of the server.
    const hole = await blackHole();
    let offline = false;
    class GatedWebSocket extends WebSocket {
      constructor(address, ...rest) {
        super(offline ? hole.url : address, ...rest);
      }
    }

    const keeper = await newClient(url, "Keeper", { reconnect: true, WebSocketConstructor: GatedWebSocket });
    const group = keeper.node.createGroup();
    group.addMember("everyone", "reader");
    const map = group.createMap({ title: "survives restarts", n: 7 });
    map.set("plain", "trusting value", "trusting");
    const list = group.createList(["x", "y", "z"]);
    list.append("w");
    await keeper.synced();
    await waitFor("the keeper to be connected", () => keeper.connection.connected);
    log("keeper created", { map: map.id, list: list.id, account: keeper.accountID });

    const before = await newClient(url, "FreshBefore");
    assertEqual((await before.load(map.id, "the map before the restart")).get("title"), "survives restarts", "title before restart");
    before.close();

    offline = true;
    await killServer(s1.child);
    log("server 1 killed");
    await waitFor("the keeper to notice the disconnection", () => !keeper.connection.connected, { timeoutMs: 15_000 });
    const s2 = await startServer(port, "server2");
    log("server 2 listening on", s2.addr);

    const probe = await newClient(url, "Probe");
    const probed = await probe.node.load(map.id, true);
    assertEqual(probed, "unavailable", "the map on the restarted server before the keeper is back");
    log("restarted server does not have the map (as expected)");

    const tr = Date.now();
    offline = false;
    await waitFor("the keeper to reconnect", () => keeper.connection.connected, { timeoutMs: 20_000 });
    log(`keeper reconnected after ${Date.now() - tr} ms`);
    await keeper.synced();
    log(`keeper's re-upload acked ${Date.now() - tr} ms after going back online`);

    const after = await newClient(url, "FreshAfter");
    const mapAfter = await after.load(map.id, "the map after the restart");
    assertEqual(mapAfter.get("title"), "survives restarts", "title after restart");
    assertEqual(mapAfter.get("n"), 7, "n after restart");
    assertEqual(mapAfter.get("plain"), "trusting value", "plain after restart");
    await after.load(list.id, "the list after the restart");
    await waitFor("the list to be complete", () => after.content(list.id)?.asArray().length === 4);
    assertEqual(after.content(list.id).asArray(), ["x", "y", "z", "w"], "list after restart");
    const account = await after.load(keeper.accountID, "the keeper's account");
    const profile = await after.load(account.get("profile"), "the keeper's profile");
    assertEqual(profile.get("name"), "Keeper", "keeper's profile name");

    // The probe asked before the re-upload; the server pushes the value to it
    // once the keeper has uploaded it.
    await waitFor("the probe to receive the re-uploaded map", () => probe.content(map.id)?.get("title") === "survives restarts", {
      timeoutMs: 10_000,
    });

    const live = subscribeUntil(after, map.id, "the keeper's post-restart write", (m) => m.get("after") === "restart");
    map.set("after", "restart");
    await live;
    log("post-restart live update arrived");

    hole.close();
    await killServer(s2.child);
  },
  { timeoutMs: 90_000 },
);
