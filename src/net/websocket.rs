//! The WebSocket side of a connection: tungstenite over a non-blocking mio
//! socket, reduced to the few operations `conn` needs.
//!
//! tungstenite never blocks here: every `WouldBlock` from the socket comes
//! back as `Error::Io(WouldBlock)`. A frame handed to `write` stays in
//! tungstenite's buffer when the socket is full and goes out with a later
//! `flush`, which `conn` calls when the socket reports WRITABLE.

use std::io::{self, Read, Write};

use mio::net::TcpStream;
use tungstenite::Message;
use tungstenite::Utf8Bytes;
use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::{CloseFrame, Role, WebSocket, WebSocketConfig};

use crate::net::close::{CloseReason, close_code_for};
use crate::sync::PeerId;

/// tungstenite allocates this eagerly per connection; small, because idle
/// connections must stay cheap (a large message grows it on demand).
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// The TCP stream as tungstenite sees it. It writes its `prefix` (the 101
/// response) before anything else, so the handshake answer and the first
/// frames share one ordered path even if the 101 meets a full socket buffer.
/// It counts bytes written, which is how `conn` measures write progress,
/// and bytes read, for the metrics.
#[derive(Debug)]
pub struct Socket {
    stream: TcpStream,
    prefix: Vec<u8>,
    written: u64,
    read: u64,
    /// Bytes this turn's reads may still take: tungstenite reads until a
    /// message is complete, so without this one connection could take a
    /// whole 16 MiB message in one turn.
    allowance: usize,
    /// A read was refused because the allowance ran out (data may wait).
    starved: bool,
}

