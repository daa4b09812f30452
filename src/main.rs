//! maia-sync: parse settings, set up logging, bind, serve.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

use maia_sync::config::{Config, ConfigError, help_text, version_text};
use maia_sync::reactor::{Options, Reactor};
use maia_sync::storage::Store;
use maia_sync::storage::memory::MemoryStore;
use maia_sync::storage::sqlite::{SqliteStore, Synchronous};
use maia_sync::sync::Engine;

fn main() -> ExitCode {
    let config = match Config::parse(std::env::args().skip(1), |k| std::env::var(k).ok()) {
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
            return ExitCode::from(e.exit_code().clamp(1, 255) as u8);
        }
    };
    init_logging(&config);

    let store: Box<dyn Store> = if config.in_memory {
        log::info!("--in-memory: data is kept in memory only and lost on exit");
        Box::new(MemoryStore::new())
    } else {
        // FULL: an acknowledged write survives a power loss, not just a crash.
        match SqliteStore::open(&config.db_path, Synchronous::Full) {
            Ok(s) => {
                log::info!("database {}", config.db_path.display());
                Box::new(s)
            }
            Err(e) => {
                log::error!("{e}");
                return ExitCode::FAILURE;
            }
        }
    };

    let mut reactor = match bind(&config) {
        Ok(r) => r,
        Err(msg) => {
            log::error!("{msg}");
            return ExitCode::FAILURE;
        }
    };
    match reactor.local_addr() {
        // Tests and scripts wait for exactly this line to learn the port.
        Ok(addr) => log::info!("listening on {addr}"),
        Err(e) => {
            log::error!("cannot read the listening address: {e}");
            return ExitCode::FAILURE;
        }
    }

    let mut engine = Engine::new(store);
    match reactor.run(&mut engine) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Plain lines on stderr (no colours, no timestamps: journald and container
/// runtimes add their own), only this crate's records.
fn init_logging(config: &Config) {
    let log_config = simplelog::ConfigBuilder::new()
        .set_time_level(log::LevelFilter::Off)
        .set_thread_level(log::LevelFilter::Off)
        .set_target_level(log::LevelFilter::Off)
        .set_location_level(log::LevelFilter::Off)
        .add_filter_allow_str("maia_sync")
        .build();
    // Fails only if a logger is already set, which cannot happen here.
    let _ = simplelog::WriteLogger::init(config.log_level, log_config, std::io::stderr());
}

/// Binds the first address `host:port` resolves to that accepts us.
fn bind(config: &Config) -> Result<Reactor, String> {
    let what = format!("{}:{}", config.host, config.port);
    let addrs: Vec<SocketAddr> = (config.host.as_str(), config.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve listen address {what}: {e}"))?
        .collect();
    let mut last_err = format!("listen address {what} resolved to nothing");
    for addr in addrs {
        match Reactor::bind(addr, Options::from_config(config)) {
            Ok(r) => return Ok(r),
            Err(e) => last_err = format!("cannot listen on {addr}: {e}"),
        }
    }
    Err(last_err)
}
