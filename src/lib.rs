//! maia-sync: a self-hosted sync server for Jazz apps (cojson 0.20 protocol).
//!
//! Layers, with imports pointing one way (service → net → sync → verify,
//! storage); see README "Architecture":
//! - `net`: the mio reactor, connections, HTTP, WebSocket;
//! - `sync`: the sync engine (protocol rules, dependency gate, forwarding);
//! - `verify`: pure checks of what clients send (IDs, chains, signatures);
//! - `storage`: SQLite in cojson's layout, and an in-memory store;
//! - `service`: settings, CLI, admin commands, metrics, systemd.

pub mod logging;
pub mod net;
pub mod service;
pub mod storage;
pub mod sync;
pub mod verify;
