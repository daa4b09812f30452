//! cojson's SQLite schema (docs/storage.md §1): the same tables, the same
//! `user_version` numbering, so the reference server and maia-sync can open
//! each other's databases. Unlike cojson, each migration and its version
//! bump commit together, so a crash cannot leave a half-applied migration.

use rusqlite::Connection;

/// The newest cojson schema version this build understands.
pub const SCHEMA_VERSION: i64 = 7;

/// (version, statements). The DDL text is kept identical to cojson's so
/// that `.schema` of a maia-sync database matches the reference's.
const MIGRATIONS: &[(i64, &[&str])] = &[
    (
        1,
        &[
            "CREATE TABLE IF NOT EXISTS transactions (
      ses INTEGER,
      idx INTEGER,
      tx TEXT NOT NULL,
      PRIMARY KEY (ses, idx)
    ) WITHOUT ROWID;",
            "CREATE TABLE IF NOT EXISTS sessions (
      rowID INTEGER PRIMARY KEY,
      coValue INTEGER NOT NULL,
      sessionID TEXT NOT NULL,
      lastIdx INTEGER,
      lastSignature TEXT,
      UNIQUE (sessionID, coValue)
    );",
            "CREATE INDEX IF NOT EXISTS sessionsByCoValue ON sessions (coValue);",
            "CREATE TABLE IF NOT EXISTS coValues (
      rowID INTEGER PRIMARY KEY,
      id TEXT NOT NULL UNIQUE,
      header TEXT NOT NULL UNIQUE
    );",
            "CREATE INDEX IF NOT EXISTS coValuesByID ON coValues (id);",
        ],
    ),
    (
        3,
        &[
            "CREATE TABLE IF NOT EXISTS signatureAfter (
      ses INTEGER,
      idx INTEGER,
      signature TEXT NOT NULL,
      PRIMARY KEY (ses, idx)
    ) WITHOUT ROWID;",
            "ALTER TABLE sessions ADD COLUMN bytesSinceLastSignature INTEGER;",
        ],
    ),
    (
        4,
        &[
            "CREATE TABLE IF NOT EXISTS unsynced_covalues (
      rowID INTEGER PRIMARY KEY,
      co_value_id TEXT NOT NULL,
      peer_id TEXT NOT NULL,
      UNIQUE (co_value_id, peer_id)
    );",
            "CREATE INDEX IF NOT EXISTS idx_unsynced_covalues_co_value_id ON unsynced_covalues(co_value_id);",
        ],
    ),
    (
        5,
        &[
            "CREATE TABLE IF NOT EXISTS deletedCoValues (
      coValueID TEXT PRIMARY KEY,
      status INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;",
            "CREATE INDEX IF NOT EXISTS deletedCoValuesByStatus ON deletedCoValues (status);",
        ],
    ),
    (
        6,
        &["CREATE TABLE IF NOT EXISTS storageReconciliationLocks (
      key TEXT PRIMARY KEY,
      holderSessionId TEXT NOT NULL,
      acquiredAt INTEGER NOT NULL,
      expiresAt INTEGER NOT NULL,
      lastProcessedOffset INTEGER NOT NULL DEFAULT 0,
      releasedAt INTEGER
    ) WITHOUT ROWID;"],
    ),
    (
        7,
        &["ALTER TABLE storageReconciliationLocks DROP COLUMN expiresAt;"],
    ),
];

/// Brings the database to `SCHEMA_VERSION`; returns the version it had.
pub fn migrate(conn: &mut Connection) -> Result<i64, rusqlite::Error> {
    let from: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (version, statements) in MIGRATIONS.iter().filter(|(v, _)| *v > from) {
        let tx = conn.transaction()?;
        for s in *statements {
            tx.execute_batch(s)?;
        }
        tx.execute_batch(&format!("PRAGMA user_version = {version};"))?;
        tx.commit()?;
    }
    Ok(from)
}
