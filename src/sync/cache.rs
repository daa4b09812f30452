//! The CoValues held in memory: one owner for the values, their byte
//! count and their recency. Reads from storage happen here, behind one
//! door (`load`), and nothing here recurses: an account author needed to
//! check a session is resolved from that account's header alone.

use super::covalue::{CoValue, Loaded, MAX_STORED_HEADER_BYTES};
use crate::logging::clip;
use crate::storage::{Store, Write};
use crate::verify::{CoId, Header};
use ed25519_dalek::VerifyingKey;
use log::{debug, warn};
use std::collections::HashMap;

/// What `load` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// In memory now.
    Found,
    /// Not stored.
    Missing,
    /// Stored but unusable (invalid header, storage error): never served.
    Unusable,
}

impl Lookup {
    pub fn found(self) -> bool {
        self == Lookup::Found
    }
}

/// Longest chain of header dependencies (owner group, branch source)
/// accepted under a new CoValue. Real apps stay below 5 (a map, its
/// group; a branch, its source, their group); a chain this deep is an
/// attack, refused when its content arrives.
pub const MAX_DEPENDENCY_DEPTH: u16 = 64;
/// CoValues a depth check may look at (each at most once).
const DEPTH_WALK_LIMIT: usize = 4 * MAX_DEPENDENCY_DEPTH as usize;

#[derive(Default)]
pub struct CoValueCache {
    values: HashMap<CoId, CoValue>,
    /// Sum of `CoValue::bytes` over `values`, kept by the methods below.
    bytes: usize,
    /// Source of `CoValue::version` numbers (never reused, so a reloaded
    /// value never repeats one a peer remembers).
    versions: u64,
    /// The current loop turn, stamped on values as they are used.
    turn: u64,
    /// Verification records to write (sessions checked on load).
    vouches: Vec<Write>,
    /// Bytes read back from storage since `take_loaded`.
    loaded: usize,
}

impl CoValueCache {
    pub fn get(&self, id: &CoId) -> Option<&CoValue> {
        self.values.get(id)
    }

