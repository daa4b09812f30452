//! maia-sync: parse the command line, then serve (or run an admin command).

use std::process::ExitCode;

use maia_sync::service::admin;
use maia_sync::service::cli::{self, Command};
use maia_sync::service::config::{ConfigError, help_text, version_text};
use maia_sync::service::serve::serve;

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
