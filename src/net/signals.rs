//! SIGTERM and SIGINT as ordinary events of the mio loop.
//!
//! A signal handler may do almost nothing safely, so it only writes a byte
//! to a pipe whose read end the poller watches; the loop then learns about
//! the signal like about any readable socket, between two turns, with every
//! structure in a consistent state. `signal-hook-mio` is exactly that
//! self-pipe, maintained by the author of the standard signal-hook crate,
//! and it handles the details a hand-written one gets wrong (async-signal
//! safety, `SA_RESTART`, a full pipe, chaining to earlier handlers).

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use mio::{Interest, Registry, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

/// The signals that ask for a clean stop.
pub struct StopSignals {
    inner: Signals,
}

/// A stop signal, for log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Term,
    Int,
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopSignal::Term => "SIGTERM",
            StopSignal::Int => "SIGINT",
        })
    }
}

impl StopSignals {
    /// Installs the handlers. From here on SIGTERM/SIGINT no longer kill
    /// the process: they must be collected with `pending`.
    pub fn install() -> io::Result<StopSignals> {
        Ok(StopSignals {
            inner: Signals::new([SIGTERM, SIGINT])?,
        })
    }

    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.inner, token, Interest::READABLE)
    }

    /// Signals received since the last call (drains the pipe).
    pub fn pending(&mut self) -> Vec<StopSignal> {
        self.inner
            .pending()
            .filter_map(|s| match s {
                SIGTERM => Some(StopSignal::Term),
                SIGINT => Some(StopSignal::Int),
                _ => None,
            })
            .collect()
    }
}

/// The state of a shutdown once a stop signal arrived.
#[derive(Debug, Clone)]
pub struct Shutdown {
    pub signal: StopSignal,
    pub started: Instant,
    /// Connections still open then are dropped.
    pub deadline: Instant,
    /// The connections were asked to close (done once, after the turn in
    /// which the signal arrived has committed and queued its acks).
    pub connections_told: bool,
}

impl Shutdown {
    pub fn new(signal: StopSignal, now: Instant, timeout: Duration) -> Shutdown {
        Shutdown {
            signal,
            started: now,
            deadline: now + timeout,
            connections_told: false,
        }
    }

    /// A second stop signal means "now": the wait for connections ends.
    pub fn hurry(&mut self, now: Instant) {
        self.deadline = self.deadline.min(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};

    /// The only test in the crate that raises a real signal: the handler is
    /// process-wide, so it is installed once here and nowhere else.
    #[test]
    fn a_raised_signal_wakes_the_poller() {
        let mut poll = Poll::new().unwrap();
        let mut signals = StopSignals::install().unwrap();
        signals.register(poll.registry(), Token(7)).unwrap();
        signal_hook::low_level::raise(SIGINT).unwrap();
        let mut events = Events::with_capacity(4);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while got.is_empty() && Instant::now() < deadline {
            let _ = poll.poll(&mut events, Some(Duration::from_millis(100)));
            if events.iter().any(|e| e.token() == Token(7)) {
                got = signals.pending();
            }
        }
        assert_eq!(got, vec![StopSignal::Int]);
        assert_eq!(StopSignal::Term.to_string(), "SIGTERM");
    }

    #[test]
    fn a_second_signal_hurries() {
        let now = Instant::now();
        let mut s = Shutdown::new(StopSignal::Term, now, Duration::from_secs(10));
        assert_eq!(s.deadline, now + Duration::from_secs(10));
        s.hurry(now + Duration::from_secs(1));
        assert_eq!(s.deadline, now + Duration::from_secs(1));
    }
}
