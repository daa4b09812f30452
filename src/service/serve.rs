//! `maia-sync` serving: open storage, bind, run the event loop until a stop
//! signal, close storage. Also the glue between the loop and the service
//! (systemd notifications, `/metrics`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use crate::net::conn::Limits;
use crate::net::http::MAX_HEADER_BYTES;
use crate::net::reactor::{Hooks, Options, PING_INTERVAL, Reactor};
use crate::net::stats::{Live, NetStats};
use crate::service::config::Config;
use crate::service::metrics::Metrics;
use crate::service::systemd::Notifier;
use crate::storage::Store;
use crate::storage::memory::MemoryStore;
use crate::storage::sqlite::SqliteStore;
use crate::storage::timed::{SharedCommitStats, TimedStore};
use crate::sync::Engine;

/// The loop's options from the settings.
pub fn options(c: &Config) -> Options {
    Options {
        limits: Limits {
            max_message_bytes: c.max_message_bytes,
            max_outbound_bytes: c.max_outbound_bytes,
            max_header_bytes: MAX_HEADER_BYTES,
            header_timeout: c.header_timeout,
            write_timeout: c.write_timeout,
            trusted_proxies: c.trusted_proxies.clone(),
        },
        ping_interval: PING_INTERVAL,
        shutdown_timeout: c.shutdown_timeout,
        connection_memory: c.connection_memory,
        client_memory: c.client_memory,
    }
}

/// systemd notifications and the `/metrics` renderer, for the loop.
struct ServiceHooks {
    notifier: Notifier,
    metrics: Metrics,
}

impl Hooks for ServiceHooks {
    fn notify(&mut self, state: &str) {
        self.notifier.notify(state);
    }

    fn watchdog_interval(&self) -> Option<Duration> {
        self.notifier.watchdog_interval()
    }

    fn metrics(&mut self, net: &NetStats, live: Live, engine: &Engine) -> String {
        self.metrics.render(net, live, engine)
    }
}

pub fn serve(config: &Config) -> ExitCode {
    let opts = options(config);
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
    let commit_stats = SharedCommitStats::default();
    let store = TimedStore::new(store, commit_stats.clone());

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
    let db_path = (!config.in_memory).then(|| config.db_path.clone());
    reactor.set_hooks(Box::new(ServiceHooks {
        notifier,
        metrics: Metrics::new(commit_stats, db_path),
    }));
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
