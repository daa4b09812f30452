//! Shared harness for end-to-end tests: starts the built `maia-sync` binary
//! on a free port and collects its log lines so tests can assert on them;
//! runs it as a command; child processes, temp folders, WebSocket clients.
//! `node` runs the Node.js side (npm packages, scripts, reference server).
//!
//! Every test crate compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub mod node;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_maia-sync");

/// `MAIA_TEST_ECHO_LOGS` is set: echo child processes' output to stderr.
pub fn echo_logs() -> bool {
    std::env::var_os("MAIA_TEST_ECHO_LOGS").is_some()
}

/// Output lines of a child process (a server's log, a script's stdout) so
/// far, shared with the reader threads that collect them.
#[derive(Clone, Default)]
pub struct LogLines(Arc<(Mutex<Vec<String>>, Condvar)>);

impl LogLines {
    pub fn snapshot(&self) -> Vec<String> {
        self.0.0.lock().unwrap().clone()
    }

    /// Waits until a line containing `needle` appears; returns it.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_until(timeout, |l| l.contains(needle))
    }

    /// Waits until `pred` holds for some line; returns that line.
    pub fn wait_until(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.0;
        let mut lines = lock.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            lines = cv.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    fn push(&self, line: String) {
        let (lock, cv) = &*self.0;
        lock.lock().unwrap().push(line);
        cv.notify_all();
    }

    /// Collects the lines of `stream` on a thread until it ends, echoing
    /// each as `[tag] line` to stderr if `echo` names a tag.
    pub fn collect(
        &self,
        stream: impl Read + Send + 'static,
        echo: Option<&'static str>,
    ) -> JoinHandle<()> {
        let sink = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if let Some(tag) = echo {
                    eprintln!("[{tag}] {line}");
                }
                sink.push(line);
            }
        })
    }
}

/// The last `n` lines, one a line, saying how many were left out.
pub fn tail(lines: &[String], n: usize) -> String {
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

/// The address after `listening on ` in a server's start-up log line.
fn listening_address(line: &str) -> Option<&str> {
    line.rsplit("listening on ")
        .next()
        .and_then(|s| s.split_whitespace().next())
}

/// A running server; killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub logs: LogLines,
}

impl Server {
    /// `ws://127.0.0.1:PORT/sync`
    pub fn ws_url(&self) -> String {
        format!("ws://{}/sync", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary with `--host 127.0.0.1 --port 0` plus `args`, and waits
/// for its `listening on ADDR` log line to learn the port.
pub fn start_server(args: &[&str]) -> Server {
    start_server_with_env(args, &[])
}

pub fn start_server_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(BIN);
    cmd.args(["--host", "127.0.0.1", "--port", "0"])
        .args(args)
        .env("LOG_LEVEL", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn maia-sync");
    let logs = LogLines::default();
    logs.collect(
        child.stderr.take().unwrap(),
        echo_logs().then_some("server"),
    );
    let line = logs
        .wait_for("listening on ", Duration::from_secs(20))
        .unwrap_or_else(|| panic!("server did not start; logs: {:?}", logs.snapshot()));
    let addr = listening_address(&line)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse address from {line:?}"));
    Server { child, addr, logs }
}

/// Runs the binary with `args` to completion (no server start-up: for
/// `--help`, bad settings, the admin commands), with `env` set and without
/// an inherited `DB_PATH`.
pub fn run_bin(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null()).env_remove("DB_PATH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run maia-sync")
}

/// A bad command line: flags, environment, and what the message must name.
pub type BadArgs<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

/// Runs each bad command line: it must exit 2 with a message naming what
/// was wrong (on stderr), never a panic.
pub fn assert_exit_2(cases: &[BadArgs]) {
    for (args, env, needle) in cases {
        let out = run_bin(args, env);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert!(err.contains(needle), "{args:?} {env:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Captured output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits up to `timeout` for `child` to exit; None if it is still running.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().expect("wait for child process") {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How a process ended, in words (printed by the tests).
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(15)) => "died of SIGTERM (the signal is not handled)".to_string(),
        (None, Some(9)) => "was killed (SIGKILL)".to_string(),
        (None, Some(s)) => format!("died of signal {s}"),
        (None, None) => format!("{status}"),
    }
}

/// Sends SIGTERM (or another signal) to a process we started.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is our
    // own child's.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/data`: the test vectors and fixture databases made with the
/// real cojson 0.20.19 code (see the README in each folder).
pub fn data_dir() -> PathBuf {
    repo_root().join("tests").join("data")
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// A fresh, empty folder under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("maia-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies a fixture database from `tests/data/fixtures` into `dir` (opening
/// a WAL file writes beside it, and the tests must not change the original).
pub fn fixture_copy(name: &str, dir: &Path) -> PathBuf {
    let src = data_dir().join("fixtures").join(name);
    let dst = dir.join(name);
    std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    // The copy must be writable even if the checkout is read-only.
    let mut perms = std::fs::metadata(&dst).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&dst, perms).unwrap();
    dst
}

/// A TCP connection to `addr` whose reads and writes time out after 10 s.
pub fn tcp_connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// A WebSocket (tungstenite) upgraded on `path`, e.g. `/sync` or `/?key=abc`,
/// over a `tcp_connect` socket.
pub fn ws_connect(addr: SocketAddr, path: &str) -> tungstenite::WebSocket<TcpStream> {
    let (ws, resp) = tungstenite::client(format!("ws://{addr}{path}"), tcp_connect(addr))
        .unwrap_or_else(|e| panic!("WebSocket upgrade on {path} failed: {e}"));
    assert_eq!(resp.status(), 101);
    ws
}

/// A blocking WebSocket client for end-to-end tests.
pub struct WsClient {
    pub ws: tungstenite::WebSocket<TcpStream>,
    pending: std::collections::VecDeque<serde_json::Value>,
}

impl WsClient {
    pub fn connect(addr: SocketAddr) -> WsClient {
        WsClient {
            ws: ws_connect(addr, "/sync"),
            pending: Default::default(),
        }
    }

    pub fn send_text(&mut self, text: &str) {
        self.ws
            .send(tungstenite::Message::text(text))
            .expect("send to server");
    }

    pub fn send(&mut self, msg: &serde_json::Value) {
        self.send_text(&msg.to_string());
    }

    /// The next sync message from the server (pings skipped; a frame with
    /// several messages is split).
    pub fn recv(&mut self) -> serde_json::Value {
        self.recv_within(Duration::from_secs(10))
            .expect("a message from the server within 10 s")
    }

    /// The next sync message, or `None` if none arrives in `wait`.
    pub fn recv_within(&mut self, wait: Duration) -> Option<serde_json::Value> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Some(m);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.ws.get_ref().set_read_timeout(Some(left)).unwrap();
            match self.ws.read() {
                Ok(tungstenite::Message::Text(t)) => {
                    for line in t.split('\n') {
                        let v: serde_json::Value =
                            serde_json::from_str(line).expect("server sends JSON");
                        if v.get("type").and_then(|t| t.as_str()) != Some("ping") {
                            self.pending.push_back(v);
                        }
                    }
                }
                Ok(tungstenite::Message::Close(c)) => panic!("server closed: {c:?}"),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None;
                }
                Err(e) => panic!("read from server: {e}"),
            }
        }
    }
}
