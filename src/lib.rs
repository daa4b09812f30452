//! maia-sync: a self-hosted sync server for Jazz apps (cojson 0.20 protocol).
//!
//! Data flows one way through the modules (see README "Architecture"):
//! socket → `reactor` → `conn` (`http` | `websocket`) → `protocol` → `sync`
//! (the sans-I/O engine) → `verify`, and back out through the engine's
//! outbox, which is released only after `storage` committed the turn.

pub mod config;
pub mod conn;
pub mod http;
pub mod protocol;
pub mod reactor;
pub mod storage;
pub mod sync;
pub mod verify;
pub mod websocket;
