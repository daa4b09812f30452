//! maia-sync: parse the command line, then serve (or run an admin command).

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

use maia_sync::admin;
use maia_sync::cli::{self, Command};
use maia_sync::config::{Config, ConfigError, help_text, version_text};
use maia_sync::metrics::TimedStore;
use maia_sync::reactor::{Options, Reactor};
use maia_sync::storage::Store;
use maia_sync::storage::memory::MemoryStore;
use maia_sync::storage::sqlite::SqliteStore;
use maia_sync::sync::Engine;
use maia_sync::systemd::Notifier;

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args().skip(1), |k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(ConfigError::HelpRequested) => {
            print!("{}", help_text());
            return ExitCode::SUCCESS;
        }
        Err(ConfigError::VersionRequested) => {
            println!("{}", version_text());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("maia-sync: {e}");
            return exit(e.exit_code());
        }
    };
    match command {
        Command::Serve(config) => {
            init_logging(config.log_level);
            serve(&config)
        }
        Command::Backup {
            db,
            dest,
            log_level,
        } => {
            init_logging(log_level);
            exit(admin::run_backup(&db, &dest))
        }
        Command::Check { db, log_level } => {
            init_logging(log_level);
            exit(admin::run_check(&db))
        }
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn serve(config: &Config) -> ExitCode {
    let opts = Options::from_config(config);
    let store: Box<dyn Store> = if config.in_memory {
        log::info!("--in-memory: data is kept in memory only and lost on exit");
        Box::new(MemoryStore::new())
    } else {
        match SqliteStore::open(&config.db_path, config.sync_mode) {
            Ok(s) => {
                log::info!(
                    "database {} (synchronous {:?})",
                    config.db_path.display(),
                    config.sync_mode
                );
                Box::new(s)
            }
            Err(e) => {
                log::error!("{e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let store = TimedStore::new(store, opts.commit_stats.clone());

    let mut reactor = match bind(config, &opts) {
        Ok(r) => r,
        Err(msg) => {
            log::error!("{msg}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = reactor.handle_stop_signals() {
        log::error!("cannot install the SIGTERM/SIGINT handlers: {e}");
        return ExitCode::FAILURE;
    }
    let notifier = Notifier::from_env();
    if notifier.is_active() {
        log::debug!(
            "notifying the service manager (watchdog every {:?})",
            notifier.watchdog_interval()
        );
    }
    reactor.set_notifier(notifier);
    match reactor.local_addr() {
        // Tests and scripts wait for exactly this line to learn the port.
        Ok(addr) => log::info!("listening on {addr}"),
        Err(e) => {
            log::error!("cannot read the listening address: {e}");
            return ExitCode::FAILURE;
        }
    }

    let mut engine = Engine::new(Box::new(store));
    engine.set_memory_budget(config.memory_budget);
    if let Err(e) = reactor.run(&mut engine) {
        log::error!("event loop failed: {e}");
        return ExitCode::FAILURE;
    }
    // Shutdown: everything acknowledged was committed before its ack left;
    // closing checkpoints the WAL so the database is one tidy file.
    match engine.shutdown() {
        Ok(()) => {
            log::info!("storage closed; exiting");
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("closing storage failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Plain lines on stderr (no colours, no timestamps: journald and container
/// runtimes add their own), only this crate's records.
fn init_logging(level: log::LevelFilter) {
    let log_config = simplelog::ConfigBuilder::new()
        .set_time_level(log::LevelFilter::Off)
        .set_thread_level(log::LevelFilter::Off)
        .set_target_level(log::LevelFilter::Off)
        .set_location_level(log::LevelFilter::Off)
        .add_filter_allow_str("maia_sync")
        .build();
    // Fails only if a logger is already set, which cannot happen here.
    let _ = simplelog::WriteLogger::init(level, log_config, std::io::stderr());
}

/// Binds the first address `host:port` resolves to that accepts us.
fn bind(config: &Config, opts: &Options) -> Result<Reactor, String> {
    let what = format!("{}:{}", config.host, config.port);
    let addrs: Vec<SocketAddr> = (config.host.as_str(), config.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve listen address {what}: {e}"))?
        .collect();
    let mut last_err = format!("listen address {what} resolved to nothing");
    for addr in addrs {
        match Reactor::bind(addr, opts.clone()) {
            Ok(r) => return Ok(r),
            Err(e) => last_err = format!("cannot listen on {addr}: {e}"),
        }
    }
    Err(last_err)
}
