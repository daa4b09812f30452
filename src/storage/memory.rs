//! The in-memory store (`--in-memory`): same interface, nothing on disk.

use super::{Store, StoreError, StoredCoValue, StoredSession, Write};
use std::collections::HashMap;

#[derive(Default)]
pub struct MemoryStore {
    committed: HashMap<String, StoredCoValue>,
    pending: Vec<Write>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn apply(&mut self, w: Write) {
        match w {
            Write::Header { co_id, header } => {
                self.committed
                    .entry(co_id.to_string())
                    .or_insert_with(|| StoredCoValue {
                        id: co_id,
                        header,
                        sessions: Vec::new(),
                    });
            }
            // Everything here was verified on the way in.
            Write::Verified { .. } => {}
            Write::Append(a) => {
                let Some(cv) = self.committed.get_mut(&*a.co_id) else {
                    return;
                };
                let pos = cv
                    .sessions
                    .iter()
                    .position(|s| s.session_id == a.session_id);
                let s = match pos {
                    Some(p) => &mut cv.sessions[p],
                    None => {
                        cv.sessions.push(StoredSession {
                            session_id: a.session_id.clone(),
                            txs: Vec::new(),
                            last_signature: a.last_signature.clone(),
                            signature_after: Vec::new(),
                            bytes_since_last_signature: 0,
                            vouched: None,
                        });
                        cv.sessions.last_mut().expect("just pushed")
                    }
                };
                // Idempotent against re-sent ranges: only indices we lack are added.
                let have = s.txs.len() as u32;
                if a.first_idx > have {
                    return;
                }
                let skip = (have - a.first_idx) as usize;
                if skip >= a.txs.len() {
                    return;
                }
                s.txs.extend(a.txs.into_iter().skip(skip));
                s.last_signature = a.last_signature.clone();
                if a.checkpoint {
                    s.signature_after
                        .push((s.txs.len() as u32 - 1, a.last_signature));
                }
                s.bytes_since_last_signature = a.bytes_since_last_signature;
                s.vouched = Some(a.digest);
            }
        }
    }
}

impl Store for MemoryStore {
    fn load(&mut self, id: &str) -> Result<Option<StoredCoValue>, StoreError> {
        Ok(self.committed.get(id).cloned())
    }

    fn load_header(&mut self, id: &str) -> Result<Option<std::sync::Arc<str>>, StoreError> {
        Ok(self.committed.get(id).map(|c| c.header.clone()))
    }

    fn write(&mut self, w: Write) -> Result<(), StoreError> {
        self.pending.push(w);
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut self.pending);
        for w in pending {
            self.apply(w);
        }
        Ok(())
    }

    fn rollback(&mut self) {
        self.pending.clear();
    }
}
