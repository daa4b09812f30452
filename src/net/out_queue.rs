//! The outbound side of one connection: sync messages joined into frames
//! the way cojson batches them, and the server's ping message. Pure data
//! structures, no socket: `conn` hands the frames to the WebSocket.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

/// cojson's `MAX_OUTGOING_MESSAGES_CHUNK_BYTES`: outgoing messages are joined
/// into frames of at most this size (a bigger message goes alone).
pub const MAX_BATCH_BYTES: usize = 25_000;

/// Outgoing frames not yet handed to the socket, with cojson's batching.
#[derive(Debug, Default)]
pub struct OutQueue {
    frames: VecDeque<String>,
    /// Whether the last frame may still take more messages.
    open: bool,
    bytes: usize,
}

impl OutQueue {
    /// Adds one sync message, joining it to the last frame with `\n` while
    /// that frame stays within [`MAX_BATCH_BYTES`].
    pub fn push_message(&mut self, msg: String) {
        if msg.is_empty() {
            return; // an empty line would make the client drop the whole frame
        }
        if msg.len() < MAX_BATCH_BYTES
            && self.open
            && let Some(last) = self.frames.back_mut()
            && last.len() + 1 + msg.len() <= MAX_BATCH_BYTES
        {
            last.push('\n');
            last.push_str(&msg);
            self.bytes += 1 + msg.len();
            return;
        }
        self.open = msg.len() < MAX_BATCH_BYTES;
        self.bytes += msg.len();
        self.frames.push_back(msg);
    }

    /// Adds a frame that must travel alone (a ping).
    pub fn push_frame(&mut self, frame: String) {
        self.open = false;
        self.bytes += frame.len();
        self.frames.push_back(frame);
    }

    pub fn pop_front(&mut self) -> Option<String> {
        let f = self.frames.pop_front()?;
        self.bytes -= f.len();
        if self.frames.is_empty() {
            self.open = false;
            // Idle connections must stay small: give the ring buffer back.
            self.frames = VecDeque::new();
        }
        Some(f)
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// `{"type":"ping","time":<epoch ms>,"dc":"unknown"}` (docs/protocol.md §1.4).
pub fn ping_text() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{{\"type\":\"ping\",\"time\":{ms},\"dc\":\"unknown\"}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(q: &mut OutQueue) -> Vec<String> {
        std::iter::from_fn(|| q.pop_front()).collect()
    }

    #[test]
    fn messages_are_joined_with_single_newlines() {
        let mut q = OutQueue::default();
        for m in ["{\"a\":1}", "", "{\"b\":2}", "{\"c\":3}"] {
            q.push_message(m.to_string());
        }
        assert_eq!(q.bytes(), 23);
        assert_eq!(frames(&mut q), ["{\"a\":1}\n{\"b\":2}\n{\"c\":3}"]);
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn a_frame_is_cut_before_it_would_pass_the_limit() {
        let mut q = OutQueue::default();
        let half = "x".repeat(12_499);
        q.push_message(half.clone());
        q.push_message(half.clone()); // 12_499 * 2 + 1 = 24_999: fits
        q.push_message("y".to_string()); // 25_001 would not fit
        q.push_message("z".to_string());
        let f = frames(&mut q);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0], format!("{half}\n{half}"));
        assert_eq!(f[1], "y\nz");
        // Exactly 25_000 is still allowed.
        q.push_message("a".repeat(12_499));
        q.push_message("b".repeat(12_500));
        assert_eq!(
            frames(&mut q).iter().map(String::len).collect::<Vec<_>>(),
            [25_000]
        );
    }

    #[test]
    fn a_big_message_travels_alone() {
        let mut q = OutQueue::default();
        let big = "B".repeat(MAX_BATCH_BYTES);
        q.push_message("s1".into());
        q.push_message(big.clone());
        q.push_message("s2".into());
        q.push_message("s3".into());
        assert_eq!(
            frames(&mut q),
            ["s1".to_string(), big, "s2\ns3".to_string()]
        );
    }

    #[test]
    fn pings_go_alone_and_no_line_is_empty() {
        let mut q = OutQueue::default();
        q.push_message("m1".into());
        q.push_frame(ping_text());
        q.push_message("m2".into());
        q.push_message(String::new());
        let f = frames(&mut q);
        assert_eq!(f.len(), 3);
        assert!(f[1].starts_with("{\"type\":\"ping\",\"time\":"), "{}", f[1]);
        assert!(f[1].ends_with(",\"dc\":\"unknown\"}"));
        assert_eq!(f[2], "m2");
        for frame in &f {
            assert!(!frame.is_empty() && !frame.ends_with('\n') && !frame.contains("\n\n"));
        }
        // A popped frame is never appended to again.
        q.push_message("x".into());
        assert_eq!(q.pop_front().as_deref(), Some("x"));
        q.push_message("y".into());
        assert_eq!(frames(&mut q), ["y"]);
    }
}
