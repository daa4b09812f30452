//! The event loop: one thread, one mio `Poll`, every connection in a slab.
//!
//! Each turn (Redis's `ae.c` + `beforeSleep` is the model):
//! 1. wait for readiness, at most until the nearest deadline;
//! 2. accept new sockets; read ready connections within a per-connection
//!    budget, feeding complete text messages to the engine;
//! 3. read again the connections that stopped at their budget last turn;
//! 4. run due deadlines (header timeout, write stall, close linger, pings);
//! 5. before sleeping: `engine.end_turn` applies the turn's messages and
//!    commits storage; connections it asks to close are closed; then each
//!    connection with output waiting and room in its socket queue pulls
//!    replies from the engine (produced as it drains, never in full up
//!    front), and dirty connections are flushed;
//! 6. every so often, the memory all connections make the server hold is
//!    added up and enforced (see `MemoryWatch`).
//!
//! SIGTERM/SIGINT arrive as events too (`signals`). The listener is closed
//! at once; after that turn's commit, every WebSocket delivers its queued
//! acks and closes with 1001; `run` returns when all connections are gone
//! or the shutdown timeout passed, and the caller closes storage.
//!
//! mio is edge-triggered: a socket that still holds data after we stopped
//! reading will not be reported again, so such connections go on the
//! `again` list and the next poll does not sleep.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use crate::net::close::CloseReason;
use crate::net::conn::{Conn, Event, Limits, Progress};
use crate::net::out_queue::ping_text;
use crate::net::proxy;
use crate::net::signals::{Shutdown, StopSignals};
use crate::net::stats::{Live, NetStats};
use crate::sync::{CloseWhy, Engine, PeerId};

/// The reference server pings every 1.5 s (docs/protocol.md §1.4).
pub const PING_INTERVAL: Duration = Duration::from_millis(1500);
/// After a failed accept (out of file descriptors), wait before retrying.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
const LISTENER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);
const EVENTS_PER_POLL: usize = 1024;

#[derive(Debug, Clone)]
pub struct Options {
    pub limits: Limits,
    pub ping_interval: Duration,
    /// How long connections get to close after a stop signal.
    pub shutdown_timeout: Duration,
    /// What one connection may make the server hold (its subscriptions,
    /// held content, an incoming message): above it, it is closed (1008).
    pub connection_memory: usize,
    /// What all connections together may make the server hold: above it,
    /// reading pauses, then the biggest connection is closed (1013).
    pub client_memory: usize,
}

/// What the loop asks of the service around it: the service manager's
/// notifications (systemd's `sd_notify`) and the `/metrics` body. Kept
/// behind a trait so the network layer does not depend on the service.
pub trait Hooks {
    /// Sends state lines (`READY=1`, `WATCHDOG=1`, ...) to the manager.
    fn notify(&mut self, state: &str);
    /// How often the loop must send `WATCHDOG=1` (None: never).
    fn watchdog_interval(&self) -> Option<Duration>;
    /// The body of `GET /metrics`.
    fn metrics(&mut self, net: &NetStats, live: Live, engine: &Engine) -> String;
}

/// No service manager and an empty `/metrics` (tests, embedding).
pub struct NoHooks;

impl Hooks for NoHooks {
    fn notify(&mut self, _state: &str) {}
    fn watchdog_interval(&self) -> Option<Duration> {
        None
    }
    fn metrics(&mut self, _net: &NetStats, _live: Live, _engine: &Engine) -> String {
        String::new()
    }
}

/// `Vec<Option<T>>` plus a free list. Freed slots are quarantined until
/// the end of the turn, so an event later in the same batch that names a
/// just-closed token finds an empty slot, never a new connection.
struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<usize>,
    quarantine: Vec<usize>,
}

impl<T> Slab<T> {
    fn new() -> Self {
        Slab {
            items: Vec::new(),
            free: Vec::new(),
            quarantine: Vec::new(),
        }
    }

