//! The network layer: one mio event loop (`reactor`) that owns every socket
//! and drives each connection's state machine (`conn`: HTTP request head,
//! then WebSocket), and hands complete sync messages to the engine.
//! Nothing here knows about CoValues.

pub mod close;
pub mod conn;
pub mod http;
pub mod out_queue;
pub mod proxy;
pub mod reactor;
pub mod signals;
pub mod stats;
pub mod trim;
pub mod websocket;
