//! Shared harness for end-to-end tests: starts the built `maia-sync` binary
//! on a free port and collects its log lines so tests can assert on them.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_maia-sync");

/// Log lines printed by the server so far, shared with the reader thread.
#[derive(Clone, Default)]
pub struct LogLines(Arc<(Mutex<Vec<String>>, Condvar)>);

impl LogLines {
    pub fn snapshot(&self) -> Vec<String> {
        self.0.0.lock().unwrap().clone()
    }

    /// Waits until a line containing `needle` appears; returns it.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
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

    fn push(&self, line: String) {
        let (lock, cv) = &*self.0;
        lock.lock().unwrap().push(line);
        cv.notify_all();
    }
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
    let stderr = child.stderr.take().unwrap();
    let logs = LogLines::default();
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if std::env::var_os("MAIA_TEST_ECHO_LOGS").is_some() {
                eprintln!("[server] {line}");
            }
            sink.push(line);
        }
    });
    let line = logs
        .wait_for("listening on ", Duration::from_secs(20))
        .unwrap_or_else(|| panic!("server did not start; logs: {:?}", logs.snapshot()));
    let addr = line
        .rsplit("listening on ")
        .next()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse address from {line:?}"));
    Server { child, addr, logs }
}

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared` beside the project (test vectors and fixtures).
pub fn shared_dir() -> PathBuf {
    let p = repo_root().join("..").join("shared");
    assert!(
        p.join("vectors").is_dir(),
        "../shared/vectors not found beside the project at {}",
        p.display()
    );
    p
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

/// Copies a fixture database from `../shared/fixtures` into `dir` (the
/// shared folder is read-only, and opening a WAL file needs a writable folder).
pub fn fixture_copy(name: &str, dir: &Path) -> PathBuf {
    let src = shared_dir().join("fixtures").join(name);
    let dst = dir.join(name);
    std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    // The copy must be writable even though shared/ is read-only.
    let mut perms = std::fs::metadata(&dst).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&dst, perms).unwrap();
    dst
}

/// A blocking WebSocket client for end-to-end tests.
pub struct WsClient {
    pub ws: tungstenite::WebSocket<std::net::TcpStream>,
    pending: std::collections::VecDeque<serde_json::Value>,
}

impl WsClient {
    pub fn connect(addr: SocketAddr) -> WsClient {
        let s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (ws, resp) =
            tungstenite::client(format!("ws://{addr}/sync"), s).expect("WebSocket upgrade");
        assert_eq!(resp.status(), 101);
        WsClient {
            ws,
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
