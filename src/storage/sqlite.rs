//! The durable store: cojson's SQLite layout (docs/storage.md), written on the
//! event-loop thread. Every write of a loop turn goes into one transaction
//! (`BEGIN IMMEDIATE` on the first write, `COMMIT` in `commit`), so one
//! fsync covers a whole turn and acks can wait for it cheaply.

use super::schema::{self, SCHEMA_VERSION};
use super::{SessionAppend, Store, StoreError, StoredCoValue, StoredSession, Write};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How hard each commit pushes data to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync the WAL on every commit: an acked write survives power loss.
    Full,
    /// No fsync per commit: survives a process crash, but a power loss can
    /// roll back the last moments (what the reference server runs with).
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Why the database could not be opened. Each names the path and what to do.
#[derive(Debug)]
pub enum OpenError {
    CreateDir(PathBuf, std::io::Error),
    /// The database path names a folder, or a file stands where a folder
    /// of the path should be.
    NotAFile(PathBuf),
    NotAFolder(PathBuf),
    NotSqlite(PathBuf),
    ReadOnly(PathBuf),
    NewerSchema {
        path: PathBuf,
        found: i64,
    },
    Sqlite(PathBuf, rusqlite::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::CreateDir(p, e) => {
                write!(f, "cannot create the folder {}: {e}", p.display())
            }
            OpenError::NotAFile(p) => write!(
                f,
                "{} is a folder; give the path of a database file inside it",
                p.display()
            ),
            OpenError::NotAFolder(p) => write!(
                f,
                "{} is a file, so it cannot hold the database's folder",
                p.display()
            ),
            OpenError::NotSqlite(p) => write!(f, "{} is not an SQLite database", p.display()),
            OpenError::ReadOnly(p) => write!(
                f,
                "{} cannot be written (check the file's and folder's permissions)",
                p.display()
            ),
            OpenError::NewerSchema { path, found } => write!(
                f,
                "{} has cojson schema version {found}, newer than the {SCHEMA_VERSION} this maia-sync understands; upgrade maia-sync",
                path.display()
            ),
            OpenError::Sqlite(p, e) => write!(f, "cannot open {}: {e}", p.display()),
        }
    }
}

impl std::error::Error for OpenError {}

/// (rowID, sessionID, lastIdx, lastSignature, bytesSinceLastSignature, vouched)
type SessionRow = (
    i64,
    String,
    i64,
    Option<String>,
    Option<i64>,
    Option<[u8; 32]>,
);

pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    in_transaction: bool,
    /// Opened by `open_read_only` (admin commands).
    read_only: bool,
    /// A write or commit of this turn failed: refuse writes until rollback.
    failed: bool,
    covalue_rows: HashMap<Arc<str>, i64>,
    session_rows: HashMap<(i64, Arc<str>), i64>,
    /// Session rowID → (lastIdx, lastSignature, bytesSinceLastSignature,
    /// digest) to write at the end of the turn.
    dirty_sessions: HashMap<i64, (u32, Arc<str>, u64, [u8; 32])>,
}

/// maia-sync's own table (cojson ignores tables it does not know): the
/// session prefixes maia-sync has verified, so reloading them needs no
/// Ed25519 checks. A row only counts while `lastIdx` and `lastSignature`
/// of the session still match it; anything else is verified again.
const VOUCH_TABLE: &str = "CREATE TABLE IF NOT EXISTS maia_verified_sessions (
      ses INTEGER PRIMARY KEY,
      verifiedIdx INTEGER NOT NULL,
      lastSignature TEXT NOT NULL,
      digest BLOB NOT NULL
    );";
const VOUCH_SQL: &str =
    "INSERT OR REPLACE INTO maia_verified_sessions (ses, verifiedIdx, lastSignature, digest)
     VALUES (?1, ?2, ?3, ?4)";

/// Row ID caches are dropped when they reach this many entries, so they
/// never grow with the database.
const ROW_CACHE_LIMIT: usize = 100_000;

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Refuses a file whose `PRAGMA user_version` is newer than the schema this
/// build knows; `sqlite_err` maps the read's failure.
fn refuse_newer_schema(
    conn: &Connection,
    path: &Path,
    sqlite_err: impl Fn(rusqlite::Error) -> OpenError,
) -> Result<(), OpenError> {
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sqlite_err)?;
    if found > SCHEMA_VERSION {
        return Err(OpenError::NewerSchema {
            path: path.to_path_buf(),
            found,
        });
    }
    Ok(())
}