    fn insert(&mut self, value: T) -> usize {
        match self.free.pop() {
            Some(i) => {
                if let Some(slot) = self.items.get_mut(i) {
                    *slot = Some(value);
                }
                i
            }
            None => {
                self.items.push(Some(value));
                self.items.len() - 1
            }
        }
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.items.get_mut(i).and_then(Option::as_mut)
    }

    fn remove(&mut self, i: usize) -> Option<T> {
        let v = self.items.get_mut(i)?.take();
        if v.is_some() {
            self.quarantine.push(i);
        }
        v
    }

    fn recycle(&mut self) {
        self.free.append(&mut self.quarantine);
    }

    fn capacity(&self) -> usize {
        self.items.len()
    }
}

impl Slab<Entry> {
    /// The entry in `slot` if it still holds connection `id` (lists and
    /// timers name connections by both, as slots are reused).
    fn live(&mut self, slot: usize, id: PeerId) -> Option<&mut Entry> {
        self.get_mut(slot).filter(|e| e.conn.id == id)
    }
}

struct Entry {
    conn: Conn,
    /// Earliest deadline already in the timer heap for this connection.
    armed: Option<Instant>,
    in_again: bool,
    in_dirty: bool,
    /// The close line was logged and the engine told.
    reported: bool,
    /// Turn in which it was last read (so it is read at most once a turn).
    read_turn: u64,
    /// The client behind a trusted proxy (`X-Forwarded-For`).
    client: Option<IpAddr>,
    /// The "opened" line was logged (deferred behind a trusted proxy until
    /// the request head names the client).
    open_logged: bool,
    /// Socket byte counts already added to the metrics.
    seen_in: u64,
    seen_out: u64,
    /// Reading stopped because too much output or work waits for this
    /// client.
    paused: bool,
    /// Listed in `Reactor::pulls` (output waits in the engine).
    in_pulls: bool,
}

/// Flow control: a connection with more than this much output or work
/// waiting (in its socket queue and in the engine) is not read (its
/// requests stay in the kernel's buffers) until half of it is gone. A
/// client asking for a lot is served at the pace it reads.
const READ_PAUSE_BYTES: usize = 4 << 20;
/// Output is pulled from the engine when a connection's socket queue is
/// below `PULL_LOW`, up to about `PULL_HIGH`.
const PULL_LOW: usize = 256 << 10;
const PULL_HIGH: usize = 1 << 20;
/// The memory of all connections is added up at least this often, and
/// after this many bytes were read since the last count.
const MEMORY_SCAN_INTERVAL: Duration = Duration::from_millis(100);
const MEMORY_SCAN_BYTES: usize = 8 << 20;
/// How often freed memory is handed back to the OS after activity.
const TRIM_INTERVAL: Duration = Duration::from_secs(5);

/// Watches what all connections make the server hold: socket queues,
/// incomplete incoming messages, and the engine's per-peer state and work.
struct MemoryWatch {
    next_scan: Instant,
    read_since_scan: usize,
    /// The last count was above 90 % of `client_memory`: nobody is read
    /// until work and output drain below 80 %.
    paused: bool,
    /// The last count, for `/metrics`.
    total: usize,
}

impl Entry {
    /// Who this connection is, for log lines.
    fn who(&self) -> String {
        match self.client {
            Some(c) => format!("{c} via proxy {}", self.conn.addr),
            None => self.conn.addr.to_string(),
        }
    }

    fn log_open(&mut self) {
        if !self.open_logged {
            self.open_logged = true;
            log::info!("connection #{} opened from {}", self.conn.id.0, self.who());
        }
    }
}

