//! Why a connection ends, and the WebSocket close code (if any) that tells
//! the client. One place for both, so `conn` and `websocket` share it
//! without importing each other.

use std::fmt;
use std::io;
use std::time::Duration;

use tungstenite::protocol::frame::coding::CloseCode;

/// Why a connection ended; shown in its close log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    ClientClosed(String),
    /// TCP ended without a WebSocket close frame.
    Eof,
    /// TCP ended before a complete request head arrived.
    NoRequest,
    Io(io::ErrorKind),
    HeaderTimeout(Duration),
    Http {
        status: u16,
        detail: String,
    },
    MessageTooBig {
        limit: usize,
        detail: String,
    },
    Protocol(String),
    OutboundOverflow {
        queued: usize,
        limit: usize,
    },
    WriteStalled(Duration),
    /// The engine's storage commit failed; the client must re-sync.
    StorageFailed,
    /// The connection makes the server hold more than its share.
    MemoryLimit {
        used: usize,
        limit: usize,
    },
    /// All connections together hold more than the server allows; this
    /// one held the most.
    ServerMemoryFull {
        used: usize,
        limit: usize,
    },
    /// The client sent this many invalid signatures.
    InvalidSignatures(u32),
    /// SIGTERM/SIGINT: the server is stopping (close code 1001).
    ServerShutdown,
}

impl CloseReason {
    /// Abnormal ends are logged as warnings: they point at a misbehaving
    /// client or a limit an operator may want to raise.
    pub fn is_abnormal(&self) -> bool {
        matches!(
            self,
            CloseReason::HeaderTimeout(_)
                | CloseReason::MessageTooBig { .. }
                | CloseReason::Protocol(_)
                | CloseReason::OutboundOverflow { .. }
                | CloseReason::WriteStalled(_)
                | CloseReason::StorageFailed
                | CloseReason::MemoryLimit { .. }
                | CloseReason::ServerMemoryFull { .. }
                | CloseReason::InvalidSignatures(_)
        )
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::ClientClosed(d) => write!(f, "client closed the WebSocket ({d})"),
            CloseReason::Eof => f.write_str("client disconnected"),
            CloseReason::NoRequest => f.write_str("client disconnected before a complete request"),
            CloseReason::Io(k) => write!(f, "socket error: {k}"),
            CloseReason::HeaderTimeout(d) => write!(
                f,
                "no complete HTTP request head within {} ms (header timeout)",
                d.as_millis()
            ),
            CloseReason::Http { status, detail } => write!(f, "answered HTTP {status}: {detail}"),
            CloseReason::MessageTooBig { limit, detail } => write!(
                f,
                "incoming message too big (max-message-bytes is {limit}): {detail}"
            ),
            CloseReason::Protocol(d) => write!(f, "WebSocket protocol error: {d}"),
            CloseReason::OutboundOverflow { queued, limit } => write!(
                f,
                "outbound queue of {queued} bytes exceeds max-outbound-bytes ({limit}); client not reading?"
            ),
            CloseReason::StorageFailed => {
                f.write_str("storage commit failed; closing so the client reconnects and re-syncs")
            }
            CloseReason::ServerShutdown => f.write_str("server shutting down"),
            CloseReason::MemoryLimit { used, limit } => write!(
                f,
                "the connection holds {} KiB of server memory, more than its share of {} KiB (connection-memory)",
                used >> 10,
                limit >> 10
            ),
            CloseReason::ServerMemoryFull { used, limit } => write!(
                f,
                "all connections together hold more than client-memory ({} KiB); this one held the most ({} KiB)",
                limit >> 10,
                used >> 10
            ),
            CloseReason::InvalidSignatures(n) => {
                write!(f, "sent {n} invalid signatures; cut off")
            }
            CloseReason::WriteStalled(d) => write!(
                f,
                "no write progress for {} ms with output pending (write timeout); client not reading?",
                d.as_millis()
            ),
        }
    }
}

/// Close code (RFC 6455 §7.4.1) and a short reason for the failures the
/// client should hear about; other ends need no close frame.
pub fn close_code_for(reason: &CloseReason) -> Option<(CloseCode, &'static str)> {
    match reason {
        CloseReason::MessageTooBig { .. } => Some((CloseCode::Size, "message too big")),
        CloseReason::Protocol(_) => Some((CloseCode::Protocol, "protocol error")),
        CloseReason::StorageFailed => Some((CloseCode::Error, "storage error")),
        CloseReason::MemoryLimit { .. } => Some((CloseCode::Policy, "connection memory limit")),
        CloseReason::InvalidSignatures(_) => Some((CloseCode::Policy, "invalid signatures")),
        // 1013 Try Again Later: the server is overloaded, not the client.
        CloseReason::ServerMemoryFull { .. } => Some((CloseCode::Again, "server busy")),
        // 1001: clients reconnect (to this server once it is back).
        CloseReason::ServerShutdown => Some((CloseCode::Away, "server shutting down")),
        _ => None,
    }
}
