//! The Node.js side of the interop tests (`tests/interop.rs`,
//! `tests/storage_interop.rs`): the npm packages of `tests/node`, scripts run
//! with a hard timeout and their output kept for the failure report, and the
//! reference server (`tests/node/reference-server.mjs`).

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{
    LogLines, describe_exit, echo_logs, listening_address, repo_root, signal, tail, wait_exit,
};

/// `tests/node`: the scripts, `package-lock.json` and `node_modules`.
pub fn node_dir() -> PathBuf {
    repo_root().join("tests").join("node")
}

/// What the tests need from `node_modules`: the cojson packages, and the
/// compiled better-sqlite3 addon (the reference server's storage).
const NPM_FILES: &[&str] = &[
    "cojson/package.json",
    "cojson-transport-ws/package.json",
    "ws/package.json",
    "better-sqlite3/build/Release/better_sqlite3.node",
];

/// Runs `npm ci` in tests/node once per test process if a package is
/// missing; every test fails with npm's output if that fails.
pub fn ensure_npm_packages() {
    static NPM: OnceLock<Result<(), String>> = OnceLock::new();
    let result = NPM.get_or_init(|| {
        let dir = node_dir();
        if NPM_FILES
            .iter()
            .all(|p| dir.join("node_modules").join(p).is_file())
        {
            return Ok(());
        }
        let started = Instant::now();
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run `npm ci` in {}: {e}", dir.display()))?;
        println!(
            "npm ci in {} took {:.1} s",
            dir.display(),
            started.elapsed().as_secs_f64()
        );
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

/// Tests that run heavy clients take this lock so that at most one of them
/// runs at a time (the machine has 2 cores; a server, its clients and a kill
/// timing share them).
pub fn take_turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running `node tests/node/<script>`, its output collected; killed when
/// dropped.
pub struct NodeProc {
    /// Names the run in the test output (the script, unless `labelled`).
    label: String,
    child: Child,
    pub stdout: LogLines,
    pub stderr: LogLines,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
    /// Hard limit for the run (each script also has its own, shorter overall
    /// timeout and exits by itself).
    timeout: Duration,
}

impl NodeProc {
    /// Starts `node tests/node/<script> ARGS` in the repository root, with
    /// `env` added to the environment.
    pub fn spawn(script: &str, args: &[&str], env: &[(&str, &str)], timeout: Duration) -> NodeProc {
        let mut cmd = Command::new("node");
        cmd.arg(node_dir().join(script))
            .args(args)
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `node` (Node 20 must be on PATH): {e}"));
        let stdout = LogLines::default();
        let stderr = LogLines::default();
        let echo = echo_logs().then_some("node");
        let readers = vec![
            stdout.collect(child.stdout.take().unwrap(), echo),
            stderr.collect(child.stderr.take().unwrap(), echo),
        ];
        NodeProc {
            label: script.to_string(),
            child,
            stdout,
            stderr,
            readers,
            started,
            timeout,
        }
    }

    /// Names the run `label` in the test output instead of the script.
    pub fn labelled(mut self, label: String) -> NodeProc {
        self.label = label;
        self
    }

    /// Waits for the exit (killing it after the timeout), then for the
    /// reader threads to drain the pipes; None if it was killed.
    pub fn wait(&mut self) -> Option<ExitStatus> {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for node") {
                break Some(status);
            }
            if self.started.elapsed() > self.timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        status
    }

    /// What the run left behind, with the server's log, for a failure.
    pub fn report(&self, status: Option<ExitStatus>, server_logs: &[String]) -> String {
        format!(
            "{} {} after {:.1} s\n\
             --- node stdout ---\n{}--- node stderr ---\n{}--- server log ---\n{}",
            self.label,
            match status {
                Some(s) => format!("exited with {s}"),
                None => format!("was killed after {} s", self.timeout.as_secs()),
            },
            self.started.elapsed().as_secs_f64(),
            tail(&self.stdout.snapshot(), 200),
            tail(&self.stderr.snapshot(), 200),
            tail(server_logs, 300),
        )
    }

    /// Waits for the exit and requires status 0 (else panics with the
    /// report); prints and returns stdout.
    pub fn expect_success(mut self, server_logs: impl Fn() -> Vec<String>) -> Vec<String> {
        let status = self.wait();
        let out = self.stdout.snapshot();
        let outcome = match status {
            Some(s) if s.success() => "passed".to_string(),
            Some(s) => format!("failed ({s})"),
            None => "timed out".to_string(),
        };
        println!(
            "{}: {outcome} in {:.1} s",
            self.label,
            self.started.elapsed().as_secs_f64()
        );
        for l in &out {
            println!("  {l}");
        }
        if !status.is_some_and(|s| s.success()) {
            panic!("{}", self.report(status, &server_logs()));
        }
        out
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `node tests/node/reference-server.mjs` on a free port (a cojson
/// `LocalNode` like `jazz-run sync`); killed when dropped.
pub struct ReferenceServer {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub logs: LogLines,
}

impl ReferenceServer {
    /// Starts it with `args` after the address flags (e.g. `--db PATH`)
    /// and waits for its `listening on ADDR` line.
    pub fn start(args: &[&str]) -> ReferenceServer {
        let mut child = Command::new("node")
            .arg(node_dir().join("reference-server.mjs"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node tests/node/reference-server.mjs");
        let logs = LogLines::default();
        let echo = echo_logs().then_some("reference");
        logs.collect(child.stdout.take().unwrap(), echo);
        logs.collect(child.stderr.take().unwrap(), echo);
        let Some(line) = logs.wait_for("listening on ", Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "reference server did not start; output: {:?}",
                logs.snapshot()
            );
        };
        let addr = listening_address(&line)
            .unwrap_or_else(|| panic!("cannot parse address from {line:?}"))
            .to_string();
        ReferenceServer { child, addr, logs }
    }

    /// `ws://127.0.0.1:PORT/sync`
    pub fn ws_url(&self) -> String {
        format!("ws://{}/sync", self.addr)
    }

    /// SIGTERM (the reference exits at once, without closing the database:
    /// like jazz-run it leaves the `-wal` file for the next open), SIGKILL
    /// if it is still running after 5 s. Returns what happened.
    pub fn stop(mut self) -> String {
        signal(self.child.id(), libc::SIGTERM);
        match wait_exit(&mut self.child, Duration::from_secs(5)) {
            Some(s) => describe_exit(s),
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                "did not exit within 5 s of SIGTERM: stopped with SIGKILL".to_string()
            }
        }
    }
}

impl Drop for ReferenceServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
