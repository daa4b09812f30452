//! `maia-sync backup` and `maia-sync check`: operator commands that work on
//! a database file, alone or next to a running server (WAL mode lets a
//! second connection read a consistent snapshot without blocking writes).

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ed25519_dalek::VerifyingKey;

use crate::logging::clip;
use crate::storage::sqlite::{OpenError, SqliteStore};
use crate::storage::{Store, StoreError};
use crate::sync::MAX_STORED_HEADER_BYTES;
use crate::sync::verify_stored;
use crate::verify::{CoId, Header};

/// Why an admin command could not do its job (failures *found* by `check`
/// are its report, not an error).
#[derive(Debug)]
pub enum AdminError {
    Open(OpenError),
    Store(StoreError),
    Io(String, io::Error),
    /// The copy does not pass SQLite's integrity check.
    BadCopy(Vec<String>),
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::Open(e) => write!(f, "{e}"),
            AdminError::Store(e) => write!(f, "{e}"),
            AdminError::Io(what, e) => write!(f, "{what}: {e}"),
            AdminError::BadCopy(p) => write!(
                f,
                "the copy fails SQLite's integrity check ({}); it was not kept",
                p.join("; ")
            ),
        }
    }
}

impl std::error::Error for AdminError {}

impl From<OpenError> for AdminError {
    fn from(e: OpenError) -> Self {
        AdminError::Open(e)
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError::Store(e)
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> AdminError {
    let what = what.into();
    move |e| AdminError::Io(what, e)
}

/// What a finished backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub dest: PathBuf,
    pub pages: u64,
    pub bytes: u64,
}

/// Copies `db` to `dest` with SQLite's online backup API. The copy is
/// written beside `dest` under a temporary name, checked, synced and then
/// renamed over `dest`, so `dest` is always either the previous backup or
/// a complete new one, never half a file. The copy is readable by its
/// owner only: it holds every user's data.
pub fn backup(db: &Path, dest: &Path) -> Result<BackupReport, AdminError> {
    if dest.is_dir() {
        return Err(AdminError::Io(
            format!("backup destination {}", dest.display()),
            io::Error::new(io::ErrorKind::IsADirectory, "is a directory; name a file"),
        ));
    }
    let source = SqliteStore::open_read_only(db)?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup.db".into());
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(".{name}.partial-{}", std::process::id()));
    let result = write_copy(&source, &tmp).and_then(|pages| {
        fs::rename(&tmp, dest).map_err(io_err(format!("rename to {}", dest.display())))?;
        // The rename itself must survive a crash too.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        let bytes = fs::metadata(dest).map_or(0, |m| m.len());
        Ok(BackupReport {
            dest: dest.to_path_buf(),
            pages,
            bytes,
        })
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        let mut journal = tmp.into_os_string();
        journal.push("-journal");
        let _ = fs::remove_file(journal);
    }
    result
}

fn write_copy(source: &SqliteStore, tmp: &Path) -> Result<u64, AdminError> {
    let _ = fs::remove_file(tmp);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(io_err(format!("create {}", tmp.display())))?;
    let pages = source.backup_to(tmp)?;
    let problems = SqliteStore::open_read_only(tmp)?.integrity_check()?;
    if !problems.is_empty() {
        return Err(AdminError::BadCopy(problems));
    }
    File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(io_err(format!("sync {}", tmp.display())))?;
    Ok(pages)
}

/// What `check` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub covalues: usize,
    pub sessions: usize,
    pub transactions: usize,
    /// One line per problem, naming the CoValue (or `sqlite:`).
    pub failures: Vec<String>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.failures {
            writeln!(f, "FAILED {line}")?;
        }
        writeln!(f, "covalues: {}", self.covalues)?;
        writeln!(f, "sessions: {}", self.sessions)?;
        writeln!(f, "transactions: {}", self.transactions)?;
        writeln!(f, "failures: {}", self.failures.len())
    }
}

/// SQLite's integrity check, then every stored CoValue re-verified as the
/// server would verify it when loading it: header ID, every session's hash
/// chain and signatures. Sessions the server would not serve because rows
/// are missing count as failures too.
pub fn check(db: &Path) -> Result<CheckReport, AdminError> {
    let mut store = SqliteStore::open_read_only(db)?;
    let mut report = CheckReport::default();
    for problem in store.integrity_check()? {
        report.failures.push(format!("sqlite: {problem}"));
    }
    let mut signers: HashMap<CoId, Option<VerifyingKey>> = HashMap::new();
    for id in store.covalue_ids()? {
        report.covalues += 1;
        let listed = store.session_ids(&id)?;
        report.sessions += listed.len();
        let stored = match store.load(&id) {
            Ok(Some(s)) => s,
            Ok(None) => continue, // deleted meanwhile (the server may run)
            Err(e) => {
                report
                    .failures
                    .push(format!("{}: cannot be read: {e}", clip(&id)));
                continue;
            }
        };
        for sid in &listed {
            if !stored.sessions.iter().any(|s| *s.session_id == **sid) {
                report.failures.push(format!(
                    "{}: session {}: transactions or signature missing (not served)",
                    clip(&id),
                    clip(sid)
                ));
            }
        }
        let mut signer_of = |acc: CoId| -> Option<VerifyingKey> {
            *signers
                .entry(acc)
                .or_insert_with(|| account_signer(&mut store, acc))
        };
        let r = verify_stored(&stored, &mut signer_of);
        report.transactions += r.transactions;
        report.failures.extend(
            r.failures
                .into_iter()
                .map(|f| format!("{}: {f}", clip(&id))),
        );
    }
    Ok(report)
}

