//! One client connection: a small state machine that owns its socket and
//! buffers and knows nothing of CoValues.
//!
//! ```text
//! Headers ──101──▶ Ws ──peer close──▶ Closing ──▶ (dropped)
//!    │              ├──error with a close code──▶ Linger ──▶ (dropped)
//!    │              └──go_away: drain output, close 1001──▶ Linger
//!    └──any other answer──────────────────────────▶ Linger ──▶ (dropped)
//! ```
//!
//! `Linger` writes a last response (an HTTP answer or a close frame), shuts
//! down the write side and discards input until the client hangs up, so the
//! client reads our answer instead of a reset.
//!
//! The reactor drives it with readiness (`on_readable`, `flush`), deadlines
//! (`on_timer`) and output (`queue_message`, `queue_ping`); every call
//! returns a [`Progress`] saying what the reactor must do next.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use crate::net::close::{CloseReason, close_code_for};
use crate::net::http;
pub use crate::net::out_queue::{MAX_BATCH_BYTES, OutQueue, ping_text};
use crate::net::proxy::{self, IpRange};
use crate::net::websocket::{ReadStep, WriteStep, WsStream};
use crate::sync::PeerId;

/// Per connection per turn, so one busy client cannot starve the others:
/// socket bytes read (a bigger message takes several turns) and messages.
pub const READ_BUDGET_BYTES: usize = 256 * 1024;
pub const READ_BUDGET_MESSAGES: usize = 64;
pub const WRITE_BUDGET_BYTES: u64 = 1 << 20;
/// How long a closing connection may take to deliver its last bytes.
pub const CLOSE_LINGER: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_outbound_bytes: usize,
    pub max_header_bytes: usize,
    pub header_timeout: Duration,
    pub write_timeout: Duration,
    /// Peers whose `X-Forwarded-For` names the client (see `proxy`).
    pub trusted_proxies: Vec<IpRange>,
}

/// What the reactor must do after a call into a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Wait for the next readiness event or deadline.
    Idle,
    /// Stopped at a budget with work left: call `on_readable` again next
    /// turn (edge-triggered polling will not report it again).
    Again,
    /// The session is over (log it, disconnect the peer) but the connection
    /// still delivers its last bytes; keep it until it returns `Close`.
    Ended(CloseReason),
    /// Drop the connection now.
    Close(CloseReason),
}

