//! Server settings from flags and environment (a flag wins over its variable).
//!
//! Parsing is a pure function over the argument list and an environment lookup,
//! so every rule is unit-tested without touching the real process environment.
//! std only: the handful of settings does not justify an argument-parser crate.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use log::LevelFilter;

use crate::net::proxy::IpRange;
use crate::storage::sqlite::Synchronous;

pub const DEFAULT_PORT: u16 = 4203;
pub const DEFAULT_HOST: &str = "0.0.0.0";
pub const DEFAULT_DB_PATH: &str = "./local-sync.db";
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 << 20;
pub const DEFAULT_MAX_OUTBOUND_BYTES: usize = 64 << 20;
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MEMORY_BUDGET: usize = crate::sync::DEFAULT_MEMORY_BUDGET;
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// An IP address or a host name; resolved when binding.
    pub host: String,
    /// 0 asks the OS for a free port (the tests use it).
    pub port: u16,
    pub db_path: PathBuf,
    pub in_memory: bool,
    pub log_level: LevelFilter,
    /// Largest incoming WebSocket message (and frame) accepted.
    pub max_message_bytes: usize,
    /// Bytes queued for one connection beyond which it is dropped.
    pub max_outbound_bytes: usize,
    /// A client must finish its HTTP request head within this time.
    pub header_timeout: Duration,
    /// A connection with output pending and no write progress for this long
    /// is dropped (the client stopped reading).
    pub write_timeout: Duration,
    /// SQLite `synchronous`: FULL (an ack survives power loss) or NORMAL.
    pub sync_mode: Synchronous,
    /// Approximate cap on memory used for cached CoValues.
    pub memory_budget: usize,
    /// TCP peers whose `X-Forwarded-For` header names the real client.
    pub trusted_proxies: Vec<IpRange>,
    /// On SIGTERM/SIGINT, how long connections get to close cleanly.
    pub shutdown_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: DEFAULT_HOST.to_string(),
            port: DEFAULT_PORT,
            db_path: PathBuf::from(DEFAULT_DB_PATH),
            in_memory: false,
            log_level: LevelFilter::Info,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_outbound_bytes: DEFAULT_MAX_OUTBOUND_BYTES,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            sync_mode: Synchronous::Full,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            trusted_proxies: Vec::new(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `--help` was given: not a failure, main prints `help_text()`.
    HelpRequested,
    /// `--version` was given: not a failure, main prints the version.
    VersionRequested,
    UnknownFlag(String),
    MissingValue(&'static str),
    /// A flag that takes no value was given one (`--in-memory=yes`).
    UnexpectedValue(&'static str),
    BadValue {
        /// The flag or variable the value came from, e.g. `--port` or `PORT`.
        source: String,
        value: String,
        expected: &'static str,
    },
}

impl ConfigError {
    /// Exit status for main: 0 for help/version, 2 for a usage error
    /// (the convention of most Unix tools).
    pub fn exit_code(&self) -> i32 {
        match self {
            ConfigError::HelpRequested | ConfigError::VersionRequested => 0,
            _ => 2,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::HelpRequested => f.write_str("help requested"),
            ConfigError::VersionRequested => f.write_str("version requested"),
            ConfigError::UnknownFlag(a) => write!(f, "unknown argument {a:?} (see --help)"),
            ConfigError::MissingValue(flag) => write!(f, "{flag} needs a value (see --help)"),
            ConfigError::UnexpectedValue(flag) => write!(f, "{flag} takes no value"),
            ConfigError::BadValue {
                source,
                value,
                expected,
            } => write!(
                f,
                "invalid value {value:?} for {source}: expected {expected}"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// One setting: its flag, its variable (if any), and how help shows it.
struct Setting {
    flag: &'static str,
    env: Option<&'static str>,
    /// `None` for switches that take no value.
    value_name: Option<&'static str>,
    help: &'static str,
    default: &'static str,
}

const SETTINGS: &[Setting] = &[
    Setting {
        flag: "--port",
        env: Some("PORT"),
        value_name: Some("PORT"),
        help: "TCP port to listen on (0 = any free port)",
        default: "4203",
    },
    Setting {
        flag: "--host",
        env: Some("HOST"),
        value_name: Some("HOST"),
        help: "address or host name to listen on",
        default: DEFAULT_HOST,
    },
    Setting {
        flag: "--db",
        env: Some("DB_PATH"),
        value_name: Some("PATH"),
        help: "SQLite database file (cojson's layout; created if missing)",
        default: DEFAULT_DB_PATH,
    },
    Setting {
        flag: "--in-memory",
        env: None,
        value_name: None,
        help: "keep all data in memory only",
        default: "off",
    },
    Setting {
        flag: "--log-level",
        env: Some("LOG_LEVEL"),
        value_name: Some("LEVEL"),
        help: "error | warn | info | debug | trace",
        default: "info",
    },
    Setting {
        flag: "--max-message-bytes",
        env: Some("MAX_MESSAGE_BYTES"),
        value_name: Some("BYTES"),
        help: "largest incoming WebSocket message (suffixes K, M, G = KiB, MiB, GiB)",
        default: "16M",
    },
    Setting {
        flag: "--max-outbound-bytes",
        env: Some("MAX_OUTBOUND_BYTES"),
        value_name: Some("BYTES"),
        help: "bytes queued for one connection before it is dropped",
        default: "64M",
    },
    Setting {
        flag: "--header-timeout-ms",
        env: Some("HEADER_TIMEOUT_MS"),
        value_name: Some("MS"),
        help: "time a client has to send its HTTP request head",
        default: "10000",
    },
    Setting {
        flag: "--write-timeout-ms",
        env: Some("WRITE_TIMEOUT_MS"),
        value_name: Some("MS"),
        help: "drop a connection whose pending output made no progress this long",
        default: "30000",
    },
    Setting {
        flag: "--sync-mode",
        env: Some("SYNC_MODE"),
        value_name: Some("MODE"),
        help: "full (an acknowledged write survives power loss) | normal (survives a crash only; faster)",
        default: "full",
    },
    Setting {
        flag: "--memory-budget",
        env: Some("MEMORY_BUDGET"),
        value_name: Some("BYTES"),
        help: "memory for CoValues cached between requests (least recently used are evicted)",
        default: "128M",
    },
    Setting {
        flag: "--trusted-proxies",
        env: Some("TRUSTED_PROXIES"),
        value_name: Some("LIST"),
        help: "comma-separated IPs or CIDR ranges of reverse proxies whose X-Forwarded-For is believed",
        default: "none",
    },
    Setting {
        flag: "--shutdown-timeout-ms",
        env: Some("SHUTDOWN_TIMEOUT_MS"),
        value_name: Some("MS"),
        help: "on SIGTERM/SIGINT, time connections get to close before they are dropped",
        default: "10000",
    },
];

/// The `--help` text: every setting with its variable and default.
pub fn help_text() -> String {
    let mut s = format!(
        "maia-sync {} — sync server for Jazz apps (cojson 0.20)\n\n\
         Usage: maia-sync [OPTIONS]\n\
         \x20      maia-sync backup <DEST> [--db <PATH>]\n\
         \x20      maia-sync check [--db <PATH>]\n\n\
         Options (a flag wins over its environment variable):\n",
        env!("CARGO_PKG_VERSION")
    );
    for st in SETTINGS {
        let left = match st.value_name {
            Some(v) => format!("{} <{v}>", st.flag),
            None => st.flag.to_string(),
        };
        let env = st.env.map(|e| format!(" [env {e}]")).unwrap_or_default();
        s.push_str(&format!(
            "  {left:<32} {}{env} (default: {})\n",
            st.help, st.default
        ));
    }
    s.push_str("  --help                           print this help\n");
    s.push_str("  --version                        print the version\n");
    s.push_str(
        "\nCommands (instead of serving; both accept --db and DB_PATH as above):\n\
         \x20 backup <DEST>                    copy the database to DEST while the server may run\n\
         \x20 check                            verify the database file and every stored signature\n\
         \nEndpoints: WebSocket on any path; GET /health; GET /metrics (Prometheus text).\n\
         Signals: SIGTERM or SIGINT close connections (code 1001), flush and exit 0.\n",
    );
    s
}

pub fn version_text() -> String {
    format!("maia-sync {}", env!("CARGO_PKG_VERSION"))
}

impl Config {
    /// Parses flags (`args`, without the program name) over the environment.
    /// Both `--flag value` and `--flag=value` are accepted. An empty variable
    /// counts as unset, so `PORT=` in a unit file does not break startup.
    pub fn parse<I, S, E>(args: I, env: E) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
        E: Fn(&str) -> Option<String>,
    {
        // Collect raw values first (flags override variables), then convert
        // once, so an error names the source the bad value really came from.
        let mut raw: Vec<(&'static str, String, String)> = Vec::new(); // (flag, source, value)
        for st in SETTINGS {
            if let (Some(var), Some(_)) = (st.env, st.value_name)
                && let Some(v) = env(var).filter(|v| !v.is_empty())
            {
                raw.push((st.flag, var.to_string(), v));
            }
        }
        let mut in_memory = false;
        let mut args = args.into_iter().map(Into::into);
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                return Err(ConfigError::HelpRequested);
            }
            if arg == "--version" || arg == "-V" {
                return Err(ConfigError::VersionRequested);
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let Some(st) = SETTINGS.iter().find(|s| s.flag == name) else {
                return Err(ConfigError::UnknownFlag(arg));
            };
            if st.value_name.is_none() {
                if inline.is_some() {
                    return Err(ConfigError::UnexpectedValue(st.flag));
                }
                in_memory = true;
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => args.next().ok_or(ConfigError::MissingValue(st.flag))?,
            };
            raw.push((st.flag, st.flag.to_string(), value));
        }

        let mut c = Config {
            in_memory,
            ..Config::default()
        };
        // Later entries (flags) overwrite earlier ones (variables).
        for (flag, source, value) in raw {
            let bad = |expected| ConfigError::BadValue {
                source: source.clone(),
                value: value.clone(),
                expected,
            };
            match flag {
                "--port" => c.port = value.parse().map_err(|_| bad("a port number 0-65535"))?,
                "--host" => {
                    if value.trim().is_empty() || value.contains(char::is_whitespace) {
                        return Err(bad("an IP address or host name"));
                    }
                    c.host = value;
                }
                "--db" => c.db_path = PathBuf::from(value),
                "--log-level" => {
                    c.log_level = parse_level(&value)
                        .ok_or_else(|| bad("one of error, warn, info, debug, trace"))?
                }
                "--max-message-bytes" => {
                    c.max_message_bytes =
                        parse_size(&value).ok_or_else(|| bad("a positive size like 16M"))?
                }
                "--max-outbound-bytes" => {
                    c.max_outbound_bytes =
                        parse_size(&value).ok_or_else(|| bad("a positive size like 64M"))?
                }
                "--header-timeout-ms" => {
                    c.header_timeout = parse_millis(&value)
                        .ok_or_else(|| bad("a number of ms from 1 to 86400000"))?
                }
                "--write-timeout-ms" => {
                    c.write_timeout = parse_millis(&value)
                        .ok_or_else(|| bad("a number of ms from 1 to 86400000"))?
                }
                "--sync-mode" => {
                    c.sync_mode = parse_sync_mode(&value).ok_or_else(|| bad("full or normal"))?
                }
                "--memory-budget" => {
                    c.memory_budget =
                        parse_size(&value).ok_or_else(|| bad("a positive size like 128M"))?
                }
                "--trusted-proxies" => {
                    c.trusted_proxies = IpRange::parse_list(&value).map_err(|_| {
                        bad("comma-separated IP addresses or CIDR ranges like 127.0.0.1,10.0.0.0/8")
                    })?
                }
                "--shutdown-timeout-ms" => {
                    c.shutdown_timeout = parse_millis(&value)
                        .ok_or_else(|| bad("a number of ms from 1 to 86400000"))?
                }
                _ => {} // every flag in SETTINGS is handled above
            }
        }
        Ok(c)
    }
}

fn parse_sync_mode(s: &str) -> Option<Synchronous> {
    match s.trim().to_ascii_lowercase().as_str() {
        "full" => Some(Synchronous::Full),
        "normal" => Some(Synchronous::Normal),
        _ => None,
    }
}

pub(crate) fn parse_level(s: &str) -> Option<LevelFilter> {
    match s.trim().to_ascii_lowercase().as_str() {
        "error" => Some(LevelFilter::Error),
        "warn" | "warning" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" => Some(LevelFilter::Trace),
        _ => None,
    }
}

/// `1048576`, `512K`, `16M`, `1G` (binary units; `KiB`/`MiB`/`GiB` and a
/// trailing `B` are accepted too). Zero and overflow are rejected.
fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    let n: usize = num.parse().ok()?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult).filter(|&v| v > 0)
}

/// Longest accepted timeout: one day. Deadlines are `Instant + timeout`,
/// which would panic on overflow with an absurd value.
const MAX_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;

fn parse_millis(s: &str) -> Option<Duration> {
    let ms: u64 = s.trim().parse().ok()?;
    (1..=MAX_TIMEOUT_MS)
        .contains(&ms)
        .then(|| Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::parse(args.iter().copied(), |k: &str| {
            env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults() {
        let c = parse(&[], &[]).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.port, 4203);
        assert_eq!(c.host, "0.0.0.0");
        assert_eq!(c.db_path, PathBuf::from("./local-sync.db"));
        assert!(!c.in_memory);
        assert_eq!(c.log_level, LevelFilter::Info);
        assert_eq!(c.max_message_bytes, 16 * 1024 * 1024);
        assert_eq!(c.max_outbound_bytes, 64 * 1024 * 1024);
    }

    #[test]
    fn env_is_read_and_flag_wins() {
        let env = [
            ("PORT", "5000"),
            ("HOST", "127.0.0.1"),
            ("LOG_LEVEL", "debug"),
        ];
        let c = parse(&[], &env).unwrap();
        assert_eq!((c.port, c.host.as_str()), (5000, "127.0.0.1"));
        assert_eq!(c.log_level, LevelFilter::Debug);
        let c = parse(&["--port", "6000", "--log-level=warn"], &env).unwrap();
        assert_eq!(c.port, 6000);
        assert_eq!(c.log_level, LevelFilter::Warn);
        assert_eq!(c.host, "127.0.0.1");
    }

    #[test]
    fn all_flags() {
        let c = parse(
            &[
                "--host",
                "::1",
                "--port=0",
                "--db",
                "/tmp/x.db",
                "--in-memory",
                "--max-message-bytes",
                "1K",
                "--max-outbound-bytes=2MiB",
                "--header-timeout-ms",
                "250",
                "--write-timeout-ms=1000",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.host, "::1");
        assert_eq!(c.port, 0);
        assert_eq!(c.db_path, PathBuf::from("/tmp/x.db"));
        assert!(c.in_memory);
        assert_eq!(c.max_message_bytes, 1024);
        assert_eq!(c.max_outbound_bytes, 2 << 20);
        assert_eq!(c.header_timeout, Duration::from_millis(250));
        assert_eq!(c.write_timeout, Duration::from_secs(1));
    }

    #[test]
    fn env_for_sizes_and_db() {
        let env = [
            ("DB_PATH", "/data/sync.db"),
            ("MAX_MESSAGE_BYTES", "100"),
            ("MAX_OUTBOUND_BYTES", "3g"),
            ("HEADER_TIMEOUT_MS", "5"),
        ];
        let c = parse(&[], &env).unwrap();
        assert_eq!(c.db_path, PathBuf::from("/data/sync.db"));
        assert_eq!(c.max_message_bytes, 100);
        assert_eq!(c.max_outbound_bytes, 3 << 30);
        assert_eq!(c.header_timeout, Duration::from_millis(5));
    }

    #[test]
    fn empty_env_counts_as_unset() {
        let c = parse(&[], &[("PORT", ""), ("LOG_LEVEL", "")]).unwrap();
        assert_eq!(c.port, 4203);
        assert_eq!(c.log_level, LevelFilter::Info);
    }

    #[test]
    fn bad_values_name_their_source() {
        let e = parse(&[], &[("PORT", "http")]).unwrap_err();
        assert!(matches!(&e, ConfigError::BadValue { source, .. } if source == "PORT"));
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("PORT"), "{e}");
        let e = parse(&["--port", "70000"], &[]).unwrap_err();
        assert!(e.to_string().contains("--port"), "{e}");
        assert!(parse(&["--log-level", "loud"], &[]).is_err());
        assert!(parse(&["--max-message-bytes", "0"], &[]).is_err());
        assert!(parse(&["--max-message-bytes", "12X"], &[]).is_err());
        assert!(parse(&["--max-outbound-bytes", "-1"], &[]).is_err());
        assert!(parse(&["--max-outbound-bytes", "99999999999999999999G"], &[]).is_err());
        assert!(parse(&["--header-timeout-ms", "0"], &[]).is_err());
        assert!(parse(&["--write-timeout-ms", "18446744073709551615"], &[]).is_err());
        assert!(parse(&["--write-timeout-ms", "86400000"], &[]).is_ok());
        assert!(parse(&["--host", ""], &[]).is_err());
    }

    #[test]
    fn usage_errors() {
        assert_eq!(
            parse(&["--port"], &[]).unwrap_err(),
            ConfigError::MissingValue("--port")
        );
        assert_eq!(
            parse(&["--bogus"], &[]).unwrap_err(),
            ConfigError::UnknownFlag("--bogus".into())
        );
        assert_eq!(
            parse(&["extra"], &[]).unwrap_err(),
            ConfigError::UnknownFlag("extra".into())
        );
        assert_eq!(
            parse(&["--in-memory=1"], &[]).unwrap_err(),
            ConfigError::UnexpectedValue("--in-memory")
        );
        for e in [
            parse(&["--port"], &[]).unwrap_err(),
            parse(&["--bogus"], &[]).unwrap_err(),
        ] {
            assert_eq!(e.exit_code(), 2);
        }
    }

    #[test]
    fn help_and_version() {
        let e = parse(&["--port", "1", "--help"], &[]).unwrap_err();
        assert_eq!(e, ConfigError::HelpRequested);
        assert_eq!(e.exit_code(), 0);
        assert_eq!(
            parse(&["--version"], &[]).unwrap_err(),
            ConfigError::VersionRequested
        );
        let h = help_text();
        for needle in [
            "--port",
            "PORT",
            "4203",
            "--host",
            "0.0.0.0",
            "--db",
            "DB_PATH",
            "--in-memory",
            "LOG_LEVEL",
            "MAX_MESSAGE_BYTES",
            "16M",
            "MAX_OUTBOUND_BYTES",
            "64M",
        ] {
            assert!(h.contains(needle), "help lacks {needle}:\n{h}");
        }
    }

    #[test]
    fn service_settings() {
        let c = parse(&[], &[]).unwrap();
        assert_eq!(c.sync_mode, Synchronous::Full);
        assert_eq!(c.memory_budget, 128 << 20);
        assert!(c.trusted_proxies.is_empty());
        assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
        let env = [
            ("SYNC_MODE", "NORMAL"),
            ("MEMORY_BUDGET", "1G"),
            ("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8"),
            ("SHUTDOWN_TIMEOUT_MS", "2500"),
        ];
        let c = parse(&[], &env).unwrap();
        assert_eq!(c.sync_mode, Synchronous::Normal);
        assert_eq!(c.memory_budget, 1 << 30);
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(c.trusted_proxies[1].contains("10.1.2.3".parse().unwrap()));
        assert_eq!(c.shutdown_timeout, Duration::from_millis(2500));
        let c = parse(
            &[
                "--sync-mode=full",
                "--trusted-proxies",
                "",
                "--memory-budget=64M",
            ],
            &env,
        )
        .unwrap();
        assert_eq!(c.sync_mode, Synchronous::Full);
        assert!(
            c.trusted_proxies.is_empty(),
            "an empty flag clears the list"
        );
        assert_eq!(c.memory_budget, 64 << 20);
        for (args, source) in [
            (&["--sync-mode", "off"][..], "--sync-mode"),
            (&["--memory-budget", "0"][..], "--memory-budget"),
            (
                &["--trusted-proxies", "example.com"][..],
                "--trusted-proxies",
            ),
            (&["--shutdown-timeout-ms", "0"][..], "--shutdown-timeout-ms"),
        ] {
            let e = parse(args, &[]).unwrap_err();
            assert!(
                matches!(&e, ConfigError::BadValue { source: s, .. } if s == source),
                "{e}"
            );
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10"), Some(10));
        assert_eq!(parse_size("10b"), Some(10));
        assert_eq!(parse_size("4k"), Some(4096));
        assert_eq!(parse_size("16 MiB"), Some(16 << 20));
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("1.5M"), None);
    }
}
