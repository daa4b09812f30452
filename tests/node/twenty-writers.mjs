// twenty-writers: 20 clients (20 nodes, 20 accounts, 20 WebSocket
// connections, all in this one process) load one CoMap owned by a group where
// `everyone` is a writer; then all of them write 5 distinct keys each at the
// same time. Every client must converge to the full set of 100 keys with the
// right values, and all 20 must end with the same known state (one session
// per writer, plus the creator's).
//
// Usage: node twenty-writers.mjs ws://127.0.0.1:PORT/sync
import {
  assertEqual,
  canonical,
  log,
  newClient,
  scenario,
  tick,
  urlArg,
  waitFor,
} from "./lib.mjs";

const url = urlArg();
const WRITERS = 20;
const KEYS_EACH = 5;

await scenario(
  "twenty-writers",
  async () => {
    const clients = await Promise.all(
      Array.from({ length: WRITERS }, (_, i) => newClient(url, `Writer${i}`)),
    );
    log(`${WRITERS} accounts created`);
    const [creator] = clients;
    const group = creator.node.createGroup();
    group.addMember("everyone", "writer");
    const map = group.createMap({ createdBy: "Writer0" });
    await creator.synced();
    log("map created", map.id);

    const t = Date.now();
    const maps = await Promise.all(clients.map((c) => c.load(map.id, "the shared map")));
    log(`all ${WRITERS} loaded the map in ${Date.now() - t} ms`);
    for (const [i, m] of maps.entries()) {
      assertEqual(m.get("createdBy"), "Writer0", `Writer${i}'s initial view`);
      assertEqual(m.group.myRole(), i === 0 ? "admin" : "writer", `Writer${i}'s role`);
    }

    const expected = { createdBy: "Writer0" };
    const tw = Date.now();
    for (let j = 0; j < KEYS_EACH; j++) {
      for (let i = 0; i < WRITERS; i++) {
        maps[i].set(`w${i}-k${j}`, `value of writer ${i} key ${j}`);
        expected[`w${i}-k${j}`] = `value of writer ${i} key ${j}`;
      }
      await tick();
    }
    const want = JSON.stringify(canonical(expected));
    const lagging = () =>
      clients
        .map((c) => {
          const have = Object.keys(c.content(map.id).toJSON()).length;
          return JSON.stringify(canonical(c.content(map.id).toJSON())) === want ? null : `${c.name}:${have}`;
        })
        .filter(Boolean);
    await waitFor(
      "every client to have all keys",
      () => lagging().length === 0,
      { timeoutMs: 30_000, intervalMs: 100 },
    ).catch((e) => {
      throw new Error(`${e.message}\nclients not converged (name:keys, want ${Object.keys(expected).length}): ${lagging().join(" ")}`);
    });
    log(`all ${WRITERS} clients converged on ${Object.keys(expected).length} keys ${Date.now() - tw} ms after the writes`);

    await Promise.all(clients.map((c) => c.synced()));
    const states = clients.map((c) => JSON.stringify(canonical(c.node.getCoValue(map.id).knownState())));
    for (const [i, s] of states.entries()) {
      assertEqual(s, states[0], `Writer${i}'s known state equals Writer0's`);
    }
    const sessions = Object.keys(clients[0].node.getCoValue(map.id).knownState().sessions);
    assertEqual(sessions.length, WRITERS, "number of sessions in the map (one per writer)");
  },
  { timeoutMs: 60_000 },
);
