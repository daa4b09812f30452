// Shared helpers for the interop scenarios: real cojson 0.20.19 clients
// (LocalNode + cojson-transport-ws over the `ws` package) talking to a sync
// server at a ws:// URL.
//
// Environment:
//   COJSON_CRYPTO=wasm (default, what browsers run) | napi (native, faster)
//   COJSON_LOG_LEVEL=debug|info|warn|error (default warn)
import { performance } from "node:perf_hooks";
import { cojsonInternals, LocalNode, logger, LogLevel } from "cojson";
import {
  createWebSocketPeer,
  WebSocketPeerWithReconnection,
} from "cojson-transport-ws";
import { WebSocket } from "ws";

export { WebSocket };

logger.setLevel(
  {
    debug: LogLevel.DEBUG,
    info: LogLevel.INFO,
    warn: LogLevel.WARN,
    error: LogLevel.ERROR,
  }[process.env.COJSON_LOG_LEVEL ?? "warn"] ?? LogLevel.WARN,
);

async function makeCrypto() {
  if (process.env.COJSON_CRYPTO === "napi") {
    const { NapiCrypto } = await import("cojson/crypto/NapiCrypto");
    return NapiCrypto.create();
  }
  const { WasmCrypto } = await import("cojson/crypto/WasmCrypto");
  return WasmCrypto.create();
}

export const crypto = await makeCrypto();

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Yield to the event loop (lets sockets flush and incoming messages run). */
export const tick = () => new Promise((r) => setImmediate(r));

const t0 = performance.now();
export const elapsed = () => Math.round(performance.now() - t0);
export function log(...parts) {
  console.log(`[+${String(elapsed()).padStart(6)} ms]`, ...parts);
}

/** Short, bounded description of a value for error messages. */
export function describe(v) {
  let s;
  try {
    s = JSON.stringify(v);
  } catch {
    s = String(v);
  }
  if (s === undefined) s = String(v);
  return s.length > 400 ? `${s.slice(0, 400)}... (${s.length} chars)` : s;
}

export function fail(message) {
  throw new Error(message);
}

export function assert(cond, message) {
  if (!cond) fail(`assertion failed: ${message}`);
}

export function assertEqual(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) {
    fail(`${what}: expected ${describe(expected)}, got ${describe(actual)}`);
  }
}

/** JSON with object keys sorted, for order-insensitive comparison of maps. */
export function canonical(v) {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === "object") {
    return Object.fromEntries(
      Object.keys(v)
        .sort()
        .map((k) => [k, canonical(v[k])]),
    );
  }
  return v;
}

/**
 * Polls `fn` until it returns a truthy value (which is returned). Throws
 * with `what` and the last value / error seen when `timeoutMs` passes.
 */
export async function waitFor(what, fn, { timeoutMs = 20_000, intervalMs = 50 } = {}) {
  const deadline = performance.now() + timeoutMs;
  let last;
  let lastErr;
  for (;;) {
    try {
      last = await fn();
      lastErr = undefined;
      if (last) return last;
    } catch (e) {
      lastErr = e;
    }
    if (performance.now() > deadline) {
      fail(
        `timed out after ${timeoutMs} ms waiting for ${what}; last value: ${describe(last)}` +
          (lastErr ? `; last error: ${lastErr?.stack ?? lastErr}` : ""),
      );
    }
    await sleep(intervalMs);
  }
}

/** Rejects with a clear message if `promise` does not settle in time. */
export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

const clients = [];

/**
 * A client as an app would run it: a LocalNode with a newly created account
 * (account + profile group + profile) and one upstream peer (role "server")
 * to `url`.
 *
 * With `reconnect: true` the peer is a `WebSocketPeerWithReconnection`
 * (what jazz-tools uses in browsers): when the socket closes it reconnects
 * (500 ms x attempt) and the node re-syncs everything it holds.
 * `WebSocketConstructor` may be overridden (used to simulate going offline).
 */
