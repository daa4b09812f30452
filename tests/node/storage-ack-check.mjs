// storage-ack-check: after a crash and restart, checks that the server still
// has everything it acknowledged. Takes the OUT.json files of
// storage-ack-writer.mjs; a bare agent node (like a sync server: no account)
// loads every CoValue named there from the server, waits for all streamed
// chunks, and compares the VERIFIED known state (cojson checked the hash
// chains and signatures of what the server served) with the records:
//   for every CoValue and session: server count >= acknowledged count,
//   and server count <= what the writer held (nothing invented).
//
// usage: node storage-ack-check.mjs ws://HOST:PORT/sync IN.json [IN2.json ...]
//
// Prints `SUMMARY {json}` with the totals: covalues, sessions, ackedTx
// (transactions acknowledged and so checked), serverTx, localTx and
// unackedStored (transactions the server kept beyond the last ack it sent).
import { log, scenario, urlArg } from "./lib.mjs";
import { agentNode, closeAll, loadFully, readJson } from "./storage-lib.mjs";

const url = urlArg();
const inputs = process.argv.slice(2).filter((a) => a.endsWith(".json"));
if (inputs.length === 0) {
  console.error("usage: node storage-ack-check.mjs ws://HOST:PORT/sync IN.json [IN2.json ...]");
  process.exit(2);
}

await scenario(
  "storage-ack-check",
  async () => {
    try {
      const node = agentNode(url, "ack-checker");
      const totals = { covalues: 0, sessions: 0, ackedTx: 0, serverTx: 0, localTx: 0, unackedStored: 0 };
      const problems = [];
      for (const path of inputs) {
        const rec = readJson(path);
        for (const [id, ackedSessions] of Object.entries(rec.acked)) {
          const ackedSum = Object.values(ackedSessions).reduce((a, b) => a + b, 0);
          if (ackedSum === 0) continue;
          const core = await loadFully(node, id, `${id} (from ${path})`);
          const have = core.knownState().sessions;
          const local = rec.local[id] ?? {};
          totals.covalues++;
          for (const [sid, acked] of Object.entries(ackedSessions)) {
            const server = have[sid] ?? 0;
            totals.sessions++;
            totals.ackedTx += acked;
            totals.serverTx += server;
            totals.localTx += local[sid] ?? 0;
            totals.unackedStored += Math.max(0, server - acked);
            if (server < acked) {
              problems.push(`${id} session ${sid}: acknowledged ${acked} transactions, the server has ${server}`);
            }
            if (local[sid] !== undefined && server > local[sid]) {
              problems.push(`${id} session ${sid}: the server has ${server} transactions, the writer only made ${local[sid]}`);
            }
          }
        }
      }
      console.log(`SUMMARY ${JSON.stringify(totals)}`);
      if (problems.length) {
        throw new Error(`${problems.length} session(s) lost acknowledged data:\n  ${problems.join("\n  ")}`);
      }
      log("every acknowledged transaction is on the server");
    } finally {
      closeAll();
    }
  },
  { timeoutMs: 50_000 },
);
