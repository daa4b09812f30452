//! The service around the server: settings, the command line, admin
//! commands (backup, check), `/metrics` rendering and systemd integration.

pub mod admin;
pub mod cli;
pub mod config;
pub mod metrics;
pub mod serve;
pub mod systemd;
