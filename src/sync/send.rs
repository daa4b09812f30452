//! Sending a peer what it lacks (docs/protocol.md §5.1): a CoValue and,
//! first, every dependency the peer is not up to date with. Produced as
//! the peer's socket drains (`Engine::pull`), never built in full up front:
//! the walk over dependencies is an explicit stack (no recursion, each
//! CoValue visited once per send), and a CoValue's content is planned as
//! pieces and rendered one piece at a time.

use super::covalue::Piece;
use super::peer::Out;
use super::{Engine, PeerId};
use crate::verify::CoId;
use std::collections::{HashSet, VecDeque};

/// One send in progress: the dependency walk and the pieces left.
pub struct Job {
    target: CoId,
    /// Answer with a `known` even when there is nothing to send.
    force: bool,
    started: bool,
    /// Depth-first walk: each CoValue with the dependencies not looked at.
    stack: Vec<(CoId, Vec<CoId>)>,
    visited: HashSet<CoId>,
    emitting: Option<Emitting>,
}

struct Emitting {
    id: CoId,
    version: u64,
    pieces: VecDeque<Piece>,
}

impl Job {
    fn new(target: CoId, force: bool) -> Job {
        Job {
            target,
            force,
            started: false,
            stack: Vec::new(),
            visited: HashSet::new(),
            emitting: None,
        }
    }

    /// Approximate bytes held by the walk (counted against the peer).
    pub fn bytes(&self) -> usize {
        128 + self.visited.len() * 48
            + self
                .stack
                .iter()
                .map(|(_, deps)| 64 + deps.len() * 32)
                .sum::<usize>()
            + self.emitting.as_ref().map_or(0, |e| {
                e.pieces.iter().map(|p| 64 + p.chunks.len() * 64).sum()
            })
    }
}

/// The last rendering of one CoValue for one peer state: a write forwarded
/// to many subscribers in the same state is rendered once.
pub struct RenderCache {
    id: CoId,
    version: u64,
    header: bool,
    until: bool,
    chunks: Vec<(std::sync::Arc<str>, u32, u32)>,
    text: String,
}

/// Renderings larger than this are not kept for the next subscriber.
const RENDER_CACHE_BYTES: usize = 256 * 1024;

/// How a pull ended.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Done,
    /// Out of room or out of this turn's budget: resume later.
    Paused,
}

