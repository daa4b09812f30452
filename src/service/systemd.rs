//! The service manager's side channel (sd_notify(3)), without libsystemd.
//!
//! With `Type=notify`, systemd considers the service started only when it
//! receives `READY=1` on the datagram socket named by `$NOTIFY_SOCKET`, and
//! with `WatchdogSec=` it restarts the service when `WATCHDOG=1` stops
//! arriving. The protocol is one datagram of `KEY=VALUE` lines, so a
//! `UnixDatagram` is all it takes. Outside systemd the variable is unset
//! and every call is a no-op.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where notifications go (`None` outside systemd).
#[derive(Debug, Default)]
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<Duration>,
}

#[derive(Debug)]
struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// For log lines.
    name: String,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID` from
    /// the process environment.
    pub fn from_env() -> Notifier {
        Notifier::from_lookup(|k| std::env::var(k).ok(), std::process::id())
    }

    /// Like `from_env`, over any lookup (for tests). `pid` is ours: a
    /// watchdog meant for another process (`WATCHDOG_PID`) is ignored.
    pub fn from_lookup(env: impl Fn(&str) -> Option<String>, pid: u32) -> Notifier {
        let watchdog = watchdog_interval(
            env("WATCHDOG_USEC").as_deref(),
            env("WATCHDOG_PID").as_deref(),
            pid,
        );
        let Some(path) = env("NOTIFY_SOCKET").filter(|p| !p.is_empty()) else {
            return Notifier {
                target: None,
                watchdog: None,
            };
        };
        match connect(&path) {
            Ok((socket, addr)) => Notifier {
                target: Some(Target {
                    socket,
                    addr,
                    name: path,
                }),
                watchdog,
            },
            Err(e) => {
                log::warn!(
                    "NOTIFY_SOCKET={path} is unusable ({e}); not notifying the service manager"
                );
                Notifier::default()
            }
        }
    }

    /// Whether a service manager listens (for log lines and tests).
    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// How often to send `WATCHDOG=1`: half the manager's timeout, as
    /// sd_watchdog_enabled(3) recommends, so one late turn is not fatal.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one notification (`READY=1`, `STOPPING=1`, `WATCHDOG=1`,
    /// `STATUS=…`). Failure is logged, never fatal: the service must keep
    /// serving even if the manager went away.
    pub fn notify(&self, state: &str) {
        let Some(t) = &self.target else {
            return;
        };
        if let Err(e) = t.socket.send_to_addr(state.as_bytes(), &t.addr) {
            log::warn!("cannot notify the service manager at {}: {e}", t.name);
        }
    }
}

/// `WATCHDOG_USEC` halved, if it is meant for us.
fn watchdog_interval(usec: Option<&str>, for_pid: Option<&str>, pid: u32) -> Option<Duration> {
    if let Some(p) = for_pid.filter(|p| !p.is_empty())
        && p.trim().parse::<u32>().ok() != Some(pid)
    {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// An unbound datagram socket and the manager's address: a path, or an
/// abstract name when it starts with `@` (systemd's convention).
fn connect(path: &str) -> io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match path.strip_prefix('@') {
        Some(name) => abstract_addr(name.as_bytes())?,
        None => SocketAddr::from_pathname(path)?,
    };
    Ok((UnixDatagram::unbound()?, addr))
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &[u8]) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract socket names exist only on Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn unset_means_silent() {
        let n = Notifier::from_lookup(env(&[("WATCHDOG_USEC", "1000000")]), 1);
        assert!(!n.is_active());
        assert_eq!(n.watchdog_interval(), None);
        n.notify("READY=1"); // no panic, nothing sent
    }

    #[test]
    fn path_socket() {
        let dir = std::env::temp_dir().join(format!("maia-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        let p = path.to_str().unwrap();
        let n = Notifier::from_lookup(
            env(&[("NOTIFY_SOCKET", p), ("WATCHDOG_USEC", "3000000")]),
            7,
        );
        assert!(n.is_active());
        assert_eq!(n.watchdog_interval(), Some(Duration::from_millis(1500)));
        n.notify("READY=1");
        assert_eq!(recv(&server), "READY=1");
        n.notify("STOPPING=1");
        assert_eq!(recv(&server), "STOPPING=1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("maia-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::from_lookup(env(&[("NOTIFY_SOCKET", &format!("@{name}"))]), 7);
        n.notify("WATCHDOG=1");
        assert_eq!(recv(&server), "WATCHDOG=1");
    }

    #[test]
    fn watchdog_rules() {
        assert_eq!(
            watchdog_interval(Some("20000000"), None, 1),
            Some(Duration::from_secs(10))
        );
        assert!(watchdog_interval(Some("20000000"), Some("1"), 1).is_some());
        assert_eq!(watchdog_interval(Some("20000000"), Some("2"), 1), None);
        assert_eq!(watchdog_interval(Some("0"), None, 1), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 1), None);
        assert_eq!(watchdog_interval(None, None, 1), None);
    }

    #[test]
    fn a_missing_socket_is_not_fatal() {
        let n = Notifier::from_lookup(env(&[("NOTIFY_SOCKET", "/nonexistent/dir/sock")]), 1);
        // Connecting is lazy (datagrams), so the send fails and is logged.
        n.notify("READY=1");
        let n = Notifier::from_lookup(env(&[("NOTIFY_SOCKET", "relative\0bad")]), 1);
        assert!(!n.is_active());
    }
}