impl SqliteStore {
    pub fn open(path: &Path, sync: Synchronous) -> Result<SqliteStore, OpenError> {
        if path.is_dir() {
            return Err(OpenError::NotAFile(path.to_path_buf()));
        }
        if let Some(file) = path.ancestors().skip(1).find(|a| a.is_file()) {
            return Err(OpenError::NotAFolder(file.to_path_buf()));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| OpenError::CreateDir(dir.to_path_buf(), e))?;
        }
        let p = path.to_path_buf();
        let sqlite_err = |e: rusqlite::Error| match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => OpenError::NotSqlite(p.clone()),
            Some(ErrorCode::ReadOnly)
            | Some(ErrorCode::CannotOpen)
            | Some(ErrorCode::PermissionDenied) => OpenError::ReadOnly(p.clone()),
            _ => OpenError::Sqlite(p.clone(), e),
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(sqlite_err)?;
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(OpenError::ReadOnly(p));
        }
        // Reading the header is the first access: a non-SQLite file fails here.
        refuse_newer_schema(&conn, path, sqlite_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sqlite_err)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sqlite_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            log::warn!("{}: journal_mode is {mode}, not WAL", path.display());
        }
        conn.execute_batch(&format!("PRAGMA synchronous = {};", sync.pragma()))
            .map_err(sqlite_err)?;
        let from = schema::migrate(&mut conn).map_err(sqlite_err)?;
        conn.execute_batch(VOUCH_TABLE).map_err(sqlite_err)?;
        if from != SCHEMA_VERSION {
            log::info!(
                "{}: migrated cojson schema from version {from} to {SCHEMA_VERSION}",
                path.display()
            );
        }
        Ok(SqliteStore::from_connection(conn, path, false))
    }

    /// A store on an opened connection, with empty caches.
    fn from_connection(conn: Connection, path: &Path, read_only: bool) -> SqliteStore {
        SqliteStore {
            conn,
            path: path.to_path_buf(),
            in_transaction: false,
            read_only,
            failed: false,
            covalue_rows: HashMap::new(),
            session_rows: HashMap::new(),
            dirty_sessions: HashMap::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the turn's transaction if none is open. A writable store
    /// takes the write lock at once (`IMMEDIATE`), even for a turn that
    /// starts with reads: a read transaction that later writes would have
    /// to upgrade its lock, which fails if anything else wrote meanwhile.
    /// WAL readers (backup, check) are never blocked by it.
    fn begin_read(&mut self) -> Result<(), StoreError> {
        if !self.in_transaction {
            let sql = if self.read_only {
                "BEGIN"
            } else {
                "BEGIN IMMEDIATE"
            };
            self.conn.execute_batch(sql).map_err(backend)?;
            self.in_transaction = true;
        }
        Ok(())
    }

    fn covalue_row(&mut self, id: &Arc<str>) -> Result<Option<i64>, StoreError> {
        if let Some(r) = self.covalue_rows.get(id) {
            return Ok(Some(*r));
        }
        let row: Option<i64> = self
            .conn
            .prepare_cached("SELECT rowID FROM coValues WHERE id = ?")
            .and_then(|mut s| s.query_row([&**id], |r| r.get(0)).optional())
            .map_err(backend)?;
        if let Some(r) = row {
            if self.covalue_rows.len() >= ROW_CACHE_LIMIT {
                self.covalue_rows.clear();
            }
            self.covalue_rows.insert(id.clone(), r);
        }
        Ok(row)
    }

    /// The rowID of a session, inserting its row if it is new. The row's
    /// counters are brought up to date once per turn, in `commit`.
    fn session_row(&mut self, co_row: i64, a: &SessionAppend) -> Result<i64, StoreError> {
        let key = (co_row, a.session_id.clone());
        if let Some(r) = self.session_rows.get(&key) {
            return Ok(*r);
        }
        let existing: Option<i64> = self
            .conn
            .prepare_cached("SELECT rowID FROM sessions WHERE sessionID = ?1 AND coValue = ?2")
            .and_then(|mut s| {
                s.query_row(params![&*a.session_id, co_row], |r| r.get(0))
                    .optional()
            })
            .map_err(backend)?;
        let row = match existing {
            Some(r) => r,
            None => self
                .conn
                .prepare_cached(
                    "INSERT INTO sessions (coValue, sessionID, lastIdx, lastSignature, bytesSinceLastSignature)
                     VALUES (?1, ?2, 0, NULL, 0) RETURNING rowID",
                )
                .and_then(|mut s| s.query_row(params![co_row, &*a.session_id], |r| r.get(0)))
                .map_err(backend)?,
        };
        if self.session_rows.len() >= ROW_CACHE_LIMIT {
            self.session_rows.clear();
        }
        self.session_rows.insert(key, row);
        Ok(row)
    }

    fn append(&mut self, a: &SessionAppend) -> Result<(), StoreError> {
        let Some(co_row) = self.covalue_row(&a.co_id)? else {
            return Err(StoreError::Backend(format!(
                "transactions for {} arrived before its header",
                a.co_id
            )));
        };
        let last_idx = a.first_idx + a.txs.len() as u32;
        let ses = self.session_row(co_row, a)?;
        if a.checkpoint {
            self.conn
                .prepare_cached("INSERT OR REPLACE INTO signatureAfter (ses, idx, signature) VALUES (?1, ?2, ?3)")
                .and_then(|mut s| s.execute(params![ses, last_idx - 1, &*a.last_signature]))
                .map_err(backend)?;
        }
        // OR REPLACE overwrites orphan rows a crashed writer may have left
        // beyond lastIdx (docs/storage.md §3.2).
        let mut stmt = self
            .conn
            .prepare_cached(
                "INSERT OR REPLACE INTO transactions (ses, idx, tx) VALUES (?1, ?2, ?3)",
            )
            .map_err(backend)?;
        for (i, tx) in a.txs.iter().enumerate() {
            stmt.execute(params![ses, a.first_idx + i as u32, &**tx])
                .map_err(backend)?;
        }
        self.dirty_sessions.insert(
            ses,
            (
                last_idx,
                a.last_signature.clone(),
                a.bytes_since_last_signature,
                a.digest,
            ),
        );
        Ok(())
    }

    /// Writes the final counters of every session appended to this turn.
    fn flush_sessions(&mut self) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "UPDATE sessions SET lastIdx = ?1, lastSignature = ?2, bytesSinceLastSignature = ?3
                 WHERE rowID = ?4",
            )
            .map_err(backend)?;
        let mut vouch = self.conn.prepare_cached(VOUCH_SQL).map_err(backend)?;
        for (ses, (last_idx, sig, bytes, digest)) in self.dirty_sessions.drain() {
            stmt.execute(params![last_idx, &*sig, bytes as i64, ses])
                .map_err(backend)?;
            // Everything maia-sync appends was verified on the way in.
            vouch
                .execute(params![ses, last_idx, &*sig, &digest[..]])
                .map_err(backend)?;
        }
        Ok(())
    }

    /// Commits, checkpoints the WAL into the main file and closes, so a
    /// clean stop leaves no `-wal` file behind.
    pub fn close(mut self) -> Result<(), StoreError> {
        Store::close(&mut self)
    }

    /// Opens an existing database without changing it (no migration, no
    /// journal-mode switch), for `maia-sync backup` and `check` next to a
    /// running server: WAL lets this reader see the last commit without
    /// blocking the server's writes.
    pub fn open_read_only(path: &Path) -> Result<SqliteStore, OpenError> {
        let p = path.to_path_buf();
        if !path.is_file() {
            return Err(OpenError::Sqlite(
                p,
                rusqlite::Error::InvalidPath(path.to_path_buf()),
            ));
        }
        let sqlite_err = |e: rusqlite::Error| match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => OpenError::NotSqlite(p.clone()),
            _ => OpenError::Sqlite(p.clone(), e),
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sqlite_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sqlite_err)?;
        refuse_newer_schema(&conn, path, sqlite_err)?;
        // An empty table of the same name shadows maia-sync's record of
        // verified sessions (temp tables come first in name resolution):
        // this reader vouches for nothing, so `check` verifies every
        // signature, and databases written by cojson (without the table)
        // load too.
        conn.execute_batch(&format!(
            "PRAGMA temp_store = MEMORY; {}",
            VOUCH_TABLE.replace("CREATE TABLE IF NOT EXISTS", "CREATE TEMP TABLE")
        ))
        .map_err(sqlite_err)?;
        Ok(SqliteStore::from_connection(conn, path, true))
    }

    /// `PRAGMA integrity_check`: the problems SQLite finds (empty if none).
    pub fn integrity_check(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<String> = self
            .conn
            .prepare("PRAGMA integrity_check")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(backend)?;
        Ok(rows.into_iter().filter(|r| r != "ok").collect())
    }

    /// Every stored CoValue ID, in insertion order.
    pub fn covalue_ids(&self) -> Result<Vec<String>, StoreError> {
        self.conn
            .prepare("SELECT id FROM coValues ORDER BY rowID")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(backend)
    }

    /// The session IDs stored for a CoValue, including any that `load`
    /// leaves out because rows are missing.
    pub fn session_ids(&self, co_id: &str) -> Result<Vec<String>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT s.sessionID FROM sessions s JOIN coValues c ON s.coValue = c.rowID
                 WHERE c.id = ? ORDER BY s.rowID",
            )
            .and_then(|mut s| s.query_map([co_id], |r| r.get(0))?.collect())
            .map_err(backend)
    }

    /// Copies the database into `dest` (a new file) with SQLite's online
    /// backup API, in one step: one read transaction, so the copy is a
    /// consistent snapshot even while the server commits (a stepwise copy
    /// would restart on every commit of another connection). The copy is
    /// switched to rollback-journal mode so it is a single, self-contained
    /// file. Returns the number of pages copied.
    pub fn backup_to(&self, dest: &Path) -> Result<u64, StoreError> {
        use rusqlite::backup::{Backup, StepResult};
        let mut dst = Connection::open(dest).map_err(backend)?;
        {
            let backup = Backup::new(&self.conn, &mut dst).map_err(backend)?;
            let mut waited = 0u32;
            loop {
                match backup.step(-1).map_err(backend)? {
                    StepResult::Done => break,
                    StepResult::More => {}
                    // Another connection holds a lock the copy needs; the
                    // server's commits are short, so wait a little.
                    StepResult::Busy | StepResult::Locked if waited < 500 => {
                        waited += 1;
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    StepResult::Busy | StepResult::Locked => {
                        return Err(StoreError::Backend(
                            "the database stayed locked for 5 s; backup abandoned".into(),
                        ));
                    }
                    other => {
                        return Err(StoreError::Backend(format!(
                            "unexpected backup step result {other:?}"
                        )));
                    }
                }
            }
        }
        let pages: i64 = dst
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(backend)?;
        dst.query_row("PRAGMA journal_mode = DELETE", [], |r| {
            r.get::<_, String>(0)
        })
        .map_err(backend)?;
        dst.close().map_err(|(_, e)| backend(e))?;
        Ok(pages.max(0) as u64)
    }

    fn load_sessions(&mut self, co_row: i64, id: &str) -> Result<Vec<StoredSession>, StoreError> {
        let rows: Vec<SessionRow> = self
            .conn
            .prepare_cached(
                "SELECT s.rowID, s.sessionID, s.lastIdx, s.lastSignature, s.bytesSinceLastSignature,
                        CASE WHEN v.verifiedIdx = s.lastIdx AND v.lastSignature = s.lastSignature
                             THEN v.digest END
                 FROM sessions s LEFT JOIN maia_verified_sessions v ON v.ses = s.rowID
                 WHERE s.coValue = ? ORDER BY s.rowID",
            )
            .and_then(|mut s| {
                s.query_map([co_row], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get::<_, Option<Vec<u8>>>(5)?
                            .and_then(|d| <[u8; 32]>::try_from(d).ok()),
                    ))
                })?
                .collect()
            })
            .map_err(backend)?;
        let mut sessions = Vec::with_capacity(rows.len());
        for (ses, session_id, last_idx, last_sig, bytes, vouched) in rows {
            let txs: Vec<(i64, String)> = self
                .conn
                .prepare_cached(
                    "SELECT idx, tx FROM transactions WHERE ses = ? AND idx < ? ORDER BY idx",
                )
                .and_then(|mut s| {
                    s.query_map(params![ses, last_idx], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect()
                })
                .map_err(backend)?;
            let contiguous = txs.iter().enumerate().all(|(i, (idx, _))| *idx == i as i64);
            let Some(last_signature) =
                last_sig.filter(|_| contiguous && txs.len() as i64 == last_idx)
            else {
                log::warn!(
                    "{}: session {session_id} of {id} has missing transactions or no signature; it is not served",
                    self.path.display()
                );
                continue;
            };
            let signature_after: Vec<(u32, Arc<str>)> = self
                .conn
                .prepare_cached("SELECT idx, signature FROM signatureAfter WHERE ses = ? AND idx < ? ORDER BY idx")
                .and_then(|mut s| {
                    s.query_map(params![ses, last_idx], |r| {
                        Ok((r.get::<_, u32>(0)?, Arc::from(r.get::<_, String>(1)?)))
                    })?
                    .collect()
                })
                .map_err(backend)?;
            sessions.push(StoredSession {
                session_id: Arc::from(session_id),
                txs: txs.into_iter().map(|(_, t)| Arc::from(t)).collect(),
                last_signature: Arc::from(last_signature),
                signature_after,
                bytes_since_last_signature: bytes.unwrap_or(0).max(0) as u64,
                vouched,
            });
        }
        Ok(sessions)
    }
}