/// The signer of a stored account (from its header), if it is one.
fn account_signer(store: &mut SqliteStore, id: CoId) -> Option<VerifyingKey> {
    let text = store.load_header(id.as_str()).ok()??;
    Header::check(&text, &id, MAX_STORED_HEADER_BYTES)
        .ok()?
        .header
        .account_signer
}

/// Prints to stdout; a closed pipe (`check | head`) is not an error.
pub fn print(text: &str) {
    let _ = io::stdout().write_all(text.as_bytes());
}

/// Runs `backup` for main: the report on stdout, exit status 0 or 1.
pub fn run_backup(db: &Path, dest: &Path) -> i32 {
    let start = Instant::now();
    match backup(db, dest) {
        Ok(r) => {
            print(&format!(
                "backup of {} written to {}: {} pages, {} bytes in {} ms\n",
                db.display(),
                r.dest.display(),
                r.pages,
                r.bytes,
                start.elapsed().as_millis()
            ));
            0
        }
        Err(e) => {
            eprintln!("maia-sync backup: {e}");
            1
        }
    }
}

/// Runs `check` for main: the report on stdout, exit status 0 (all good)
/// or 1 (failures found, or the database could not be read).
pub fn run_check(db: &Path) -> i32 {
    let start = Instant::now();
    match check(db) {
        Ok(r) => {
            print(&format!("check of {}\n{r}", db.display()));
            let verdict = if r.is_ok() { "ok" } else { "FAILED" };
            print(&format!(
                "result: {verdict} ({} ms)\n",
                start.elapsed().as_millis()
            ));
            i32::from(!r.is_ok())
        }
        Err(e) => {
            eprintln!("maia-sync check: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Write;
    use crate::storage::sqlite::Synchronous;
    use crate::sync::Engine;
    use crate::sync::PeerId;
    use crate::sync::testkit::{Agent, TempDir, Writer, allow_all_map};

    /// A database with one map written through the engine (so it is exactly
    /// what the server would store).
    fn sample_db(dir: &Path) -> PathBuf {
        let path = dir.join("s.db");
        let store = SqliteStore::open(&path, Synchronous::Normal).unwrap();
        let mut e = Engine::new(Box::new(store));
        let (header, id) = allow_all_map("admin");
        let agent = Agent::new(9);
        let mut w = Writer::new();
        e.connect(PeerId(1));
        for round in 0..3 {
            let batch = w.batch(&agent, &[format!("[{round}]")]);
            let h = (round == 0).then_some(&header);
            let msg = crate::sync::testkit::content(&id, h, &agent.session("s"), &batch);
            e.receive_frame(PeerId(1), &msg.to_string());
            e.end_turn();
        }
        e.shutdown().unwrap();
        path
    }

    #[test]
    fn check_passes_then_finds_a_tampered_transaction() {
        let dir = TempDir::new("admin-check");
        let db = sample_db(&dir.0);
        let r = check(&db).unwrap();
        assert_eq!((r.covalues, r.sessions, r.transactions), (1, 1, 3));
        assert!(r.is_ok(), "{r}");
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute("UPDATE transactions SET tx = replace(tx, '[1]', '[7]')", [])
            .unwrap();
        drop(c);
        let r = check(&db).unwrap();
        assert_eq!(r.failures.len(), 1, "{r}");
        assert!(r.failures[0].contains("signature does not match"), "{r}");
    }

    /// The server skips Ed25519 for sessions it recorded as verified; a
    /// check must not: a forged signature recorded as verified is found.
    #[test]
    fn check_trusts_no_record_of_earlier_verification() {
        let dir = TempDir::new("admin-vouch");
        let db = sample_db(&dir.0);
        let c = rusqlite::Connection::open(&db).unwrap();
        let vouched: i64 = c
            .query_row("SELECT count(*) FROM maia_verified_sessions", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(vouched, 1, "the sample is vouched for");
        // A different valid-looking signature, forged consistently in the
        // session row and in the verification record.
        let forged = format!("signature_z{}", bs58::encode([7u8; 64]).into_string());
        c.execute("UPDATE sessions SET lastSignature = ?1", [&forged])
            .unwrap();
        c.execute(
            "UPDATE maia_verified_sessions SET lastSignature = ?1",
            [&forged],
        )
        .unwrap();
        drop(c);
        let r = check(&db).unwrap();
        assert_eq!(r.failures.len(), 1, "{r}");
        assert!(r.failures[0].contains("signature"), "{r}");
    }

    #[test]
    fn backup_is_a_checked_copy() {
        let dir = TempDir::new("admin-backup");
        let db = sample_db(&dir.0);
        let dest = dir.0.join("b.db");
        let r = backup(&db, &dest).unwrap();
        assert!(r.pages > 0 && r.bytes > 0);
        assert!(check(&dest).unwrap().is_ok());
        let leftovers: Vec<_> = fs::read_dir(&dir.0)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("partial") || n.starts_with("b.db-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&dest).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "backup readable by others: {mode:o}");
        // A backup over an existing one replaces it.
        let mut store = SqliteStore::open(&db, Synchronous::Normal).unwrap();
        store
            .write(Write::Header {
                co_id: "co_zExtra".into(),
                header: "{\"x\":1}".into(),
            })
            .unwrap();
        store.commit().unwrap();
        drop(store);
        backup(&db, &dest).unwrap();
        let ids = SqliteStore::open_read_only(&dest)
            .unwrap()
            .covalue_ids()
            .unwrap();
        assert_eq!(ids.len(), 2);
        assert!(matches!(
            backup(&dir.0.join("missing.db"), &dir.0.join("x.db")),
            Err(AdminError::Open(_))
        ));
        assert!(matches!(backup(&db, &dir.0), Err(AdminError::Io(..))));
    }
}