impl Engine {
    /// Takes up to about `room` bytes of `peer`'s released output into
    /// `out`, producing queued sends as it goes (at least one message if
    /// any is ready, so a big piece still moves). Returns whether output is
    /// left (the reactor pulls again when the socket drains).
    pub fn pull(&mut self, peer: PeerId, room: usize, out: &mut Vec<String>) -> bool {
        let mut used = 0usize;
        loop {
            let Some(p) = self.peers.get_mut(&peer) else {
                return false;
            };
            if p.leaving {
                return false;
            }
            if used >= room && used > 0 {
                return p.has_output();
            }
            if let Some(mut job) = p.current.take() {
                let step = self.run_job(peer, &mut job, room, &mut used, out);
                if step == Step::Paused {
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.current = Some(job);
                    }
                    return true;
                }
                continue;
            }
            match p.pop_outbox() {
                Some(Out::Text(t)) => {
                    used += t.len();
                    out.push(t);
                }
                Some(Out::Send(id)) => {
                    let force = p.queued.remove(&id).unwrap_or(false);
                    p.current = Some(Job::new(id, force));
                }
                None => return false,
            }
        }
    }

    fn run_job(
        &mut self,
        peer: PeerId,
        job: &mut Job,
        room: usize,
        used: &mut usize,
        out: &mut Vec<String>,
    ) -> Step {
        loop {
            if job.emitting.is_some() {
                if self.emit(peer, job, room, used, out) == Step::Paused {
                    return Step::Paused;
                }
                continue;
            }
            if !job.started {
                job.started = true;
                job.visited.insert(job.target);
                if !self.cache.load(&job.target, &mut *self.store).found() {
                    if job.force {
                        self.answer_unknown(peer, job.target, out, used);
                    }
                    return Step::Done;
                }
                let deps = self.deps_of(&job.target);
                job.stack.push((job.target, deps));
            }
            let Some((_, deps)) = job.stack.last_mut() else {
                return Step::Done;
            };
            if let Some(dep) = deps.pop() {
                if self.visits_left == 0 {
                    deps.push(dep);
                    return Step::Paused;
                }
                self.visits_left -= 1;
                if job.visited.insert(dep) && self.needs_walk(peer, &dep) {
                    let deps = self.deps_of(&dep);
                    job.stack.push((dep, deps));
                }
                continue;
            }
            // Every dependency is handled: this one goes next (post-order).
            let Some((id, _)) = job.stack.pop() else {
                return Step::Done;
            };
            let force = job.force && id == job.target;
            self.plan(peer, job, id, force, out, used);
        }
    }

    /// A dependency to walk into: available, not errored for the peer, and
    /// not already up to date (then its own dependencies were handled when
    /// it was; later changes reach the peer through its subscriptions).
    fn needs_walk(&mut self, peer: PeerId, dep: &CoId) -> bool {
        let Some(p) = self.peers.get(&peer) else {
            return false;
        };
        if p.errored.contains(dep) || !self.cache.load(dep, &mut *self.store).found() {
            return false;
        }
        let version = self.cache.get(dep).map_or(0, |cv| cv.version);
        !p.entry(dep).is_some_and(|e| e.is_synced(version))
    }

    fn deps_of(&self, id: &CoId) -> Vec<CoId> {
        let mut deps = self
            .cache
            .get(id)
            .map(|cv| cv.dependencies())
            .unwrap_or_default();
        deps.reverse(); // popped from the back: visit in order
        deps
    }

    /// `load` of something we do not have: `known` with nothing, and the
    /// peer stays subscribed (it gets the CoValue if it ever arrives).
    fn answer_unknown(&mut self, peer: PeerId, id: CoId, out: &mut Vec<String>, used: &mut usize) {
        let text = super::encode::known_iter(id.as_str(), false, std::iter::empty(), false);
        *used += text.len();
        out.push(text);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.entry_mut(id, |e| e.told = true);
        }
        self.subscribe(peer, id);
    }

    /// Plans what `peer` lacks of `id` (after its dependencies).
    fn plan(
        &mut self,
        peer: PeerId,
        job: &mut Job,
        id: CoId,
        force: bool,
        out: &mut Vec<String>,
        used: &mut usize,
    ) {
        if !self.cache.load(&id, &mut *self.store).found() {
            return;
        }
        let (Some(cv), Some(p)) = (self.cache.get(&id), self.peers.get_mut(&peer)) else {
            return;
        };
        let version = cv.version;
        let planned = p.entry_mut(id, |e| {
            if !force && e.is_synced(version) {
                return None;
            }
            let pieces = cv.plan(&e.state);
            if !pieces.is_empty() {
                return Some(Ok(pieces));
            }
            e.synced = version;
            let told = std::mem::replace(&mut e.told, true);
            Some(Err(force || !told))
        });
        match planned {
            None => {}
            Some(Ok(pieces)) => {
                job.emitting = Some(Emitting {
                    id,
                    version,
                    pieces: pieces.into(),
                });
            }
            Some(Err(true)) => {
                let text = cv.known_message(false);
                *used += text.len();
                out.push(text);
            }
            Some(Err(false)) => {}
        }
        self.subscribe(peer, id);
    }

    /// Sends planned pieces while there is room.
    fn emit(
        &mut self,
        peer: PeerId,
        job: &mut Job,
        room: usize,
        used: &mut usize,
        out: &mut Vec<String>,
    ) -> Step {
        let Some(em) = job.emitting.as_mut() else {
            return Step::Done;
        };
        // Evicted between turns while its pieces were being sent: read back.
        if !self.cache.load(&em.id, &mut *self.store).found() {
            job.emitting = None;
            return Step::Done;
        }
        let (Some(cv), Some(p)) = (self.cache.get(&em.id), self.peers.get_mut(&peer)) else {
            job.emitting = None;
            return Step::Done;
        };
        // A single piece (a live update, a small value) may be what the
        // previous subscriber got too.
        if em.pieces.len() == 1 {
            let text = cached_text(&mut self.render_cache, cv, &em.pieces[0]);
            *used += text.len();
            out.push(text);
            if let Some(piece) = em.pieces.pop_front() {
                raise(p, em.id, &piece);
            }
        }
        while let Some(piece) = em.pieces.front() {
            if *used >= room && *used > 0 {
                return Step::Paused;
            }
            let text = cv.render(piece);
            *used += text.len();
            out.push(text);
            if let Some(piece) = em.pieces.pop_front() {
                raise(p, em.id, &piece);
            }
        }
        let (id, version) = (em.id, em.version);
        p.entry_mut(id, |e| {
            if cv.version == version {
                e.synced = version;
            }
        });
        job.emitting = None;
        Step::Done
    }
}

/// The peer now holds what `piece` carries.
fn raise(p: &mut super::peer::Peer, id: CoId, piece: &Piece) {
    p.entry_mut(id, |e| {
        e.told = true;
        if piece.header {
            e.state.header = true;
        }
        for (session, n) in piece.ends() {
            e.state.raise(session, n);
        }
    });
}

/// The text of a single-piece send: the last rendering if it was the
/// same piece of the same version, else rendered now and kept (if small).
fn cached_text(
    cache: &mut Option<RenderCache>,
    cv: &super::covalue::CoValue,
    piece: &Piece,
) -> String {
    let same = |c: &RenderCache| {
        c.id == cv.id
            && c.version == cv.version
            && c.header == piece.header
            && c.until == piece.until.is_some()
            && c.chunks.len() == piece.chunks.len()
            && c.chunks
                .iter()
                .zip(&piece.chunks)
                .all(|((s, from, to), p)| *s == p.session && *from == p.from && *to == p.to)
    };
    if let Some(c) = cache
        && same(c)
    {
        return c.text.clone();
    }
    let text = cv.render(piece);
    if text.len() <= RENDER_CACHE_BYTES {
        *cache = Some(RenderCache {
            id: cv.id,
            version: cv.version,
            header: piece.header,
            until: piece.until.is_some(),
            chunks: piece
                .chunks
                .iter()
                .map(|c| (c.session.clone(), c.from, c.to))
                .collect(),
            text: text.clone(),
        });
    }
    text
}