/// What a read delivered, in order.
#[derive(Debug)]
pub enum Event<'a> {
    /// The request head is complete (once per connection, before anything
    /// else). `client` is the address behind a trusted proxy, if any.
    Head { client: Option<IpAddr> },
    /// `GET /metrics`: fill in the exposition text.
    Metrics(&'a mut String),
    /// The WebSocket handshake completed (`path` has no query string).
    Upgraded { path: &'a str },
    /// One complete, non-empty text message.
    Text(&'a str),
}

struct WsState {
    ws: WsStream,
    out: OutQueue,
    /// Bytes of the frame last handed to tungstenite that may still sit in
    /// its buffer; 0 once a flush completed.
    in_flight: usize,
    /// A pong tungstenite queued on its own, not yet known to be written.
    control_pending: bool,
    /// When output last moved (or became pending): the write-stall clock.
    last_progress: Instant,
    /// The server is stopping: input is discarded, and once the output is
    /// out the connection closes with 1001.
    going_away: bool,
}

impl WsState {
    fn has_pending(&self) -> bool {
        !self.out.is_empty() || self.in_flight > 0 || self.control_pending
    }

    /// Going away and every queued frame handed to the kernel.
    fn ready_to_leave(&self) -> bool {
        self.going_away && self.out.is_empty() && self.in_flight == 0
    }

    fn flush(&mut self, now: Instant) -> Progress {
        let start = self.ws.bytes_written();
        let progress = loop {
            match self.ws.flush() {
                WriteStep::Done => {
                    self.in_flight = 0;
                    self.control_pending = false;
                }
                WriteStep::WouldBlock => break Progress::Idle,
                WriteStep::Closed(r) => return Progress::Close(r),
            }
            if self.ws.bytes_written() - start >= WRITE_BUDGET_BYTES {
                break if self.out.is_empty() {
                    Progress::Idle
                } else {
                    Progress::Again
                };
            }
            let Some(frame) = self.out.pop_front() else {
                break Progress::Idle;
            };
            self.in_flight = frame.len();
            match self.ws.write_text(frame) {
                WriteStep::Done => {}
                WriteStep::WouldBlock => break Progress::Idle,
                WriteStep::Closed(r) => return Progress::Close(r),
            }
        };
        if self.ws.bytes_written() != start {
            self.last_progress = now;
        }
        progress
    }
}

struct Linger {
    stream: TcpStream,
    out: Vec<u8>,
    pos: usize,
    shut: bool,
    deadline: Instant,
    reason: CloseReason,
    /// Bytes discarded while lingering (for the metrics).
    read: u64,
}

impl Linger {
    fn new(stream: TcpStream, out: Vec<u8>, now: Instant, reason: CloseReason) -> Linger {
        Linger {
            stream,
            out,
            pos: 0,
            shut: false,
            deadline: now + CLOSE_LINGER,
            reason,
            read: 0,
        }
    }

    /// Writes the rest of `out`, shuts down writing, then discards input
    /// until the client closes.
    fn step(&mut self) -> Progress {
        while let Some(rest) = self.out.get(self.pos..).filter(|r| !r.is_empty()) {
            match self.stream.write(rest) {
                Ok(0) => return Progress::Close(self.reason.clone()),
                Ok(n) => self.pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Idle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Progress::Close(self.reason.clone()),
            }
        }
        if !self.shut {
            self.shut = true;
            self.out = Vec::new();
            let _ = self.stream.shutdown(Shutdown::Write);
        }
        let mut scratch = [0u8; 4096];
        let mut budget = READ_BUDGET_BYTES;
        loop {
            match self.stream.read(&mut scratch) {
                Ok(0) => return Progress::Close(self.reason.clone()),
                Ok(n) if n >= budget => {
                    self.read += n as u64;
                    return Progress::Again;
                }
                Ok(n) => {
                    self.read += n as u64;
                    budget -= n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Idle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Progress::Close(self.reason.clone()),
            }
        }
    }
}

enum State {
    Headers {
        stream: TcpStream,
        buf: Vec<u8>,
        deadline: Instant,
    },
    Ws(WsState),
    /// The client sent a close frame; tungstenite's reply is being flushed.
    Closing {
        ws: WsStream,
        deadline: Instant,
        reason: CloseReason,
    },
    Linger(Linger),
    /// Only between two states inside one method.
    Gone,
}

pub struct Conn {
    /// Unique for the process lifetime; the engine's peer id once upgraded.
    pub id: PeerId,
    pub addr: SocketAddr,
    state: State,
    /// Bytes moved outside the WebSocket stream's own counters (request
    /// head, lingering, and a finished WebSocket's totals), for metrics.
    io_in: u64,
    io_out: u64,
}

impl Conn {
    pub fn new(
        stream: TcpStream,
        addr: SocketAddr,
        id: PeerId,
        now: Instant,
        limits: &Limits,
    ) -> Conn {
        Conn {
            id,
            addr,
            state: State::Headers {
                stream,
                buf: Vec::new(),
                deadline: now + limits.header_timeout,
            },
            io_in: 0,
            io_out: 0,
        }
    }

    /// Bytes read from this socket so far.
    pub fn bytes_in(&self) -> u64 {
        self.io_in
            + match &self.state {
                State::Ws(w) => w.ws.bytes_read(),
                State::Closing { ws, .. } => ws.bytes_read(),
                State::Linger(l) => l.read,
                State::Headers { .. } | State::Gone => 0,
            }
    }

    /// Bytes written to this socket so far.
    pub fn bytes_out(&self) -> u64 {
        self.io_out
            + match &self.state {
                State::Ws(w) => w.ws.bytes_written(),
                State::Closing { ws, .. } => ws.bytes_written(),
                State::Linger(l) => l.pos as u64,
                State::Headers { .. } | State::Gone => 0,
            }
    }

    /// Asks the connection to end because the server stops: a WebSocket
    /// delivers what is queued (acks of committed writes) and then closes
    /// with 1001; a connection still sending its request head is dropped;
    /// one already closing just finishes.
    pub fn go_away(&mut self, now: Instant) -> Progress {
        match &mut self.state {
            State::Headers { .. } => Progress::Close(CloseReason::ServerShutdown),
            State::Ws(w) => {
                w.going_away = true;
                self.flush(now)
            }
            State::Closing { .. } | State::Linger(_) | State::Gone => Progress::Idle,
        }
    }

    /// The socket, for (de)registration with the poller.
    pub fn stream_mut(&mut self) -> Option<&mut TcpStream> {
        match &mut self.state {
            State::Headers { stream, .. } => Some(stream),
            State::Ws(w) => Some(w.ws.stream_mut()),
            State::Closing { ws, .. } => Some(ws.stream_mut()),
            State::Linger(l) => Some(&mut l.stream),
            State::Gone => None,
        }
    }

    /// Whether this is a live WebSocket session (gets pings and messages).
    pub fn is_websocket(&self) -> bool {
        matches!(self.state, State::Ws(_))
    }

    /// Whether `flush` has something to write.
    pub fn wants_flush(&self) -> bool {
        match &self.state {
            State::Ws(w) => w.has_pending(),
            State::Closing { .. } => true,
            State::Linger(l) => !l.shut,
            State::Headers { .. } | State::Gone => false,
        }
    }

    /// Bytes of an incoming message read but not complete yet.
    pub fn partial_bytes(&self) -> usize {
        match &self.state {
            State::Ws(w) => w.ws.partial_bytes(),
            _ => 0,
        }
    }

    /// Bytes waiting to be written (the outbound cap counts these).
    pub fn queued_bytes(&self) -> usize {
        match &self.state {
            State::Ws(w) => w.out.bytes() + w.in_flight,
            _ => 0,
        }
    }

    /// The next time `on_timer` has something to check.
    pub fn next_deadline(&self, limits: &Limits) -> Option<Instant> {
        match &self.state {
            State::Headers { deadline, .. } | State::Closing { deadline, .. } => Some(*deadline),
            State::Linger(l) => Some(l.deadline),
            State::Ws(w) if w.has_pending() => Some(w.last_progress + limits.write_timeout),
            State::Ws(_) | State::Gone => None,
        }
    }

    pub fn on_timer(&mut self, now: Instant, limits: &Limits) -> Progress {
        match &mut self.state {
            State::Headers {
                stream, deadline, ..
            } if now >= *deadline => {
                // Best effort: a slowloris client gets no more of our time.
                if let Ok(n) = stream.write(&http::request_timeout()) {
                    self.io_out += n as u64;
                }
                Progress::Close(CloseReason::HeaderTimeout(limits.header_timeout))
            }
            State::Ws(w) if w.has_pending() && now >= w.last_progress + limits.write_timeout => {
                Progress::Close(CloseReason::WriteStalled(limits.write_timeout))
            }
            State::Closing {
                deadline, reason, ..
            } if now >= *deadline => Progress::Close(reason.clone()),
            State::Linger(l) if now >= l.deadline => Progress::Close(l.reason.clone()),
            _ => Progress::Idle,
        }
    }

    /// Reads what the socket has, within the per-turn budget, reporting
    /// the upgrade and each text message to `sink` in order.
    pub fn on_readable(
        &mut self,
        now: Instant,
        limits: &Limits,
        sink: &mut dyn FnMut(Event<'_>),
    ) -> Progress {
        match &mut self.state {
            State::Headers { .. } => self.read_headers(now, limits, sink),
            State::Ws(_) => self.read_ws(now, sink),
            // Only the pending close reply matters now.
            State::Closing { .. } => self.flush(now),
            State::Linger(l) => l.step(),
            State::Gone => Progress::Close(CloseReason::Io(io::ErrorKind::NotConnected)),
        }
    }

    /// Writes pending output within the per-turn write budget.
    pub fn flush(&mut self, now: Instant) -> Progress {
        match &mut self.state {
            State::Ws(w) => match w.flush(now) {
                Progress::Idle if w.ready_to_leave() => {
                    self.end_ws(Err(CloseReason::ServerShutdown), now)
                }
                p => p,
            },
            State::Closing { ws, reason, .. } => match ws.flush() {
                // A server's flush reports `Closed` once the reply is out.
                WriteStep::Closed(_) => Progress::Close(reason.clone()),
                WriteStep::Done | WriteStep::WouldBlock => Progress::Idle,
            },
            State::Linger(l) => l.step(),
            State::Headers { .. } => Progress::Idle,
            State::Gone => Progress::Close(CloseReason::Io(io::ErrorKind::NotConnected)),
        }
    }

    /// Queues one sync message. Ignored unless this is a live WebSocket (the
    /// engine may still address a peer that is closing). An error means the
    /// outbound cap is exceeded and the connection must be dropped.
    pub fn queue_message(
        &mut self,
        text: String,
        now: Instant,
        limits: &Limits,
    ) -> Result<(), CloseReason> {
        self.queue(now, limits, |out| out.push_message(text))
    }

    /// Queues a ping as its own frame, unless output is already waiting
    /// (which will re-arm the client's liveness timer just as well).
    pub fn queue_ping(
        &mut self,
        text: String,
        now: Instant,
        limits: &Limits,
    ) -> Result<(), CloseReason> {
        if self.wants_flush() {
            return Ok(());
        }
        self.queue(now, limits, |out| out.push_frame(text))
    }

    /// Ends the connection on the server's initiative (e.g. the engine
    /// asked for it after a failed commit), with a close frame if the
    /// reason has a close code.
    pub fn abort(&mut self, reason: CloseReason, now: Instant) -> Progress {
        if self.is_websocket() {
            self.end_ws(Err(reason), now)
        } else {
            Progress::Close(reason)
        }
    }

    fn queue(
        &mut self,
        now: Instant,
        limits: &Limits,
        push: impl FnOnce(&mut OutQueue),
    ) -> Result<(), CloseReason> {
        let State::Ws(w) = &mut self.state else {
            return Ok(());
        };
        if !w.has_pending() {
            w.last_progress = now; // the stall clock starts when output does
        }
        push(&mut w.out);
        let queued = w.out.bytes() + w.in_flight;
        if queued > limits.max_outbound_bytes {
            return Err(CloseReason::OutboundOverflow {
                queued,
                limit: limits.max_outbound_bytes,
            });
        }
        Ok(())
    }

    fn read_headers(
        &mut self,
        now: Instant,
        limits: &Limits,
        sink: &mut dyn FnMut(Event<'_>),
    ) -> Progress {
        let outcome = {
            let State::Headers { stream, buf, .. } = &mut self.state else {
                return Progress::Idle;
            };
            let mut chunk = [0u8; 2048];
            loop {
                match stream.read(&mut chunk) {
                    Ok(0) => return Progress::Close(CloseReason::NoRequest),
                    Ok(n) => {
                        self.io_in += n as u64;
                        let from = buf.len();
                        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                        if !http::may_be_complete(buf, from) && buf.len() < limits.max_header_bytes
                        {
                            continue;
                        }
                        let outcome = http::process(buf, limits.max_header_bytes);
                        if matches!(outcome, http::Outcome::Incomplete) {
                            continue;
                        }
                        // Only a trusted proxy's header is even read.
                        let client = if proxy::is_trusted(self.addr.ip(), &limits.trusted_proxies) {
                            let xff = http::forwarded_for(buf);
                            proxy::forwarded_client(self.addr.ip(), &xff, &limits.trusted_proxies)
                        } else {
                            None
                        };
                        sink(Event::Head { client });
                        match outcome {
                            http::Outcome::Incomplete => continue,
                            http::Outcome::Respond(r) => break Ok(r),
                            http::Outcome::Metrics => {
                                let mut body = String::new();
                                sink(Event::Metrics(&mut body));
                                break Ok(http::metrics_response(&body));
                            }
                            http::Outcome::Upgrade {
                                response,
                                head_len,
                                path,
                            } => {
                                let rest = buf.split_off(head_len.min(buf.len()));
                                break Err((response, rest, path));
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::Idle,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Progress::Close(CloseReason::Io(e.kind())),
                }
            }
        };
        let State::Headers { stream, .. } = std::mem::replace(&mut self.state, State::Gone) else {
            return Progress::Close(CloseReason::Io(io::ErrorKind::NotConnected));
        };
        match outcome {
            Ok(resp) => {
                let reason = CloseReason::Http {
                    status: resp.status,
                    detail: resp.detail,
                };
                self.state = State::Linger(Linger::new(stream, resp.bytes, now, reason.clone()));
                Progress::Ended(reason)
            }
            Err((response, rest, path)) => {
                let ws = WsStream::new(stream, response, rest, limits.max_message_bytes, self.id);
                let mut out = OutQueue::default();
                // Sent right away so the client counts the connection as
                // up without waiting for the first periodic ping.
                out.push_frame(ping_text());
                self.state = State::Ws(WsState {
                    ws,
                    out,
                    in_flight: 0,
                    control_pending: false,
                    last_progress: now,
                    going_away: false,
                });
                sink(Event::Upgraded { path: &path });
                // The client may have sent frames right behind its request.
                self.read_ws(now, sink)
            }
        }
    }

    fn read_ws(&mut self, now: Instant, sink: &mut dyn FnMut(Event<'_>)) -> Progress {
        let State::Ws(w) = &mut self.state else {
            return Progress::Idle;
        };
        let mut messages = 0usize;
        w.ws.set_read_allowance(READ_BUDGET_BYTES);
        let end = loop {
            if messages >= READ_BUDGET_MESSAGES {
                return Progress::Again;
            }
            match w.ws.read() {
                ReadStep::Text(t) => {
                    messages += 1;
                    // An empty frame only proves liveness (docs/protocol.md §1.2).
                    // While going away, nothing new is accepted: it could
                    // not be acknowledged before the close.
                    if !t.is_empty() && !w.going_away {
                        sink(Event::Text(t.as_str()));
                    }
                }
                ReadStep::Control => {
                    messages += 1;
                    w.control_pending = true;
                }
                ReadStep::Ignored => messages += 1,
                // Out of this turn's bytes, not out of data: read again.
                ReadStep::WouldBlock if w.ws.starved() => return Progress::Again,
                ReadStep::WouldBlock => return Progress::Idle,
                ReadStep::PeerClosing(r) => break Ok(r),
                ReadStep::Failed(r) => break Err(r),
            }
        };
        self.end_ws(end, now)
    }

    /// Ends a live WebSocket session: `Ok` when the client started the close
    /// handshake (answer it), `Err` when we give up on the connection.
    fn end_ws(&mut self, end: Result<CloseReason, CloseReason>, now: Instant) -> Progress {
        let State::Ws(w) = std::mem::replace(&mut self.state, State::Gone) else {
            return Progress::Close(end.unwrap_or_else(|r| r));
        };
        match end {
            Ok(reason) => {
                self.state = State::Closing {
                    ws: w.ws,
                    deadline: now + CLOSE_LINGER,
                    reason: reason.clone(),
                };
                Progress::Ended(reason)
            }
            // Tell the client why, if the stream still allows a close frame.
            Err(reason) if close_code_for(&reason).is_some() => {
                let (stream, bytes, (read, written)) = w.ws.into_close_bytes(&reason);
                self.io_in += read;
                self.io_out += written;
                self.state = State::Linger(Linger::new(stream, bytes, now, reason.clone()));
                Progress::Ended(reason)
            }
            Err(reason) => {
                // Dropped right here: keep its byte counts.
                self.io_in += w.ws.bytes_read();
                self.io_out += w.ws.bytes_written();
                Progress::Close(reason)
            }
        }
    }
}
