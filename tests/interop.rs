//! Interop scenarios: real cojson 0.20.19 clients (Node, `tests/node/*.mjs`)
//! against the server.
//!
//! Each test starts a fresh in-memory server, runs
//! `node tests/node/<scenario>.mjs <ws-url>` and requires exit status 0; on
//! failure it prints the script's output and the server's log lines.
//!
//! `MAIA_INTEROP_SERVER=reference` runs the same scenarios against the
//! reference server (`tests/node/reference-server.mjs`, a cojson `LocalNode`
//! like `jazz-run sync`) instead of the `maia-sync` binary: that is how the
//! scenarios themselves are validated, and how the two can be compared.
//!
//! The npm packages are installed with `npm ci` (from
//! `tests/node/package-lock.json`) the first time a test needs them.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Hard limit for one scenario script (each script also has its own, shorter
/// overall timeout and exits by itself).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

fn node_dir() -> PathBuf {
    common::repo_root().join("tests").join("node")
}

/// Runs `npm ci` in tests/node once per test process if the packages are
/// missing; every test fails with npm's output if that fails.
fn ensure_npm_packages() {
    static NPM: OnceLock<Result<(), String>> = OnceLock::new();
    let result = NPM.get_or_init(|| {
        let dir = node_dir();
        if dir.join("node_modules/cojson/package.json").is_file()
            && dir
                .join("node_modules/cojson-transport-ws/package.json")
                .is_file()
            && dir.join("node_modules/ws/package.json").is_file()
        {
            return Ok(());
        }
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run `npm ci` in {}: {e}", dir.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`npm ci` in {} failed ({}):\n{}\n{}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Heavy scenarios take this lock so that at most one of them runs at a time
/// (the machine has 2 cores; client and server share them).
fn heavy_lock() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

fn reference_mode() -> bool {
    match std::env::var("MAIA_INTEROP_SERVER").as_deref() {
        Ok("reference") => true,
        Ok("") | Ok("maia-sync") | Ok("binary") | Err(_) => false,
        Ok(other) => panic!("MAIA_INTEROP_SERVER={other:?}: expected `reference` or unset"),
    }
}

/// Log lines of a child process, collected by reader threads.
#[derive(Clone, Default)]
struct Lines(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Lines {
    fn push(&self, line: String) {
        let (lock, cv) = &*self.0;
        lock.lock().unwrap().push(line);
        cv.notify_all();
    }

    fn snapshot(&self) -> Vec<String> {
        self.0.0.lock().unwrap().clone()
    }

    fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.0;
        let mut lines = lock.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| l.contains(needle)) {
                return Some(l.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            lines = cv.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    fn collect(&self, stream: impl Read + Send + 'static) -> std::thread::JoinHandle<()> {
        let sink = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                sink.push(line);
            }
        })
    }
}

/// `node tests/node/reference-server.mjs` on a free port; killed on drop.
struct ReferenceServer {
    child: Child,
    addr: String,
    logs: Lines,
}

impl ReferenceServer {
    fn start() -> Self {
        let mut child = Command::new("node")
            .arg(node_dir().join("reference-server.mjs"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node tests/node/reference-server.mjs");
        let logs = Lines::default();
        logs.collect(child.stdout.take().unwrap());
        logs.collect(child.stderr.take().unwrap());
        let Some(line) = logs.wait_for("listening on ", Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!(
                "reference server did not start; output: {:?}",
                logs.snapshot()
            );
        };
        let addr = line
            .rsplit("listening on ")
            .next()
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("cannot parse address from {line:?}"))
            .to_string();
        ReferenceServer { child, addr, logs }
    }
}

impl Drop for ReferenceServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum TestServer {
    Binary(common::Server),
    Reference(ReferenceServer),
}

impl TestServer {
    fn start() -> Self {
        if reference_mode() {
            TestServer::Reference(ReferenceServer::start())
        } else {
            TestServer::Binary(common::start_server(&["--in-memory"]))
        }
    }

    fn ws_url(&self) -> String {
        match self {
            TestServer::Binary(s) => s.ws_url(),
            TestServer::Reference(s) => format!("ws://{}/sync", s.addr),
        }
    }

    fn log_lines(&self) -> Vec<String> {
        match self {
            TestServer::Binary(s) => s.logs.snapshot(),
            TestServer::Reference(s) => s.logs.snapshot(),
        }
    }
}

/// What a finished (or killed) node script left behind.
struct ScriptRun {
    /// None if it was killed after `SCRIPT_TIMEOUT`.
    status: Option<ExitStatus>,
    stdout: Vec<String>,
    stderr: Vec<String>,
    elapsed: Duration,
}

fn run_script(script: &str, args: &[String], env: &[(&str, String)]) -> ScriptRun {
    let start = Instant::now();
    let mut cmd = Command::new("node");
    cmd.arg(node_dir().join(script))
        .args(args)
        .current_dir(common::repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `node` (Node 20 must be on PATH): {e}"));
    let out = Lines::default();
    let err = Lines::default();
    let t_out = out.collect(child.stdout.take().unwrap());
    let t_err = err.collect(child.stderr.take().unwrap());
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if start.elapsed() > SCRIPT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = t_out.join();
    let _ = t_err.join();
    ScriptRun {
        status,
        stdout: out.snapshot(),
        stderr: err.snapshot(),
        elapsed: start.elapsed(),
    }
}

fn tail(lines: &[String], n: usize) -> String {
    let skip = lines.len().saturating_sub(n);
    let mut s = String::new();
    if skip > 0 {
        s.push_str(&format!("... ({skip} earlier lines omitted)\n"));
    }
    for l in &lines[skip..] {
        s.push_str(l);
        s.push('\n');
    }
    s
}

fn check(name: &str, run: &ScriptRun, server_logs: &[String]) {
    let which = if reference_mode() {
        "reference server"
    } else {
        "maia-sync"
    };
    let outcome = match run.status {
        Some(s) if s.success() => "passed".to_string(),
        Some(s) => format!("failed ({s})"),
        None => "timed out".to_string(),
    };
    println!(
        "scenario {name} against {which}: {outcome} in {:.1} s",
        run.elapsed.as_secs_f64()
    );
    for l in &run.stdout {
        println!("  {l}");
    }
    if run.status.is_some_and(|s| s.success()) {
        return;
    }
    let what = match run.status {
        Some(s) => format!("exited with {s}"),
        None => format!("was killed after {} s", SCRIPT_TIMEOUT.as_secs()),
    };
    panic!(
        "scenario {name} against {which} {what}\n\
         --- node stdout ---\n{}--- node stderr ---\n{}--- server log ---\n{}",
        tail(&run.stdout, 200),
        tail(&run.stderr, 200),
        tail(server_logs, 300),
    );
}

/// Runs `tests/node/<name>.mjs <ws-url>` against a fresh server.
fn scenario(name: &str, heavy: bool) {
    ensure_npm_packages();
    let _guard = heavy.then(heavy_lock);
    let server = TestServer::start();
    let run = run_script(&format!("{name}.mjs"), &[server.ws_url()], &[]);
    check(name, &run, &server.log_lines());
}

#[test]
fn two_accounts() {
    scenario("two-accounts", false);
}

#[test]
fn colist_1000() {
    scenario("colist-1000", true);
}

#[test]
fn binary_5mb() {
    scenario("binary-5mb", true);
}

#[test]
fn public_value() {
    scenario("public-value", false);
}

#[test]
fn unavailable() {
    scenario("unavailable", false);
}

#[test]
fn concurrent_edits() {
    scenario("concurrent-edits", false);
}

#[test]
fn twenty_writers() {
    scenario("twenty-writers", true);
}

/// The script starts, kills and restarts the server itself (same port), so
/// it gets the server command instead of a URL; it prints the server's log
/// lines itself on failure.
#[test]
fn restart_reupload() {
    ensure_npm_packages();
    let cmd: Vec<String> = if reference_mode() {
        vec![
            "node".into(),
            node_dir()
                .join("reference-server.mjs")
                .to_string_lossy()
                .into_owned(),
        ]
    } else {
        vec![common::BIN.into(), "--in-memory".into()]
    };
    let cmd: Vec<String> = cmd
        .into_iter()
        .chain(["--host", "127.0.0.1", "--port", "{PORT}"].map(String::from))
        .collect();
    let cmd_json = serde_json::to_string(&cmd).unwrap();
    let run = run_script(
        "restart-reupload.mjs",
        &[],
        &[("SERVER_CMD", cmd_json), ("LOG_LEVEL", "debug".to_string())],
    );
    check("restart-reupload", &run, &[]);
}