    pub fn contains(&self, id: &CoId) -> bool {
        self.values.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn set_turn(&mut self, turn: u64) {
        self.turn = turn;
    }

    /// Makes `id` available in memory, reading it from storage if needed.
    pub fn load(&mut self, id: &CoId, store: &mut dyn Store) -> Lookup {
        if let Some(cv) = self.values.get_mut(id) {
            cv.last_used = self.turn;
            return Lookup::Found;
        }
        let stored = match store.load(id.as_str()) {
            Ok(Some(s)) => s,
            Ok(None) => return Lookup::Missing,
            Err(e) => {
                log::error!("cannot read {id} from storage: {e}");
                return Lookup::Unusable;
            }
        };
        // Account authors resolve to their header's signer. Headers are
        // read (not whole accounts), so this never recurses.
        let mut signers: HashMap<CoId, Option<VerifyingKey>> = HashMap::new();
        let mut signer_of = |acc: CoId| -> Option<VerifyingKey> {
            *signers
                .entry(acc)
                .or_insert_with(|| self.account_signer_of(acc, store).flatten())
        };
        match CoValue::from_stored(stored, &mut signer_of) {
            Ok(Loaded {
                covalue,
                newly_verified,
                failed,
            }) => {
                for (session, e) in failed {
                    warn!(
                        "stored session {} of {id} fails verification and will not be served: {e}",
                        clip(&session)
                    );
                }
                self.vouches.extend(newly_verified);
                self.loaded += covalue.bytes();
                self.insert(covalue);
                Lookup::Found
            }
            Err(e) => {
                warn!("stored CoValue {id} is invalid and will not be served: {e}");
                Lookup::Unusable
            }
        }
    }

    /// The signer of an account author: `None` if the account is not
    /// available, `Some(None)` if it is not an account. Reads only the
    /// header when the account is not in memory.
    pub fn account_signer_of(
        &self,
        acc: CoId,
        store: &mut dyn Store,
    ) -> Option<Option<VerifyingKey>> {
        if let Some(cv) = self.values.get(&acc) {
            return Some(cv.header.account_signer);
        }
        self.stored_header(acc, store).map(|h| h.account_signer)
    }

    /// A header from memory or storage (just the header).
    fn header_of(&self, id: CoId, store: &mut dyn Store) -> Option<Header> {
        match self.values.get(&id) {
            Some(cv) => Some(cv.header.clone()),
            None => self.stored_header(id, store),
        }
    }

    fn stored_header(&self, id: CoId, store: &mut dyn Store) -> Option<Header> {
        let text = match store.load_header(id.as_str()) {
            Ok(t) => t?,
            Err(e) => {
                log::error!("cannot read the header of {id} from storage: {e}");
                return None;
            }
        };
        match Header::check(&text, &id, MAX_STORED_HEADER_BYTES) {
            Ok(h) => Some(h.header),
            Err(e) => {
                debug!("stored header of {id} is invalid: {e}");
                None
            }
        }
    }

    /// Bytes read back from storage since the last call (resets it).
    pub fn take_loaded(&mut self) -> usize {
        std::mem::take(&mut self.loaded)
    }

    /// Bytes read back from storage since `take_loaded`.
    pub fn loaded(&self) -> usize {
        self.loaded
    }

    /// Verification records collected by loads, for the turn's writes.
    pub fn take_vouches(&mut self) -> Vec<Write> {
        std::mem::take(&mut self.vouches)
    }

    /// Adds a CoValue (new or read back), giving it a fresh version.
    pub fn insert(&mut self, mut cv: CoValue) {
        self.versions += 1;
        cv.version = self.versions;
        cv.last_used = self.turn;
        self.bytes += cv.bytes();
        if let Some(old) = self.values.insert(cv.id, cv) {
            self.bytes = self.bytes.saturating_sub(old.bytes());
        }
    }

    /// Changes a CoValue in memory, keeping the byte count right; when
    /// `f` reports a change, the value gets a new version.
    pub fn update<R>(&mut self, id: &CoId, f: impl FnOnce(&mut CoValue) -> (R, bool)) -> Option<R> {
        let cv = self.values.get_mut(id)?;
        let before = cv.bytes();
        let (r, changed) = f(cv);
        if changed {
            self.versions += 1;
            cv.version = self.versions;
        }
        cv.last_used = self.turn;
        self.bytes = self.bytes + cv.bytes() - before;
        Some(r)
    }

    /// Forgets everything (memory may be ahead of storage after a failed
    /// commit); values are read back on demand.
    pub fn clear(&mut self) {
        self.values.clear();
        self.bytes = 0;
        self.vouches.clear();
    }

    /// Drops least recently used CoValues until the cache is back under
    /// 90 % of `budget`; ones nobody subscribes to go first. Only between
    /// turns: everything evicted is committed and is read back on demand.
    pub fn evict(&mut self, budget: usize, subscribed: impl Fn(&CoId) -> bool) {
        if self.bytes <= budget {
            return;
        }
        let target = budget / 10 * 9;
        let mut order: Vec<(bool, u64, CoId)> = self
            .values
            .values()
            .map(|cv| (subscribed(&cv.id), cv.last_used, cv.id))
            .collect();
        order.sort_unstable();
        let before = self.values.len();
        for (_, _, id) in order {
            if self.bytes <= target {
                break;
            }
            if let Some(cv) = self.values.remove(&id) {
                self.bytes = self.bytes.saturating_sub(cv.bytes());
            }
        }
        debug!(
            "evicted {} CoValues; {} KiB cached",
            before - self.values.len(),
            self.bytes >> 10
        );
    }

    /// The depth of a new CoValue with `header`: one more than the deepest
    /// of its header dependencies, or `Err` past [`MAX_DEPENDENCY_DEPTH`].
    /// Iterative, each CoValue looked at once; depths found are
    /// remembered on values in memory.
    pub fn depth_of_new(&mut self, header: &Header, store: &mut dyn Store) -> Result<u16, ()> {
        let mut memo: HashMap<CoId, u16> = HashMap::new();
        // (id, its header deps not yet known, whether deps were pushed)
        let mut stack: Vec<(CoId, bool)> = header.dependencies().map(|d| (d, false)).collect();
        let roots: Vec<CoId> = header.dependencies().collect();
        let mut looked_at = 0usize;
        while let Some((id, expanded)) = stack.pop() {
            if memo.contains_key(&id) {
                continue;
            }
            if let Some(d) = self.values.get(&id).and_then(|cv| cv.depth) {
                memo.insert(id, d);
                continue;
            }
            let Some(h) = self.header_of(id, store) else {
                memo.insert(id, 0); // not stored: the gate decides about it
                continue;
            };
            let deps: Vec<CoId> = h.dependencies().collect();
            if !expanded {
                looked_at += 1;
                if looked_at > DEPTH_WALK_LIMIT || stack.len() > DEPTH_WALK_LIMIT {
                    return Err(());
                }
                stack.push((id, true));
                stack.extend(
                    deps.iter()
                        .filter(|d| !memo.contains_key(d))
                        .map(|d| (*d, false)),
                );
                continue;
            }
            let d = 1 + deps
                .iter()
                .map(|d| memo.get(d).copied().unwrap_or(0))
                .max()
                .unwrap_or(0);
            if d > MAX_DEPENDENCY_DEPTH {
                return Err(());
            }
            memo.insert(id, d);
            if let Some(cv) = self.values.get_mut(&id) {
                cv.depth = Some(d);
            }
        }
        let depth = 1 + roots
            .iter()
            .map(|d| memo.get(d).copied().unwrap_or(0))
            .max()
            .unwrap_or(0);
        if depth > MAX_DEPENDENCY_DEPTH {
            Err(())
        } else {
            Ok(depth)
        }
    }
}