impl SqliteStore {
    fn write_one(&mut self, w: Write) -> Result<(), StoreError> {
        self.begin_read()?;
        match w {
            Write::Header { co_id, header } => {
                self.conn
                    .prepare_cached("INSERT OR IGNORE INTO coValues (id, header) VALUES (?1, ?2)")
                    .and_then(|mut s| s.execute(params![&*co_id, &*header]))
                    .map_err(backend)?;
                Ok(())
            }
            Write::Append(a) => self.append(&a),
            Write::Verified {
                co_id,
                session_id,
                count,
                last_signature,
                digest,
            } => {
                let Some(co_row) = self.covalue_row(&co_id)? else {
                    return Ok(());
                };
                let ses: Option<i64> = self
                    .conn
                    .prepare_cached(
                        "SELECT rowID FROM sessions WHERE sessionID = ?1 AND coValue = ?2",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![&*session_id, co_row], |r| r.get(0))
                            .optional()
                    })
                    .map_err(backend)?;
                if let Some(ses) = ses {
                    self.conn
                        .prepare_cached(VOUCH_SQL)
                        .and_then(|mut s| {
                            s.execute(params![ses, count, &*last_signature, &digest[..]])
                        })
                        .map_err(backend)?;
                }
                Ok(())
            }
        }
    }
}