pub struct Reactor {
    poll: Poll,
    /// `None` once shutting down: new connections are refused by the OS.
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    opts: Options,
    slab: Slab<Entry>,
    /// Upgraded connections, for routing the engine's output.
    peers: HashMap<PeerId, usize>,
    next_id: u64,
    /// (deadline, slot, connection id); stale entries are skipped when due.
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// Stopped at the read budget: read again next turn.
    again: Vec<(usize, PeerId)>,
    /// Output waiting: flush in the before-sleep step.
    dirty: Vec<(usize, PeerId)>,
    /// Stopped at the write budget: flush again next turn.
    flush_again: Vec<(usize, PeerId)>,
    /// Connections whose peer has output waiting in the engine.
    pulls: Vec<(usize, PeerId)>,
    /// Work is left that should not wait for an event: the next poll does
    /// not sleep.
    hurry: bool,
    memory: MemoryWatch,
    next_trim: Instant,
    activity_since_trim: bool,
    next_ping: Instant,
    accept_paused_until: Option<Instant>,
    turn: u64,
    pulled: Vec<String>,
    /// Live entries in the slab.
    open: usize,
    stats: NetStats,
    signals: Option<StopSignals>,
    shutdown: Option<Shutdown>,
    hooks: Box<dyn Hooks>,
    next_watchdog: Option<Instant>,
}

