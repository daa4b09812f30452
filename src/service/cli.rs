//! The command line: serve (the default) or one of the admin commands.
//!
//! `maia-sync [OPTIONS]` serves; `maia-sync backup DEST [--db PATH]` and
//! `maia-sync check [--db PATH]` work on a database file and exit. The
//! admin commands take the same `--db` / `DB_PATH` as the server, so under
//! systemd `maia-sync backup /srv/backup.db` with the unit's environment
//! finds the live database.

use std::path::PathBuf;

use log::LevelFilter;

use crate::service::config::{Config, ConfigError, Scope, parse_scoped};

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Serve(Config),
    /// Copy the database at `db` to `dest` with SQLite's online backup.
    Backup {
        db: PathBuf,
        dest: PathBuf,
        log_level: LevelFilter,
    },
    /// Integrity check plus re-verification of every stored session.
    Check {
        db: PathBuf,
        log_level: LevelFilter,
    },
}

/// Parses the whole command line (without the program name).
pub fn parse<I, S, E>(args: I, env: E) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
    E: Fn(&str) -> Option<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    match args.first().map(String::as_str) {
        Some("backup") => parse_admin(&args[1..], &env, true),
        Some("check") => parse_admin(&args[1..], &env, false),
        _ => Config::parse(args, env).map(Command::Serve),
    }
}

/// The admin commands read `--db` and `--log-level` (and their
/// variables) from the same settings table as the server.
fn parse_admin(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    backup: bool,
) -> Result<Command, ConfigError> {
    let parsed = parse_scoped(args.iter().cloned(), env, Scope::Admin)?;
    // Admin output is the report on stdout; only errors go to the log by
    // default, so a cron job's mail stays quiet when all is well.
    let log_level = if parsed.given.contains(&"--log-level") {
        parsed.config.log_level
    } else {
        LevelFilter::Error
    };
    let db = parsed.config.db_path;
    let mut positional = parsed.positional.into_iter();
    let cmd = if backup {
        let dest = positional
            .next()
            .ok_or(ConfigError::MissingValue("backup <DEST>"))?;
        Command::Backup {
            db,
            dest: PathBuf::from(dest),
            log_level,
        }
    } else {
        Command::Check { db, log_level }
    };
    match positional.next() {
        Some(extra) => Err(ConfigError::UnknownFlag(extra)),
        None => Ok(cmd),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Command, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(args.iter().copied(), |k: &str| {
            env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn serve_is_the_default() {
        assert!(matches!(parse_with(&[], &[]), Ok(Command::Serve(_))));
        assert!(matches!(
            parse_with(&["--port", "1"], &[]),
            Ok(Command::Serve(c)) if c.port == 1
        ));
    }

    #[test]
    fn backup() {
        let c = parse_with(&["backup", "/b/x.db", "--db", "/d/s.db"], &[]).unwrap();
        assert_eq!(
            c,
            Command::Backup {
                db: "/d/s.db".into(),
                dest: "/b/x.db".into(),
                log_level: LevelFilter::Error
            }
        );
        // DB_PATH is honoured, and the flag wins over it.
        let env = [("DB_PATH", "/var/lib/maia-sync/sync.db")];
        let c = parse_with(&["backup", "out.db"], &env).unwrap();
        assert!(matches!(c, Command::Backup { db, .. } if db == Path::new(env[0].1)));
        let c = parse_with(&["backup", "--db=/x.db", "out.db"], &env).unwrap();
        assert!(matches!(c, Command::Backup { db, .. } if db == Path::new("/x.db")));
        assert_eq!(
            parse_with(&["backup"], &[]).unwrap_err(),
            ConfigError::MissingValue("backup <DEST>")
        );
        assert_eq!(
            parse_with(&["backup", "a", "b"], &[]).unwrap_err(),
            ConfigError::UnknownFlag("b".into())
        );
    }

    #[test]
    fn check() {
        let c = parse_with(&["check"], &[]).unwrap();
        assert_eq!(
            c,
            Command::Check {
                db: Config::default().db_path,
                log_level: LevelFilter::Error
            }
        );
        let c = parse_with(&["check", "--log-level", "warn"], &[]).unwrap();
        assert!(matches!(
            c,
            Command::Check {
                log_level: LevelFilter::Warn,
                ..
            }
        ));
        let e = parse_with(&["check"], &[("LOG_LEVEL", "loud")]).unwrap_err();
        assert!(e.to_string().contains("LOG_LEVEL"), "{e}");
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            parse_with(&["check", "--port", "1"], &[]).unwrap_err(),
            ConfigError::UnknownFlag("--port".into())
        );
        assert_eq!(
            parse_with(&["check", "--db"], &[]).unwrap_err(),
            ConfigError::MissingValue("--db")
        );
        assert_eq!(
            parse_with(&["check", "--help"], &[]).unwrap_err(),
            ConfigError::HelpRequested
        );
    }
}
