// Resolves the npm packages of tests/node (cojson, cojson-transport-ws, ws)
// so that benches/ needs no second `npm ci`. Node's ESM loader ignores
// NODE_PATH, hence createRequire + dynamic import.
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";

const nodeProject = new URL("../tests/node/", import.meta.url);
const req = createRequire(new URL("package.json", nodeProject));

export const testsNodeDir = fileURLToPath(nodeProject);

export function resolveDep(spec) {
  try {
    return req.resolve(spec);
  } catch (e) {
    const nm = fileURLToPath(new URL("node_modules", nodeProject));
    throw new Error(
      `cannot find ${spec} under ${nm}${existsSync(nm) ? "" : " (missing: run `npm ci` in tests/node)"}: ${e.message}`,
    );
  }
}

export async function importDep(spec) {
  return import(pathToFileURL(resolveDep(spec)).href);
}