impl Socket {
    fn drain_prefix(&mut self) -> io::Result<()> {
        while !self.prefix.is_empty() {
            match self.stream.write(&self.prefix) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n as u64;
                    self.prefix.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.prefix = Vec::new(); // release the allocation
        Ok(())
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.allowance == 0 {
            self.starved = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let take = buf.len().min(self.allowance);
        loop {
            match self.stream.read(&mut buf[..take]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(n) => {
                    self.read += n as u64;
                    self.allowance -= n;
                    return Ok(n);
                }
                r => return r,
            }
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.drain_prefix()?;
        loop {
            match self.stream.write(buf) {
                Ok(n) => {
                    self.written += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// tungstenite's `flush` always ends here, even with nothing of its own
    /// buffered, so a pending 101 goes out with the next flush.
    fn flush(&mut self) -> io::Result<()> {
        self.drain_prefix()?;
        self.stream.flush()
    }
}

/// What one `read` call produced.
#[derive(Debug)]
pub enum ReadStep {
    /// A complete text message (one cojson frame).
    Text(Utf8Bytes),
    /// A control frame: tungstenite queued any reply (pong), so the caller
    /// must flush soon.
    Control,
    /// Something to skip (a binary message): keep reading.
    Ignored,
    /// The socket has no more data for now.
    WouldBlock,
    /// The peer started the close handshake; tungstenite queued the reply,
    /// which the next `flush` sends.
    PeerClosing(CloseReason),
    /// The connection is unusable; drop it (after `into_close_bytes`).
    Failed(CloseReason),
}

/// Result of pushing output towards the socket.
#[derive(Debug)]
pub enum WriteStep {
    /// Everything handed over so far is in the kernel.
    Done,
    /// The socket is full; the rest waits in tungstenite for WRITABLE.
    WouldBlock,
    /// The connection is finished (close handshake done, or failed).
    Closed(CloseReason),
}

/// Per-connection WebSocket settings: small buffers, explicit size limits.
pub fn ws_config(max_message_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        // 0 = every frame is written to the socket as soon as it is handed
        // over. `conn` batches messages into frames itself, and tungstenite's
        // out buffer never shrinks, so keeping it near one frame keeps
        // connections small.
        .write_buffer_size(0)
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

pub struct WsStream {
    ws: WebSocket<Socket>,
    max_message_bytes: usize,
    /// Socket bytes of the messages delivered so far (payload plus an
    /// estimate of frame headers): what was read beyond this sits in
    /// tungstenite's buffers, part of a message not complete yet.
    delivered: u64,
    /// For log lines.
    id: PeerId,
    /// Only the first binary message per connection is logged, so a client
    /// cannot flood the log.
    binary_logged: bool,
}

impl WsStream {
    /// Wraps `stream` right after a valid upgrade request. `response` is the
    /// 101 (written before any frame); `already_read` holds bytes the client
    /// sent after its request head, which are already WebSocket data.
    pub fn new(
        stream: TcpStream,
        response: Vec<u8>,
        already_read: Vec<u8>,
        max_message_bytes: usize,
        id: PeerId,
    ) -> WsStream {
        let socket = Socket {
            stream,
            prefix: response,
            written: 0,
            read: 0,
            allowance: 0,
            starved: false,
        };
        let config = Some(ws_config(max_message_bytes));
        let ws = if already_read.is_empty() {
            WebSocket::from_raw_socket(socket, Role::Server, config)
        } else {
            WebSocket::from_partially_read(socket, already_read, Role::Server, config)
        };
        WsStream {
            ws,
            // Bytes the client sent behind its request head were read with
            // the head; the few they add to `delivered` only make the
            // partial count err low by less than one read.
            delivered: 0,
            max_message_bytes,
            id,
            binary_logged: false,
        }
    }

    pub fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.ws.get_mut().stream
    }

    /// Total bytes handed to the kernel on this connection (101 included).
    pub fn bytes_written(&self) -> u64 {
        self.ws.get_ref().written
    }

    /// Total bytes read from the socket since the upgrade.
    pub fn bytes_read(&self) -> u64 {
        self.ws.get_ref().read
    }

    /// Lets the next reads take up to `bytes` from the socket.
    pub fn set_read_allowance(&mut self, bytes: usize) {
        let s = self.ws.get_mut();
        s.allowance = bytes;
        s.starved = false;
    }

    /// Whether the last `WouldBlock` came from the allowance running out
    /// (the socket may still hold data), not from the socket.
    pub fn starved(&self) -> bool {
        self.ws.get_ref().starved
    }

    /// Bytes read from the socket that are not part of a delivered message
    /// yet (an incomplete message in tungstenite's buffers).
    pub fn partial_bytes(&self) -> usize {
        self.bytes_read().saturating_sub(self.delivered) as usize
    }

    /// Reads at most one message; `conn` loops under its fairness budget.
    pub fn read(&mut self) -> ReadStep {
        let msg = match self.ws.read() {
            Ok(m) => m,
            Err(e) => return self.read_error(e),
        };
        // Payload plus the longest frame header (a 64-bit length and a mask).
        self.delivered += msg.len() as u64 + 14;
        match msg {
            Message::Text(t) => ReadStep::Text(t),
            Message::Binary(b) => {
                if !self.binary_logged {
                    self.binary_logged = true;
                    log::warn!(
                        "connection #{}: ignoring a binary WebSocket message of {} bytes (cojson sends text only)",
                        self.id.0,
                        b.len()
                    );
                }
                ReadStep::Ignored
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => ReadStep::Control,
            Message::Close(frame) => {
                let why = match frame {
                    Some(f) if f.reason.is_empty() => format!("code {}", u16::from(f.code)),
                    Some(f) => format!("code {} {:?}", u16::from(f.code), f.reason.as_str()),
                    None => "no code".to_string(),
                };
                ReadStep::PeerClosing(CloseReason::ClientClosed(why))
            }
        }
    }

    fn read_error(&mut self, e: WsError) -> ReadStep {
        match e {
            WsError::Io(e) if e.kind() == io::ErrorKind::WouldBlock => ReadStep::WouldBlock,
            WsError::Io(e) => ReadStep::Failed(CloseReason::Io(e.kind())),
            WsError::ConnectionClosed | WsError::AlreadyClosed => {
                ReadStep::Failed(CloseReason::ClientClosed("close handshake done".into()))
            }
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                ReadStep::Failed(CloseReason::Eof)
            }
            WsError::Capacity(e) => ReadStep::Failed(CloseReason::MessageTooBig {
                limit: self.max_message_bytes,
                detail: e.to_string(),
            }),
            WsError::Utf8(e) => ReadStep::Failed(CloseReason::Protocol(format!(
                "text message is not valid UTF-8 ({e})"
            ))),
            // Display of Error::Protocol repeats "WebSocket protocol error".
            WsError::Protocol(p) => ReadStep::Failed(CloseReason::Protocol(p.to_string())),
            other => ReadStep::Failed(CloseReason::Protocol(other.to_string())),
        }
    }

    /// Hands one text frame to tungstenite and tries to write it out.
    pub fn write_text(&mut self, frame: String) -> WriteStep {
        match self.ws.write(Message::Text(frame.into())) {
            Ok(()) => WriteStep::Done,
            Err(e) => write_error(e),
        }
    }

    /// Writes out whatever tungstenite holds (frames, pongs, close replies)
    /// and any part of the 101 not yet written.
    pub fn flush(&mut self) -> WriteStep {
        match self.ws.flush() {
            Ok(()) => WriteStep::Done,
            Err(e) => write_error(e),
        }
    }

    /// Ends a connection we gave up on: tries once to flush what tungstenite
    /// holds, then returns the stream plus, if that flush left the byte
    /// stream at a frame boundary, a close frame telling the client why.
    /// (Frames cannot be interleaved, so after a partial write no close
    /// frame is possible.) Also returns the bytes (read, written) so far.
    pub fn into_close_bytes(mut self, reason: &CloseReason) -> (TcpStream, Vec<u8>, (u64, u64)) {
        let clean = self.ws.flush().is_ok();
        let socket = self.ws.into_inner();
        let counts = (socket.read, socket.written);
        let mut bytes = Vec::new();
        if clean && let Some((code, why)) = close_code_for(reason) {
            let frame = Frame::close(Some(CloseFrame {
                code,
                reason: why.into(),
            }));
            if frame.format(&mut bytes).is_err() {
                bytes.clear();
            }
        }
        (socket.stream, bytes, counts)
    }
}

fn write_error(e: WsError) -> WriteStep {
    match e {
        WsError::Io(e) if e.kind() == io::ErrorKind::WouldBlock => WriteStep::WouldBlock,
        WsError::Io(e) => WriteStep::Closed(CloseReason::Io(e.kind())),
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            WriteStep::Closed(CloseReason::ClientClosed("close handshake done".into()))
        }
        WsError::Protocol(ProtocolError::SendAfterClosing) => {
            WriteStep::Closed(CloseReason::ClientClosed("closing".into()))
        }
        other => WriteStep::Closed(CloseReason::Protocol(other.to_string())),
    }
}
