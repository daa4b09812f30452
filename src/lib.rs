//! maia-sync: a self-hosted sync server for Jazz apps (cojson 0.20 protocol).
//!
//! Data flows one way through the modules (see README "Architecture"):
//! socket → `reactor` → `conn` (`http` | `websocket`) → `protocol` → `sync`
//! (the sans-I/O engine) → `verify`, and back out through the engine's
//! outbox, which is released only after `storage` committed the turn.

pub mod admin;
pub mod cli;
pub mod config;
pub mod conn;
pub mod http;
pub mod metrics;
pub mod outbound;
pub mod protocol;
pub mod proxy;
pub mod reactor;
pub mod signals;
pub mod storage;
pub mod sync;
pub mod systemd;
pub mod verify;
pub mod websocket;
