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
            maia_sync::logging::init(config.log_level);
            serve(&config)
        }
        Command::Backup {
            db,
            dest,
            log_level,
        } => {
            maia_sync::logging::init(log_level);
            exit(admin::run_backup(&db, &dest))
        }
        Command::Check { db, log_level } => {
            maia_sync::logging::init(log_level);
            exit(admin::run_check(&db))
        }
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}
