//! The event loop: one thread, one mio `Poll`, every connection in a slab.
//!
//! Each turn (Redis's `ae.c` + `beforeSleep` is the model):
//! 1. wait for readiness, at most until the nearest deadline;
//! 2. accept new sockets; read ready connections within a per-connection
//!    budget, feeding complete text messages to the engine;
//! 3. read again the connections that stopped at their budget last turn;
//! 4. run due deadlines (header timeout, write stall, close linger, pings);
//! 5. before sleeping: `engine.end_turn` commits storage and releases the
//!    turn's messages, which are batched into frames and flushed (after a
//!    failed commit, the peers in `engine.take_resets()` are closed).
//!
//! mio is edge-triggered: a socket that still holds data after we stopped
//! reading will not be reported again, so such connections go on the
//! `again` list and the next poll does not sleep.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};

use crate::config::Config;
use crate::conn::{CloseReason, Conn, Event, Limits, Progress, ping_text};
use crate::protocol::{Outgoing, PeerId};
use crate::sync::Engine;

/// The reference server pings every 1.5 s (PROTOCOL.md §1.4).
pub const PING_INTERVAL: Duration = Duration::from_millis(1500);
/// After a failed accept (out of file descriptors), wait before retrying.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
const LISTENER: Token = Token(usize::MAX);
const EVENTS_PER_POLL: usize = 1024;

#[derive(Debug, Clone)]
pub struct Options {
    pub limits: Limits,
    pub ping_interval: Duration,
}

impl Options {
    pub fn from_config(c: &Config) -> Options {
        Options {
            limits: Limits::from_config(c),
            ping_interval: PING_INTERVAL,
        }
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
}

pub struct Reactor {
    poll: Poll,
    listener: TcpListener,
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
    next_ping: Instant,
    accept_paused_until: Option<Instant>,
    turn: u64,
    out: Vec<Outgoing>,
}

impl Reactor {
    /// Binds the listening socket (port 0 picks a free port).
    pub fn bind(addr: SocketAddr, opts: Options) -> io::Result<Reactor> {
        let mut listener = TcpListener::bind(addr)?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Reactor {
            poll,
            listener,
            next_ping: Instant::now() + opts.ping_interval,
            opts,
            slab: Slab::new(),
            peers: HashMap::new(),
            next_id: 1,
            timers: BinaryHeap::new(),
            again: Vec::new(),
            dirty: Vec::new(),
            accept_paused_until: None,
            turn: 0,
            out: Vec::new(),
        })
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves forever; returns only if polling itself fails.
    pub fn run(&mut self, engine: &mut Engine) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        loop {
            self.turn(engine, &mut events)?;
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
        let again = std::mem::take(&mut self.again);
        for &(slot, id) in &again {
            if let Some(e) = self.slab.live(slot, id) {
                e.in_again = false;
            }
        }
        for event in events.iter() {
            match event.token() {
                LISTENER => self.accept_all(now),
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
        if !self.again.is_empty() {
            return Duration::ZERO;
        }
        let mut next = self.next_ping;
        if let Some(Reverse((t, _, _))) = self.timers.peek() {
            next = next.min(*t);
        }
        if let Some(t) = self.accept_paused_until {
            next = next.min(t);
        }
        next.saturating_duration_since(now)
    }

    fn accept_all(&mut self, now: Instant) {
        if self.accept_paused_until.is_some() {
            return; // the retry timer resumes accepting
        }
        loop {
            let (stream, addr) = match self.listener.accept() {
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
                in_dirty: false,
                reported: false,
                read_turn: 0,
            });
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
                continue; // dropping the stream closes it
            }
            log::info!("connection #{} opened from {addr}", id.0);
            self.arm(slot);
        }
    }

    fn read(&mut self, slot: usize, now: Instant, engine: &mut Engine) {
        let Some(entry) = self.slab.get_mut(slot) else {
            return;
        };
        entry.read_turn = self.turn;
        let peer = entry.conn.id;
        let peers = &mut self.peers;
        let progress = entry
            .conn
            .on_readable(now, &self.opts.limits, &mut |ev| match ev {
                Event::Upgraded { path } => {
                    log::debug!("connection #{} upgraded to WebSocket on {path}", peer.0);
                    peers.insert(peer, slot);
                    engine.connect(peer);
                }
                Event::Text(text) => engine.receive_frame(peer, text),
            });
        self.after(slot, progress, true, engine);
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
        let (id, addr) = (e.conn.id, e.conn.addr);
        if reason.is_abnormal() {
            log::warn!("connection #{} from {addr} closed: {reason}", id.0);
        } else {
            log::info!("connection #{} from {addr} closed: {reason}", id.0);
        }
        if self.peers.remove(&id).is_some() {
            engine.disconnect(id);
        }
    }

    /// Drops a connection (closing its socket).
    fn remove(&mut self, slot: usize, engine: &mut Engine) {
        if let Some(mut e) = self.slab.remove(slot) {
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

    /// Commit, release the turn's messages to their connections, flush.
    fn before_sleep(&mut self, now: Instant, engine: &mut Engine) {
        engine.end_turn(&mut self.out);
        // After a failed commit the engine already forgot these peers; their
        // clients must reconnect to re-sync.
        for peer in engine.take_resets() {
            if let Some(&slot) = self.peers.get(&peer)
                && let Some(e) = self.slab.live(slot, peer)
            {
                let progress = e.conn.abort(CloseReason::StorageFailed, now);
                self.after(slot, progress, true, engine);
            }
        }
        let mut out = std::mem::take(&mut self.out);
        for Outgoing { peer, text } in out.drain(..) {
            // The peer may be gone already: its messages are dropped.
            let Some(&slot) = self.peers.get(&peer) else {
                continue;
            };
            let Some(e) = self.slab.live(slot, peer) else {
                continue;
            };
            match e.conn.queue_message(text, now, &self.opts.limits) {
                Ok(()) => self.mark_dirty(slot, peer),
                Err(reason) => self.after(slot, Progress::Close(reason), false, engine),
            }
        }
        self.out = out; // keep the allocation for the next turn
        let dirty = std::mem::take(&mut self.dirty);
        for (slot, id) in dirty {
            let Some(e) = self.slab.live(slot, id) else {
                continue;
            };
            e.in_dirty = false;
            let progress = e.conn.flush(now);
            // A blocked flush resumes on WRITABLE, not by polling again.
            self.after(slot, progress, false, engine);
        }
    }
}
