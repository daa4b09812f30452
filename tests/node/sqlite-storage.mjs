// cojson 0.20's own SQLite storage (`getSqliteStorage`) over better-sqlite3,
// with the driver cojson-storage-sqlite 0.15 ships (BetterSqliteDriver) for
// the SQLiteDatabaseDriver interface (cojson src/storage/sqlite/types.ts):
// WAL and no other settings, so synchronous ends up NORMAL (docs/storage.md §1.2).
// Shared by the reference server (`--db`) and the client-side tests.
import { getSqliteStorage } from "cojson";

/**
 * Opens (or creates) `path`. Returns `{ storage, db }` (`db`: the
 * better-sqlite3 handle, for inspecting or editing tables; the storage
 * never closes it, like jazz-run).
 */
export async function openSqliteStorage(path) {
  // Loaded only when needed: everything else runs without it.
  const { default: Database } = await import("better-sqlite3");
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  const driver = {
    run: (sql, params) => void db.prepare(sql).run(params),
    get: (sql, params) => db.prepare(sql).get(params),
    query: (sql, params) => db.prepare(sql).all(params),
    transaction: (callback) => db.transaction(callback)(),
    closeDb: () => db.close(),
  };
  return { storage: getSqliteStorage(driver), db };
}