impl Store for SqliteStore {
    fn load_header(&mut self, id: &str) -> Result<Option<Arc<str>>, StoreError> {
        self.begin_read()?;
        let header: Option<String> = self
            .conn
            .prepare_cached("SELECT header FROM coValues WHERE id = ?")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
            .map_err(backend)?;
        Ok(header.map(Arc::from))
    }

    fn load(&mut self, id: &str) -> Result<Option<StoredCoValue>, StoreError> {
        self.begin_read()?;
        let row: Option<(i64, String)> = self
            .conn
            .prepare_cached("SELECT rowID, header FROM coValues WHERE id = ?")
            .and_then(|mut s| s.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(backend)?;
        let Some((co_row, header)) = row else {
            return Ok(None);
        };
        let id: Arc<str> = Arc::from(id);
        if self.covalue_rows.len() >= ROW_CACHE_LIMIT {
            self.covalue_rows.clear();
        }
        self.covalue_rows.insert(id.clone(), co_row);
        let sessions = self.load_sessions(co_row, &id)?;
        Ok(Some(StoredCoValue {
            id,
            header: Arc::from(header),
            sessions,
        }))
    }

    fn write(&mut self, w: Write) -> Result<(), StoreError> {
        if self.failed {
            // After a failed statement SQLite may have rolled the whole
            // transaction back; nothing more goes in until `rollback`.
            return Err(StoreError::Backend(
                "an earlier write of this turn failed; waiting for the rollback".into(),
            ));
        }
        let result = self.write_one(w);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        if self.failed {
            return Err(StoreError::Backend(
                "a write of this turn failed, so the turn is rolled back".into(),
            ));
        }
        if self.in_transaction {
            if let Err(e) = self
                .flush_sessions()
                .and_then(|()| self.conn.execute_batch("COMMIT").map_err(backend))
            {
                self.failed = true;
                return Err(e);
            }
            self.in_transaction = false;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), StoreError> {
        self.commit()?;
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(backend)?;
        // `Connection::close` takes the connection by value; a throwaway
        // in-memory one takes its place so the real one's close error can
        // be reported (dropping would swallow it).
        let placeholder = Connection::open_in_memory().map_err(backend)?;
        let conn = std::mem::replace(&mut self.conn, placeholder);
        self.covalue_rows.clear();
        conn.close().map_err(|(_, e)| backend(e))
    }

    fn rollback(&mut self) {
        if self.in_transaction {
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                log::error!("{}: rollback failed: {e}", self.path.display());
            }
            self.in_transaction = false;
        }
        self.failed = false;
        // Row IDs handed out inside the rolled-back transaction are void.
        self.covalue_rows.clear();
        self.session_rows.clear();
        self.dirty_sessions.clear();
    }
}