impl Reactor {
    /// Binds the listening socket (port 0 picks a free port).
    pub fn bind(addr: SocketAddr, opts: Options) -> io::Result<Reactor> {
        let mut listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Reactor {
            poll,
            listener: Some(listener),
            local_addr,
            next_ping: Instant::now() + opts.ping_interval,
            stats: NetStats::default(),
            opts,
            slab: Slab::new(),
            peers: HashMap::new(),
            next_id: 1,
            timers: BinaryHeap::new(),
            again: Vec::new(),
            dirty: Vec::new(),
            flush_again: Vec::new(),
            pulls: Vec::new(),
            hurry: false,
            memory: MemoryWatch {
                next_scan: Instant::now(),
                read_since_scan: 0,
                paused: false,
                total: 0,
            },
            next_trim: Instant::now() + TRIM_INTERVAL,
            activity_since_trim: false,
            accept_paused_until: None,
            turn: 0,
            pulled: Vec::new(),
            open: 0,
            signals: None,
            shutdown: None,
            hooks: Box::new(NoHooks),
            next_watchdog: None,
        })
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }

    /// Makes SIGTERM and SIGINT start a clean shutdown instead of killing
    /// the process. Process-wide, so only the binary calls it.
    pub fn handle_stop_signals(&mut self) -> io::Result<()> {
        let mut signals = StopSignals::install()?;
        signals.register(self.poll.registry(), SIGNALS)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// The service around the loop: readiness, stopping and liveness for
    /// systemd (`Type=notify`), and the `/metrics` body.
    pub fn set_hooks(&mut self, hooks: Box<dyn Hooks>) {
        self.next_watchdog = hooks.watchdog_interval().map(|i| Instant::now() + i);
        self.hooks = hooks;
    }

    /// Serves until a stop signal's shutdown completes (then the caller
    /// closes storage); returns early only if polling itself fails.
    pub fn run(&mut self, engine: &mut Engine) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        // Storage is open and the socket listens: clients can be served.
        self.hooks
            .notify(&format!("READY=1\nSTATUS=listening on {}", self.local_addr));
        loop {
            self.turn(engine, &mut events)?;
            if self.finish_shutdown(engine) {
                return Ok(());
            }
        }
    }

    /// One loop turn (public so an in-process test can drive the loop).
    pub fn turn(&mut self, engine: &mut Engine, events: &mut Events) -> io::Result<()> {
        self.turn += 1;
        let timeout = self.poll_timeout(Instant::now());
        match self.poll.poll(events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => events.clear(),
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        self.hurry = false;
        for (slot, id) in std::mem::take(&mut self.flush_again) {
            self.mark_dirty(slot, id);
        }
        let again = std::mem::take(&mut self.again);
        for &(slot, id) in &again {
            if let Some(e) = self.slab.live(slot, id) {
                e.in_again = false;
            }
        }
        for event in events.iter() {
            match event.token() {
                LISTENER => self.accept_all(now),
                SIGNALS => self.on_signals(now),
                Token(slot) => {
                    // Errors and hang-ups surface as read results.
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        self.read(slot, now, engine);
                    }
                    // A spurious or stale event finds no entry: ignored.
                    if event.is_writable()
                        && let Some(e) = self.slab.get_mut(slot)
                        && e.conn.wants_flush()
                    {
                        let id = e.conn.id;
                        self.mark_dirty(slot, id);
                    }
                }
            }
        }
        for (slot, id) in again {
            let turn = self.turn;
            if self
                .slab
                .live(slot, id)
                .is_some_and(|e| e.read_turn != turn)
            {
                self.read(slot, now, engine);
            }
        }
        self.run_timers(now, engine);
        self.before_sleep(now, engine);
        self.slab.recycle();
        Ok(())
    }

    fn poll_timeout(&self, now: Instant) -> Duration {
        if !self.again.is_empty() || !self.flush_again.is_empty() || self.hurry {
            return Duration::ZERO;
        }
        let mut next = self.next_ping;
        if let Some(Reverse((t, _, _))) = self.timers.peek() {
            next = next.min(*t);
        }
        if let Some(t) = self.accept_paused_until {
            next = next.min(t);
        }
        if let Some(t) = self.next_watchdog {
            next = next.min(t);
        }
        if let Some(s) = &self.shutdown {
            next = next.min(s.deadline);
        }
        next.saturating_duration_since(now)
    }

    fn accept_all(&mut self, now: Instant) {
        if self.accept_paused_until.is_some() {
            return; // the retry timer resumes accepting
        }
        loop {
            let Some(listener) = &self.listener else {
                return; // shutting down
            };
            let (stream, addr) = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    // Typically EMFILE: the backlog stays queued, and
                    // edge-triggered polling would not report it again.
                    log::error!("accept failed: {e}; retrying in {ACCEPT_RETRY:?}");
                    self.accept_paused_until = Some(now + ACCEPT_RETRY);
                    return;
                }
            };
            // Small frames (acks, pings) must not wait for Nagle.
            let _ = stream.set_nodelay(true);
            let id = PeerId(self.next_id);
            self.next_id += 1;
            let slot = self.slab.insert(Entry {
                conn: Conn::new(stream, addr, id, now, &self.opts.limits),
                armed: None,
                in_again: false,
                paused: false,
                in_pulls: false,
                in_dirty: false,
                reported: false,
                read_turn: 0,
                client: None,
                open_logged: false,
                seen_in: 0,
                seen_out: 0,
            });
            self.open += 1;
            self.stats.connections_total += 1;
            let registered = match self.slab.get_mut(slot).and_then(|e| e.conn.stream_mut()) {
                Some(s) => self.poll.registry().register(
                    s,
                    Token(slot),
                    Interest::READABLE | Interest::WRITABLE,
                ),
                None => Err(io::ErrorKind::NotConnected.into()),
            };
            if let Err(e) = registered {
                log::error!("cannot register connection from {addr}: {e}");
                self.slab.remove(slot);
                self.open -= 1;
                continue; // dropping the stream closes it
            }
            // Behind a trusted proxy the client is named by the request
            // head; the line waits for it (or for the close).
            if !proxy::is_trusted(addr.ip(), &self.opts.limits.trusted_proxies)
                && let Some(e) = self.slab.get_mut(slot)
            {
                e.log_open();
            }
            self.arm(slot);
        }
    }

    fn read(&mut self, slot: usize, now: Instant, engine: &mut Engine) {
        let global_pause = self.memory.paused;
        let Some(entry) = self.slab.get_mut(slot) else {
            return;
        };
        let waiting = entry.conn.queued_bytes() + engine.peer_memory(entry.conn.id).1;
        if waiting > READ_PAUSE_BYTES || (global_pause && entry.conn.is_websocket()) {
            if !entry.paused {
                log::debug!(
                    "connection #{}: {} bytes of output and work wait; not reading until they drain",
                    entry.conn.id.0,
                    waiting
                );
            }
            entry.paused = true;
            return;
        }
        entry.read_turn = self.turn;
        let peer = entry.conn.id;
        let peers = &mut self.peers;
        let stats = &mut self.stats;
        let hooks = &mut self.hooks;
        let open = self.open;
        let mut head = None;
        let progress = entry
            .conn
            .on_readable(now, &self.opts.limits, &mut |ev| match ev {
                Event::Head { client } => head = Some(client),
                Event::Metrics(body) => {
                    let live = Live {
                        connections_open: open,
                        websockets_open: peers.len(),
                    };
                    *body = hooks.metrics(stats, live, engine);
                }
                Event::Upgraded { path } => {
                    log::debug!("connection #{} upgraded to WebSocket on {path}", peer.0);
                    peers.insert(peer, slot);
                    engine.connect(peer);
                }
                Event::Text(text) => {
                    stats.messages_in.count_frame(text);
                    engine.receive_frame(peer, text);
                }
            });
        if let Some(client) = head {
            entry.client = client;
            entry.log_open();
        }
        self.after(slot, progress, true, engine);
    }

    /// Adds a connection's new socket bytes to the metrics.
    fn account_io(&mut self, slot: usize) {
        if let Some(e) = self.slab.get_mut(slot) {
            let (i, o) = (e.conn.bytes_in(), e.conn.bytes_out());
            let read = i.saturating_sub(e.seen_in);
            self.stats.bytes_in += read;
            self.stats.bytes_out += o.saturating_sub(e.seen_out);
            (e.seen_in, e.seen_out) = (i, o);
            self.memory.read_since_scan += read as usize;
            if read > 0 {
                self.activity_since_trim = true;
            }
        }
    }

    /// Acts on what a connection reported, then schedules its flush and
    /// its next deadline.
    fn after(
        &mut self,
        slot: usize,
        progress: Progress,
        flush_if_pending: bool,
        engine: &mut Engine,
    ) {
        self.account_io(slot);
        match progress {
            Progress::Idle => {}
            Progress::Again => {
                if let Some(e) = self.slab.get_mut(slot)
                    && !e.in_again
                {
                    e.in_again = true;
                    let id = e.conn.id;
                    self.again.push((slot, id));
                }
            }
            Progress::Ended(reason) => self.report_close(slot, &reason, engine),
            Progress::Close(reason) => {
                self.report_close(slot, &reason, engine);
                self.remove(slot, engine);
                return;
            }
        }
        let Some(e) = self.slab.get_mut(slot) else {
            return;
        };
        if flush_if_pending && e.conn.wants_flush() {
            let id = e.conn.id;
            self.mark_dirty(slot, id);
        }
        self.arm(slot);
    }

    fn mark_dirty(&mut self, slot: usize, id: PeerId) {
        if let Some(e) = self.slab.live(slot, id)
            && !e.in_dirty
        {
            e.in_dirty = true;
            self.dirty.push((slot, id));
        }
    }

    /// Logs the close line once and tells the engine the peer is gone.
    fn report_close(&mut self, slot: usize, reason: &CloseReason, engine: &mut Engine) {
        let Some(e) = self.slab.get_mut(slot) else {
            return;
        };
        if e.reported {
            return;
        }
        e.reported = true;
        e.log_open();
        let (id, who) = (e.conn.id, e.who());
        if reason.is_abnormal() {
            log::warn!("connection #{} from {who} closed: {reason}", id.0);
        } else {
            log::info!("connection #{} from {who} closed: {reason}", id.0);
        }
        if self.peers.remove(&id).is_some() {
            engine.disconnect(id);
        }
    }

    /// Drops a connection (closing its socket).
    fn remove(&mut self, slot: usize, engine: &mut Engine) {
        self.account_io(slot);
        if let Some(mut e) = self.slab.remove(slot) {
            self.open -= 1;
            if let Some(s) = e.conn.stream_mut() {
                let _ = self.poll.registry().deregister(s);
            }
            // Normally done by report_close already; never leave the engine
            // with a peer whose socket is gone.
            if self.peers.remove(&e.conn.id).is_some() {
                engine.disconnect(e.conn.id);
            }
        }
    }

    /// Makes sure the heap holds an entry no later than the connection's
    /// next deadline (earlier, stale entries just cause a no-op check).
    fn arm(&mut self, slot: usize) {
        let Some(e) = self.slab.get_mut(slot) else {
            return;
        };
        if let Some(d) = e.conn.next_deadline(&self.opts.limits)
            && e.armed.is_none_or(|a| d < a)
        {
            e.armed = Some(d);
            self.timers.push(Reverse((d, slot, e.conn.id.0)));
        }
    }

    fn run_timers(&mut self, now: Instant, engine: &mut Engine) {
        while let Some(&Reverse((t, slot, id))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(e) = self.slab.live(slot, PeerId(id)) else {
                continue;
            };
            if e.armed == Some(t) {
                e.armed = None;
            }
            let progress = e.conn.on_timer(now, &self.opts.limits);
            self.after(slot, progress, false, engine);
        }
        if let Some(t) = self.next_watchdog
            && now >= t
        {
            // From the loop itself: a loop stuck in a long commit or a
            // busy spin stops these, and systemd restarts the service.
            self.hooks.notify("WATCHDOG=1");
            let interval = self.hooks.watchdog_interval().unwrap_or(Duration::MAX);
            self.next_watchdog = now.checked_add(interval);
        }
        if self.shutdown.is_some() {
            return; // no pings or accepts: everything is closing
        }
        if now >= self.next_ping {
            self.send_pings(now, engine);
            // Keep the cadence; after a stall, skip missed ticks rather
            // than sending pings back to back.
            let next = self.next_ping + self.opts.ping_interval;
            self.next_ping = if next > now {
                next
            } else {
                now + self.opts.ping_interval
            };
        }
        if self.accept_paused_until.is_some_and(|t| now >= t) {
            self.accept_paused_until = None;
            self.accept_all(now);
        }
    }

    fn send_pings(&mut self, now: Instant, engine: &mut Engine) {
        let text = ping_text();
        for slot in 0..self.slab.capacity() {
            let Some(e) = self.slab.get_mut(slot) else {
                continue;
            };
            if !e.conn.is_websocket() {
                continue;
            }
            let id = e.conn.id;
            match e.conn.queue_ping(text.clone(), now, &self.opts.limits) {
                Ok(()) => {
                    self.mark_dirty(slot, id);
                    self.arm(slot);
                }
                Err(reason) => self.after(slot, Progress::Close(reason), false, engine),
            }
        }
    }

    /// Apply and commit the turn, close what the engine asks, pull output
    /// for connections with room, flush.
    fn before_sleep(&mut self, now: Instant, engine: &mut Engine) {
        let outcome = engine.end_turn();
        self.hurry |= outcome.more;
        for (peer, why) in outcome.closes {
            let reason = match why {
                CloseWhy::StorageFailed => CloseReason::StorageFailed,
                CloseWhy::InvalidSignatures(n) => CloseReason::InvalidSignatures(n),
            };
            self.close_peer(peer, reason, now, engine);
        }
        self.pull_all(now, engine);
        // A stop signal arrived: now that this turn's acks are queued behind
        // its commit, every connection is asked to leave (once).
        if let Some(s) = &mut self.shutdown
            && !s.connections_told
        {
            s.connections_told = true;
            for slot in 0..self.slab.capacity() {
                let Some(e) = self.slab.get_mut(slot) else {
                    continue;
                };
                let progress = e.conn.go_away(now);
                self.after(slot, progress, true, engine);
            }
        }
        self.flush_dirty(now, engine);
        if now >= self.memory.next_scan || self.memory.read_since_scan >= MEMORY_SCAN_BYTES {
            self.scan_memory(now, engine);
        }
        if now >= self.next_trim {
            self.next_trim = now + TRIM_INTERVAL;
            if std::mem::take(&mut self.activity_since_trim) {
                crate::net::trim::release_free_memory();
            }
        }
    }

    /// Closes a peer's connection on the engine's or the memory watch's
    /// initiative, with a close frame saying why.
    fn close_peer(&mut self, peer: PeerId, reason: CloseReason, now: Instant, engine: &mut Engine) {
        if let Some(&slot) = self.peers.get(&peer)
            && let Some(e) = self.slab.live(slot, peer)
        {
            let progress = e.conn.abort(reason, now);
            self.after(slot, progress, true, engine);
        }
    }

    /// Connections whose peer has output in the engine and room in their
    /// socket queue take it, up to about `PULL_HIGH` queued.
    fn pull_all(&mut self, now: Instant, engine: &mut Engine) {
        let mut pulls = std::mem::take(&mut self.pulls);
        for peer in engine.take_output_ready() {
            if let Some(&slot) = self.peers.get(&peer)
                && let Some(e) = self.slab.live(slot, peer)
                && !e.in_pulls
            {
                e.in_pulls = true;
                pulls.push((slot, peer));
            }
        }
        let mut pulled = std::mem::take(&mut self.pulled);
        let mut keep = Vec::with_capacity(pulls.len());
        let mut overflowed = Vec::new();
        for (slot, peer) in pulls {
            let Some(e) = self.slab.live(slot, peer) else {
                continue;
            };
            let queued = e.conn.queued_bytes();
            if queued >= PULL_LOW {
                keep.push((slot, peer)); // waits for the socket to drain
                continue;
            }
            let more = engine.pull(peer, PULL_HIGH - queued, &mut pulled);
            let mut failed = None;
            for text in pulled.drain(..) {
                self.stats.messages_out.count(&text);
                if failed.is_none()
                    && let Err(reason) = e.conn.queue_message(text, now, &self.opts.limits)
                {
                    failed = Some(reason);
                }
            }
            if !e.in_dirty {
                e.in_dirty = true;
                self.dirty.push((slot, peer));
            }
            e.in_pulls = more && failed.is_none();
            // Paused by the turn's budget rather than by the queue: again soon.
            if e.in_pulls && e.conn.queued_bytes() < PULL_LOW {
                self.hurry = true;
            }
            if let Some(reason) = failed {
                overflowed.push((slot, reason));
            } else if more {
                keep.push((slot, peer));
            }
        }
        for (slot, reason) in overflowed {
            self.after(slot, Progress::Close(reason), false, engine);
        }
        self.pulled = pulled;
        self.pulls = keep;
    }

    fn flush_dirty(&mut self, now: Instant, engine: &mut Engine) {
        let dirty = std::mem::take(&mut self.dirty);
        for (slot, id) in dirty {
            let Some(e) = self.slab.live(slot, id) else {
                continue;
            };
            e.in_dirty = false;
            let progress = e.conn.flush(now);
            let waiting = e.conn.queued_bytes() + engine.peer_memory(id).1;
            // Drained enough: read again what arrived while paused (mio is
            // edge-triggered, so no new event would say so).
            if e.paused && waiting <= READ_PAUSE_BYTES / 2 && !self.memory.paused {
                e.paused = false;
                if !e.in_again {
                    e.in_again = true;
                    self.again.push((slot, id));
                }
            }
            // Room again in the socket queue: more output can be pulled.
            if e.in_pulls && e.conn.queued_bytes() < PULL_LOW {
                self.hurry = true;
            }
            let progress = match progress {
                // The write budget ran out with output left: next turn.
                Progress::Again => {
                    self.flush_again.push((slot, id));
                    Progress::Idle
                }
                p => p,
            };
            // A blocked flush resumes on WRITABLE, not by polling again.
            self.after(slot, progress, false, engine);
        }
    }

    /// Adds up what every connection makes the server hold and enforces
    /// the limits: a connection over its share is closed; above the total,
    /// reading pauses everywhere until work and output drain, and if what
    /// is held cannot drain (subscriptions, held content, incomplete
    /// messages), the biggest connection is closed.
    fn scan_memory(&mut self, now: Instant, engine: &mut Engine) {
        self.memory.next_scan = now + MEMORY_SCAN_INTERVAL;
        self.memory.read_since_scan = 0;
        let (per_conn, limit) = (self.opts.connection_memory, self.opts.client_memory);
        let mut total = 0usize;
        let mut held_total = 0usize;
        let mut over: Vec<(PeerId, usize)> = Vec::new();
        let mut biggest: Option<(PeerId, usize)> = None;
        for (&peer, &slot) in &self.peers {
            let Some(e) = self.slab.get_mut(slot).filter(|e| e.conn.id == peer) else {
                continue;
            };
            let (state, work) = engine.peer_memory(peer);
            let held = state + e.conn.partial_bytes();
            let all = held + work + e.conn.queued_bytes();
            total += all;
            held_total += held;
            if held > per_conn {
                over.push((peer, held));
            }
            if biggest.is_none_or(|(_, b)| all > b) {
                biggest = Some((peer, all));
            }
        }
        for (peer, used) in over {
            self.close_peer(
                peer,
                CloseReason::MemoryLimit {
                    used,
                    limit: per_conn,
                },
                now,
                engine,
            );
        }
        self.memory.total = total;
        let was = self.memory.paused;
        if total > limit / 10 * 9 {
            self.memory.paused = true;
        } else if total < limit / 10 * 8 {
            self.memory.paused = false;
        }
        if was != self.memory.paused {
            log::warn!(
                "connections hold {} KiB of the {} KiB client-memory: reading {}",
                total >> 10,
                limit >> 10,
                if self.memory.paused {
                    "paused"
                } else {
                    "resumed"
                }
            );
            if !self.memory.paused {
                self.resume_all_paused();
            }
        }
        // Over the limit with more than half of it in memory that does not
        // drain by itself: shed the biggest connection.
        if total > limit
            && held_total > limit / 2
            && let Some((peer, used)) = biggest
        {
            self.close_peer(
                peer,
                CloseReason::ServerMemoryFull { used, limit },
                now,
                engine,
            );
        }
    }

    /// Reading resumes for every connection paused by the memory watch.
    fn resume_all_paused(&mut self) {
        for slot in 0..self.slab.capacity() {
            if let Some(e) = self.slab.get_mut(slot)
                && e.paused
            {
                e.paused = false;
                if !e.in_again {
                    e.in_again = true;
                    let id = e.conn.id;
                    self.again.push((slot, id));
                }
            }
        }
    }

    /// Bytes all connections made the server hold at the last count.
    pub fn client_memory(&self) -> usize {
        self.memory.total
    }
}