export async function newClient(url, name, { reconnect = false, WebSocketConstructor = WebSocket } = {}) {
  let node;
  let accountID;
  let accountSecret;
  let connection;
  if (!reconnect) {
    const peer = createWebSocketPeer({
      id: `upstream-${name}`,
      websocket: new WebSocketConstructor(url),
      role: "server",
    });
    ({ node, accountID, accountSecret } = await LocalNode.withNewlyCreatedAccount({
      creationProps: { name },
      crypto,
      peers: [peer],
    }));
  } else {
    ({ node, accountID, accountSecret } = await LocalNode.withNewlyCreatedAccount({
      creationProps: { name },
      crypto,
    }));
    connection = new WebSocketPeerWithReconnection({
      peer: url,
      reconnectionTimeout: 500,
      addPeer: (peer) => node.syncManager.addPeer(peer),
      removePeer: (peer) => node.syncManager.removePeer(peer.id),
      WebSocketConstructor,
    });
    connection.enable();
  }
  const client = {
    name,
    node,
    accountID,
    accountSecret,
    connection,
    /** The current content view of a loaded CoValue (fresh each call). */
    content(id) {
      const core = node.getCoValue(id);
      return core.isAvailable() ? core.getCurrentContent() : undefined;
    },
    /** Loads `id`; fails (with `what`) if the server says it is unavailable. */
    async load(id, what = id) {
      const v = await withTimeout(node.load(id), 30_000, `${name} loading ${what}`);
      if (v === "unavailable") fail(`${name} could not load ${what} (${id}): unavailable`);
      return v;
    },
    /** Waits until the server has confirmed everything this node holds. */
    async synced(timeoutMs = 30_000) {
      try {
        await withTimeout(
          node.syncManager.waitForAllCoValuesSync(timeoutMs),
          timeoutMs + 1000,
          `${name} waiting for all CoValues to sync`,
        );
      } catch (e) {
        throw new Error(
          `${name}: the server did not acknowledge (with a covering \`known\`) everything this node holds within ${timeoutMs} ms: ${e.message}`,
        );
      }
    },
    close() {
      connection?.disable();
      node.gracefulShutdown();
    },
  };
  clients.push(client);
  return client;
}

/**
 * Loads `accountID` through the server into `owner`'s node and adds it to
 * `group` with `role` (a node must hold an account to add it: it reveals the
 * group's read key to the account's sealer).
 */
export async function addMemberByID(owner, group, accountID, role) {
  const account = await owner.load(accountID, "member account");
  group.addMember(account, role);
}

/**
 * Subscribes to `id` in `client` and resolves with the content once
 * `predicate(content)` holds; rejects after `timeoutMs`.
 */
export function subscribeUntil(client, id, what, predicate, timeoutMs = 15_000) {
  return new Promise((resolve, reject) => {
    let last;
    let done = false;
    let unsubscribe = () => {};
    const timer = setTimeout(() => {
      done = true;
      unsubscribe();
      reject(
        new Error(
          `timed out after ${timeoutMs} ms: ${client.name} never saw ${what}; last seen: ${describe(last?.toJSON?.())}`,
        ),
      );
    }, timeoutMs);
    unsubscribe = client.node.subscribe(id, (value) => {
      if (done) return;
      if (value === "unavailable") {
        done = true;
        clearTimeout(timer);
        reject(new Error(`${client.name}: ${what}: ${id} is unavailable`));
        return;
      }
      last = value;
      let ok = false;
      try {
        ok = predicate(value);
      } catch {
        ok = false;
      }
      if (ok) {
        done = true;
        clearTimeout(timer);
        // unsubscribe may not be assigned yet when the first callback is synchronous
        setImmediate(() => unsubscribe());
        resolve(value);
      }
    });
  });
}

/** A well-formed CoValue ID that no node has ever created or uploaded. */
export function nonexistentID() {
  return cojsonInternals.idforHeader(
    {
      type: "comap",
      ruleset: { type: "unsafeAllowAll" },
      meta: null,
      ...crypto.createdNowUnique(),
    },
    crypto,
  );
}

/** The server URL from argv (first non-flag argument). */
export function urlArg() {
  const url = process.argv.slice(2).find((a) => a.startsWith("ws://") || a.startsWith("wss://"));
  if (!url) {
    console.error(`usage: node ${process.argv[1]} ws://HOST:PORT/PATH`);
    process.exit(2);
  }
  return url;
}

/**
 * Runs a scenario: prints a PASS line and exits 0 on success; prints the
 * error and exits 1 on failure; exits 3 if it takes longer than `timeoutMs`.
 * Closes all clients in every case.
 */
export async function scenario(name, fn, { timeoutMs = 60_000 } = {}) {
  const closeAll = () => {
    for (const c of clients) {
      try {
        c.close();
      } catch {
        // closing is best effort
      }
    }
  };
  const timer = setTimeout(() => {
    console.error(`FAIL ${name}: overall timeout of ${timeoutMs} ms exceeded`);
    closeAll();
    process.exit(3);
  }, timeoutMs);
  try {
    await fn();
    clearTimeout(timer);
    closeAll();
    console.log(`PASS ${name} in ${elapsed()} ms`);
    // let the close frames go out
    await sleep(50);
    process.exit(0);
  } catch (e) {
    clearTimeout(timer);
    console.error(`FAIL ${name}: ${e?.stack ?? e}`);
    closeAll();
    await sleep(50);
    process.exit(1);
  }
}
