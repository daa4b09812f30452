//! Server settings from flags and environment (a flag wins over its variable).
//!
//! One table, [`SETTINGS`], names every setting once: its flag, its
//! variable, its default (as text, parsed like any value), how to parse
//! it and its help line. Serving, the admin commands and `--help` all read
//! it, so a default is written in exactly one place.
//!
//! Parsing is a pure function over the argument list and an environment
//! lookup, so every rule is unit-tested without touching the real process
//! environment. std only: the handful of settings does not justify an
//! argument-parser crate.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use log::LevelFilter;

use crate::net::proxy::IpRange;
use crate::storage::sqlite::Synchronous;

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
    /// What one connection may make the server hold.
    pub connection_memory: usize,
    /// What all connections together may make the server hold.
    pub client_memory: usize,
    /// TCP peers whose `X-Forwarded-For` header names the real client.
    pub trusted_proxies: Vec<IpRange>,
    /// On SIGTERM/SIGINT, how long connections get to close cleanly.
    pub shutdown_timeout: Duration,
}

impl Default for Config {
    /// Every setting at its default from [`SETTINGS`].
    fn default() -> Self {
        let mut c = Config {
            host: String::new(),
            port: 0,
            db_path: PathBuf::new(),
            in_memory: false,
            log_level: LevelFilter::Info,
            max_message_bytes: 0,
            max_outbound_bytes: 0,
            header_timeout: Duration::ZERO,
            write_timeout: Duration::ZERO,
            sync_mode: Synchronous::Full,
            memory_budget: 0,
            connection_memory: 0,
            client_memory: 0,
            trusted_proxies: Vec::new(),
            shutdown_timeout: Duration::ZERO,
        };
        for st in SETTINGS {
            // The defaults are checked by a unit test; a bad one would be a
            // build defect, not a user error.
            let _ = (st.apply)(&mut c, st.default);
        }
        c
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
    /// Two settings that do not fit together.
    Conflict(String),
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
            ConfigError::Conflict(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ConfigError {}

/// One setting: its flag, its variable (if any), its default, how to
/// parse a value into the config, and how help shows it.
pub struct Setting {
    pub flag: &'static str,
    pub env: Option<&'static str>,
    /// `None` for switches that take no value (the value is then "on").
    pub value_name: Option<&'static str>,
    pub help: &'static str,
    pub default: &'static str,
    /// Also accepted by the admin commands (`backup`, `check`).
    pub admin: bool,
    /// Parses a value into the config; `Err` says what was expected.
    apply: fn(&mut Config, &str) -> Result<(), &'static str>,
}

const TIMEOUT: &str = "a number of ms from 1 to 86400000";

pub const SETTINGS: &[Setting] = &[
    Setting {
        flag: "--port",
        env: Some("PORT"),
        value_name: Some("PORT"),
        help: "TCP port to listen on (0 = any free port)",
        default: "4203",
        admin: false,
        apply: |c, v| {
            c.port = v.trim().parse().map_err(|_| "a port number 0-65535")?;
            Ok(())
        },
    },
    Setting {
        flag: "--host",
        env: Some("HOST"),
        value_name: Some("HOST"),
        help: "address or host name to listen on",
        default: "0.0.0.0",
        admin: false,
        apply: |c, v| {
            if v.trim().is_empty() || v.contains(char::is_whitespace) {
                return Err("an IP address or host name");
            }
            c.host = v.to_string();
            Ok(())
        },
    },
    Setting {
        flag: "--db",
        env: Some("DB_PATH"),
        value_name: Some("PATH"),
        help: "SQLite database file (cojson's layout; created if missing)",
        default: "./local-sync.db",
        admin: true,
        apply: |c, v| {
            if v.is_empty() {
                return Err("a database file path");
            }
            c.db_path = PathBuf::from(v);
            Ok(())
        },
    },
    Setting {
        flag: "--in-memory",
        env: None,
        value_name: None,
        help: "keep all data in memory only",
        default: "off",
        admin: false,
        apply: |c, v| {
            c.in_memory = v == "on";
            Ok(())
        },
    },
    Setting {
        flag: "--log-level",
        env: Some("LOG_LEVEL"),
        value_name: Some("LEVEL"),
        help: "error | warn | info | debug | trace (admin commands: error unless set)",
        default: "info",
        admin: true,
        apply: |c, v| {
            c.log_level = parse_level(v).ok_or("one of error, warn, info, debug, trace")?;
            Ok(())
        },
    },
    Setting {
        flag: "--max-message-bytes",
        env: Some("MAX_MESSAGE_BYTES"),
        value_name: Some("BYTES"),
        help: "largest incoming WebSocket message (suffixes K, M, G = KiB, MiB, GiB)",
        default: "16M",
        admin: false,
        apply: |c, v| {
            c.max_message_bytes = parse_size(v).ok_or("a positive size like 16M")?;
            Ok(())
        },
    },
    Setting {
        flag: "--max-outbound-bytes",
        env: Some("MAX_OUTBOUND_BYTES"),
        value_name: Some("BYTES"),
        help: "bytes queued for one connection before it is dropped",
        default: "64M",
        admin: false,
        apply: |c, v| {
            c.max_outbound_bytes = parse_size(v).ok_or("a positive size like 64M")?;
            Ok(())
        },
    },
    Setting {
        flag: "--connection-memory",
        env: Some("CONNECTION_MEMORY"),
        value_name: Some("BYTES"),
        help: "memory one connection may make the server hold (subscriptions, held content, an incoming message); above it the connection is closed (1008)",
        default: "48M",
        admin: false,
        apply: |c, v| {
            c.connection_memory = parse_size(v).ok_or("a positive size like 48M")?;
            Ok(())
        },
    },
    Setting {
        flag: "--client-memory",
        env: Some("CLIENT_MEMORY"),
        value_name: Some("BYTES"),
        help: "memory all connections together may make the server hold; above it reading pauses, then the biggest connection is closed (1013)",
        default: "256M",
        admin: false,
        apply: |c, v| {
            c.client_memory = parse_size(v).ok_or("a positive size like 256M")?;
            Ok(())
        },
    },
    Setting {
        flag: "--header-timeout-ms",
        env: Some("HEADER_TIMEOUT_MS"),
        value_name: Some("MS"),
        help: "time a client has to send its HTTP request head",
        default: "10000",
        admin: false,
        apply: |c, v| {
            c.header_timeout = parse_millis(v).ok_or(TIMEOUT)?;
            Ok(())
        },
    },
    Setting {
        flag: "--write-timeout-ms",
        env: Some("WRITE_TIMEOUT_MS"),
        value_name: Some("MS"),
        help: "drop a connection whose pending output made no progress this long",
        default: "30000",
        admin: false,
        apply: |c, v| {
            c.write_timeout = parse_millis(v).ok_or(TIMEOUT)?;
            Ok(())
        },
    },
    Setting {
        flag: "--sync-mode",
        env: Some("SYNC_MODE"),
        value_name: Some("MODE"),
        help: "full (an acknowledged write survives power loss) | normal (survives a crash only; faster)",
        default: "full",
        admin: false,
        apply: |c, v| {
            c.sync_mode = match v.trim().to_ascii_lowercase().as_str() {
                "full" => Synchronous::Full,
                "normal" => Synchronous::Normal,
                _ => return Err("full or normal"),
            };
            Ok(())
        },
    },
    Setting {
        flag: "--memory-budget",
        env: Some("MEMORY_BUDGET"),
        value_name: Some("BYTES"),
        help: "memory for CoValues cached between requests (least recently used are evicted)",
        default: "128M",
        admin: false,
        apply: |c, v| {
            c.memory_budget = parse_size(v).ok_or("a positive size like 128M")?;
            Ok(())
        },
    },
    Setting {
        flag: "--trusted-proxies",
        env: Some("TRUSTED_PROXIES"),
        value_name: Some("LIST"),
        help: "comma-separated IPs or CIDR ranges of reverse proxies whose X-Forwarded-For is believed",
        default: "",
        admin: false,
        apply: |c, v| {
            c.trusted_proxies = IpRange::parse_list(v).map_err(
                |_| "comma-separated IP addresses or CIDR ranges like 127.0.0.1,10.0.0.0/8",
            )?;
            Ok(())
        },
    },
    Setting {
        flag: "--shutdown-timeout-ms",
        env: Some("SHUTDOWN_TIMEOUT_MS"),
        value_name: Some("MS"),
        help: "on SIGTERM/SIGINT, time connections get to close before they are dropped",
        default: "10000",
        admin: false,
        apply: |c, v| {
            c.shutdown_timeout = parse_millis(v).ok_or(TIMEOUT)?;
            Ok(())
        },
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
        let default = if st.default.is_empty() {
            "none"
        } else {
            st.default
        };
        s.push_str(&format!(
            "  {left:<32} {}{env} (default: {default})\n",
            st.help
        ));
    }
    s.push_str("  --help                           print this help\n");
    s.push_str("  --version                        print the version\n");
    s.push_str(
        "\nCommands (instead of serving; both accept --db, --log-level and their variables):\n\
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

/// Which settings a command line may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Serve,
    Admin,
}

/// A parsed command line: the config, which settings were given
/// explicitly (by flag or variable), and the positional arguments (only
/// the admin commands take any).
pub struct Parsed {
    pub config: Config,
    pub given: Vec<&'static str>,
    pub positional: Vec<String>,
}

impl Config {
    /// Parses flags (`args`, without the program name) over the
    /// environment, for serving.
    pub fn parse<I, S, E>(args: I, env: E) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
        E: Fn(&str) -> Option<String>,
    {
        let parsed = parse_scoped(args, &env, Scope::Serve)?;
        if !parsed.positional.is_empty() {
            return Err(ConfigError::UnknownFlag(parsed.positional[0].clone()));
        }
        parsed.config.check()?;
        Ok(parsed.config)
    }

    /// Settings that must fit together.
    fn check(&self) -> Result<(), ConfigError> {
        if self.connection_memory < self.max_message_bytes + (1 << 20) {
            return Err(ConfigError::Conflict(format!(
                "connection-memory ({} KiB) must be at least max-message-bytes ({} KiB) plus 1 MiB: a connection must be able to hold one message",
                self.connection_memory >> 10,
                self.max_message_bytes >> 10
            )));
        }
        if self.client_memory < self.connection_memory {
            return Err(ConfigError::Conflict(format!(
                "client-memory ({} KiB) must be at least connection-memory ({} KiB)",
                self.client_memory >> 10,
                self.connection_memory >> 10
            )));
        }
        Ok(())
    }
}

/// Parses a command line against the settings of `scope`. Both
/// `--flag value` and `--flag=value` are accepted. An empty variable
/// counts as unset, so `PORT=` in a unit file does not break startup.
pub fn parse_scoped<I, S>(
    args: I,
    env: &dyn Fn(&str) -> Option<String>,
    scope: Scope,
) -> Result<Parsed, ConfigError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let in_scope = |st: &Setting| scope == Scope::Serve || st.admin;
    // Collect raw values first (flags override variables), then convert
    // once, so an error names the source the bad value really came from.
    let mut raw: Vec<(&'static Setting, String, String)> = Vec::new(); // (setting, source, value)
    for st in SETTINGS.iter().filter(|s| in_scope(s)) {
        if let (Some(var), Some(_)) = (st.env, st.value_name)
            && let Some(v) = env(var).filter(|v| !v.is_empty())
        {
            raw.push((st, var.to_string(), v));
        }
    }
    let mut positional = Vec::new();
    let mut args = args.into_iter().map(Into::into);
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Err(ConfigError::HelpRequested);
        }
        if scope == Scope::Serve && (arg == "--version" || arg == "-V") {
            return Err(ConfigError::VersionRequested);
        }
        if !arg.starts_with('-') {
            positional.push(arg);
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let Some(st) = SETTINGS.iter().find(|s| s.flag == name && in_scope(s)) else {
            return Err(ConfigError::UnknownFlag(arg));
        };
        if st.value_name.is_none() {
            if inline.is_some() {
                return Err(ConfigError::UnexpectedValue(st.flag));
            }
            raw.push((st, st.flag.to_string(), "on".to_string()));
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => args.next().ok_or(ConfigError::MissingValue(st.flag))?,
        };
        raw.push((st, st.flag.to_string(), value));
    }
    let mut config = Config::default();
    let mut given = Vec::new();
    // Later entries (flags) overwrite earlier ones (variables).
    for (st, source, value) in raw {
        (st.apply)(&mut config, &value).map_err(|expected| ConfigError::BadValue {
            source,
            value: value.clone(),
            expected,
        })?;
        given.push(st.flag);
    }
    Ok(Parsed {
        config,
        given,
        positional,
    })
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
