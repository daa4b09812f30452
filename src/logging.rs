//! Logging: plain lines on stderr, and the two rules for anything a client
//! controls that ends up in a log line: it is escaped and clipped
//! ([`clip`]), and one connection's repeated warnings are rate-limited
//! ([`RateLimit`]), so a client can neither forge log lines nor flood the
//! journal.

use std::fmt;
use std::time::{Duration, Instant};

/// Plain lines on stderr (no colours, no timestamps: journald and container
/// runtimes add their own), only this crate's records.
pub fn init(level: log::LevelFilter) {
    let config = simplelog::ConfigBuilder::new()
        .set_time_level(log::LevelFilter::Off)
        .set_thread_level(log::LevelFilter::Off)
        .set_target_level(log::LevelFilter::Off)
        .set_location_level(log::LevelFilter::Off)
        .add_filter_allow_str("maia_sync")
        .build();
    // Fails only if a logger is already set, which cannot happen here.
    let _ = simplelog::WriteLogger::init(level, config, std::io::stderr());
}

/// Longest client-supplied text shown in a log line, in characters.
pub const CLIP_CHARS: usize = 80;

/// Client-supplied text made safe for a log line: control characters,
/// quotes and backslashes escaped, cut after [`CLIP_CHARS`] characters
/// with the original length noted.
pub fn clip(s: &str) -> Clipped<'_> {
    Clipped(s)
}

pub struct Clipped<'a>(&'a str);

impl fmt::Display for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shown, c) in self.0.chars().enumerate() {
            if shown == CLIP_CHARS {
                return write!(f, "…({} bytes)", self.0.len());
            }
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                // C0, DEL, C1 controls and the Unicode line/paragraph
                // separators (some log viewers break lines on them).
                c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                    write!(f, "\\u{{{:x}}}", c as u32)?
                }
                c => write!(f, "{c}")?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Lets through at most `burst` events per `window`; counts the rest, so
/// the next line let through can say how many were suppressed.
#[derive(Debug, Clone)]
pub struct RateLimit {
    window: Duration,
    burst: u32,
    started: Option<Instant>,
    used: u32,
    suppressed: u64,
}

/// Warnings about one connection: 20 per 10 seconds.
pub const WARN_BURST: u32 = 20;
pub const WARN_WINDOW: Duration = Duration::from_secs(10);

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::new(WARN_BURST, WARN_WINDOW)
    }
}

impl RateLimit {
    pub fn new(burst: u32, window: Duration) -> RateLimit {
        RateLimit {
            window,
            burst,
            started: None,
            used: 0,
            suppressed: 0,
        }
    }

    /// `Some(n)` if this event may be logged (`n` events were suppressed
    /// since the last one logged), `None` if it must be dropped.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        let fresh = self
            .started
            .is_none_or(|s| now.duration_since(s) >= self.window);
        if fresh {
            self.started = Some(now);
            self.used = 0;
        }
        if self.used >= self.burst {
            self.suppressed += 1;
            return None;
        }
        self.used += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Logs a warning about one peer through its rate limit; a line let
/// through after suppressed ones says how many were dropped.
#[macro_export]
macro_rules! peer_warn {
    ($limit:expr, $peer:expr, $($arg:tt)+) => {{
        if let Some(dropped) = $limit.allow(::std::time::Instant::now()) {
            if dropped > 0 {
                log::warn!(
                    "peer {}: {} (after {} similar warnings suppressed)",
                    $peer, format_args!($($arg)+), dropped
                );
            } else {
                log::warn!("peer {}: {}", $peer, format_args!($($arg)+));
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_escapes_and_truncates() {
        assert_eq!(clip("co_zAbc").to_string(), "co_zAbc");
        assert_eq!(
            clip("a\n[ERROR] forged\r\t\"\\\u{1b}[31m\u{2028}").to_string(),
            "a\\n[ERROR] forged\\r\\t\\\"\\\\\\u{1b}[31m\\u{2028}"
        );
        let long = "x".repeat(1000);
        let shown = clip(&long).to_string();
        assert!(shown.starts_with(&"x".repeat(CLIP_CHARS)));
        assert!(shown.ends_with("…(1000 bytes)"), "{shown}");
        assert!(shown.len() < 100);
        // Cut on a character boundary.
        let wide = "é".repeat(200);
        assert!(clip(&wide).to_string().starts_with(&"é".repeat(CLIP_CHARS)));
    }

    #[test]
    fn rate_limit_lets_a_burst_through_then_counts() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(3, Duration::from_secs(10));
        assert_eq!(r.allow(t0), Some(0));
        assert_eq!(r.allow(t0), Some(0));
        assert_eq!(r.allow(t0), Some(0));
        assert_eq!(r.allow(t0), None);
        assert_eq!(r.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(r.allow(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(r.allow(t0 + Duration::from_secs(10)), Some(0));
    }
}
