// Helpers for the storage scenarios (tests/storage_interop.rs): clients that
// log in with an existing account, bare agent nodes, reading binary streams,
// and counting the server's acknowledgements (`known` messages) on the wire.
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { LocalNode } from "cojson";
import { createWebSocketPeer } from "cojson-transport-ws";
import { crypto, describe, fail, waitFor, WebSocket, withTimeout } from "./lib.mjs";

export const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

/**
 * Deterministic bytes, as in shared/generators/storage-fixtures: byte i is the
 * top byte of an LCG state x = x*1103515245 + 12345 (mod 2^32), updated
 * before each byte.
 */
export function patternBytes(len, seed) {
  const out = new Uint8Array(len);
  let x = seed >>> 0;
  for (let i = 0; i < len; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

export const readJson = (path) => JSON.parse(readFileSync(path, "utf8"));
export const writeJson = (path, value) => writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);

const opened = [];

/** Closes every node opened by this module (best effort). */
export function closeAll() {
  for (const n of opened.splice(0)) {
    try {
      n.gracefulShutdown();
    } catch {
      // best effort
    }
  }
}

function peer(url, name, WebSocketConstructor = WebSocket) {
  return createWebSocketPeer({
    id: `upstream-${name}`,
    websocket: new WebSocketConstructor(url),
    role: "server",
  });
}

/** A node logged in as an existing account, loaded from the server at `url`. */
export async function loginClient(url, accountID, accountSecret, name) {
  const node = await withTimeout(
    LocalNode.withLoadedAccount({
      accountID,
      accountSecret,
      sessionID: undefined,
      peers: [peer(url, name)],
      crypto,
    }),
    30_000,
    `${name} logging in as ${accountID}`,
  );
  opened.push(node);
  return node;
}

export { openSqliteStorage } from "./sqlite-storage.mjs";

/**
 * A node with a random agent and no account (what a sync server is): it can
 * load and verify any CoValue, but decrypt nothing private.
 */
export function agentNode(url, name, WebSocketConstructor) {
  const secret = crypto.newRandomAgentSecret();
  const node = new LocalNode(secret, crypto.newRandomSessionID(crypto.getAgentID(secret)), crypto);
  node.syncManager.addPeer(peer(url, name, WebSocketConstructor));
  opened.push(node);
  return node;
}

/**
 * Loads `id` and waits until every streamed chunk has arrived; returns the
 * CoValueCore. Fails if the server says it is unavailable.
 */
export async function loadFully(node, id, what, timeoutMs = 30_000) {
  const v = await withTimeout(node.load(id), timeoutMs, `loading ${what} (${id})`);
  if (v === "unavailable") fail(`could not load ${what} (${id}): unavailable`);
  const core = node.getCoValue(id);
  await withTimeout(core.waitForFullStreaming(), timeoutMs, `${what} (${id}) to finish streaming`);
  return core;
}

/** What a binary CoStream holds: its start info, chunk count and SHA-256. */
export function binaryInfo(stream) {
  const b = stream.getBinaryChunks(true);
  if (!b) return undefined;
  return {
    mimeType: b.mimeType,
    fileName: b.fileName,
    totalSizeBytes: b.totalSizeBytes,
    chunkCount: b.chunks.length,
    finished: b.finished,
    sha256: sha256(Buffer.concat(b.chunks.map((c) => Buffer.from(c)))),
  };
}

/** Loads a binary stream completely and returns `binaryInfo` of it. */
export async function readBinary(node, id, what) {
  const core = await loadFully(node, id, what);
  return waitFor(`${what} to be complete`, () => {
    const info = binaryInfo(core.getCurrentContent());
    return info?.finished ? info : undefined;
  });
}

/**
 * Counts acknowledgements on the wire: for every CoValue and session, the
 * highest transaction count any `known` message from the server claimed (a
 * `known` is the server saying "I have sessions[sid] transactions of it").
 * Attach it to a client's WebSocket with `trackingWebSocket`.
 */
export class AckTracker {
  constructor() {
    /** id -> sid -> highest count acknowledged */
    this.acked = new Map();
    this.knownMessages = 0;
    this.frames = 0;
    this.unparsable = 0;
  }

  onFrame(data) {
    this.frames++;
    const text = typeof data === "string" ? data : Buffer.from(data).toString("utf8");
    for (const line of text.split("\n")) {
      if (!line) continue;
      let msg;
      try {
        msg = JSON.parse(line);
      } catch {
        this.unparsable++;
        continue;
      }
      if (msg?.action !== "known" || typeof msg.id !== "string") continue;
      this.knownMessages++;
      let sessions = this.acked.get(msg.id);
      if (!sessions) this.acked.set(msg.id, (sessions = new Map()));
      for (const [sid, n] of Object.entries(msg.sessions ?? {})) {
        if (typeof n === "number" && n > (sessions.get(sid) ?? 0)) sessions.set(sid, n);
      }
    }
  }

  /** Sum over all CoValues and sessions of the acknowledged counts. */
  total(ids) {
    let t = 0;
    for (const [id, sessions] of this.acked) {
      if (ids && !ids.has(id)) continue;
      for (const n of sessions.values()) t += n;
    }
    return t;
  }

  toJSON() {
    return Object.fromEntries([...this.acked].map(([id, s]) => [id, Object.fromEntries(s)]));
  }
}

/**
 * A WebSocket class whose instances feed every frame they receive to
 * `tracker` (before cojson's own listener sees it) and report `close`.
 */
export function trackingWebSocket(tracker, onClose = () => {}) {
  return class TrackingWebSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (ev) => tracker.onFrame(ev.data));
      this.addEventListener("close", () => onClose());
    }
  };
}

/** Key-sorted JSON, for order-insensitive comparison. */
export function canonicalJson(v) {
  const canon = (x) =>
    Array.isArray(x)
      ? x.map(canon)
      : x && typeof x === "object"
        ? Object.fromEntries(
            Object.keys(x)
              .sort()
              .map((k) => [k, canon(x[k])]),
          )
        : x;
  return JSON.stringify(canon(v));
}

export function assertSame(actual, expected, what) {
  if (canonicalJson(actual) !== canonicalJson(expected)) {
    fail(`${what}: expected ${describe(expected)}, got ${describe(actual)}`);
  }
}