impl Reactor {
    fn on_signals(&mut self, now: Instant) {
        let Some(signals) = &mut self.signals else {
            return;
        };
        for signal in signals.pending() {
            if let Some(s) = &mut self.shutdown {
                log::warn!("{signal} again: dropping the remaining connections now");
                s.hurry(now);
                continue;
            }
            self.hooks.notify("STOPPING=1\nSTATUS=shutting down");
            if let Some(mut l) = self.listener.take() {
                let _ = self.poll.registry().deregister(&mut l);
                // Dropped here: the port closes and new clients are
                // refused (before the log line, which tests wait for).
            }
            log::info!(
                "{signal} received: shutting down; refusing new connections, closing {} connection(s) (up to {} ms)",
                self.open,
                self.opts.shutdown_timeout.as_millis()
            );
            self.accept_paused_until = None;
            self.shutdown = Some(Shutdown::new(signal, now, self.opts.shutdown_timeout));
        }
    }

    /// After a turn of a shutdown: when every connection is gone, or the
    /// timeout passed (the rest are dropped), commits a last time and
    /// reports that `run` may return.
    fn finish_shutdown(&mut self, engine: &mut Engine) -> bool {
        let Some(s) = &self.shutdown else {
            return false;
        };
        let now = Instant::now();
        if !s.connections_told || (self.open > 0 && now < s.deadline) {
            return false;
        }
        let (started, dropped) = (s.started, self.open);
        for slot in 0..self.slab.capacity() {
            if self.slab.get_mut(slot).is_some() {
                self.report_close(slot, &CloseReason::ServerShutdown, engine);
                self.remove(slot, engine);
            }
        }
        self.slab.recycle();
        // Closed connections deliver nothing new, but commit whatever the
        // engine still holds; its output has nowhere to go.
        engine.end_turn();
        if dropped > 0 {
            log::warn!(
                "shutdown timeout: dropped {dropped} connection(s) that did not finish closing"
            );
        }
        log::info!(
            "all connections closed in {} ms",
            now.duration_since(started).as_millis()
        );
        true
    }
}
