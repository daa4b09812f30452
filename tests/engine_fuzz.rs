//! Robustness: thousands of mutated versions of real cojson messages (from
//! the recorded exchanges) fed to the engine from several peers, with
//! connects and disconnects in between. Nothing may panic, and every
//! message the engine sends must be a single line of valid JSON.
//! Deterministic (fixed seed), so a failure reproduces.

mod common;

use maia_sync::storage::memory::MemoryStore;
use maia_sync::sync::Engine;
use maia_sync::sync::PeerId;
use maia_sync::sync::testkit::drain_text;
use serde_json::Value;

/// xorshift64*: a small deterministic generator, enough for mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn corpus() -> Vec<Value> {
    let dir = common::data_dir().join("vectors");
    let mut msgs = Vec::new();
    for name in [
        "exchange-two-clients.jsonl",
        "exchange-raw-edge-cases.jsonl",
    ] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        for line in text.lines() {
            let f: Value = serde_json::from_str(line).unwrap();
            if f["dir"] == "c2s"
                && let Some(ms) = f["messages"].as_array()
            {
                msgs.extend(ms.iter().cloned());
            }
        }
    }
    let acc = common::read_json(&dir.join("account-creation.json"));
    for name in ["account", "profileGroup", "profile"] {
        msgs.extend(
            acc[name]["contentMessages"]
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
    }
    assert!(msgs.len() > 30, "corpus too small: {}", msgs.len());
    msgs
}

/// Replaces a random node of the JSON tree with something else.
fn mutate(v: &mut Value, rng: &mut Rng, depth: u32) {
    let replace = depth > 6 || rng.below(4) == 0;
    match v {
        Value::Object(m) if !replace && !m.is_empty() => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = &keys[rng.below(keys.len())];
            if rng.below(8) == 0 {
                m.remove(k);
            } else if let Some(child) = m.get_mut(k) {
                mutate(child, rng, depth + 1);
            }
        }
        Value::Array(a) if !replace && !a.is_empty() => {
            let i = rng.below(a.len());
            match rng.below(6) {
                0 => {
                    a.remove(i);
                }
                1 => {
                    let dup = a[i].clone();
                    a.push(dup);
                }
                _ => mutate(&mut a[i], rng, depth + 1),
            }
        }
        _ => {
            *v = match rng.below(10) {
                0 => Value::Null,
                1 => Value::Bool(rng.below(2) == 0),
                2 => serde_json::json!(rng.next() as i64),
                3 => serde_json::json!(u64::MAX),
                4 => serde_json::json!(-1),
                5 => serde_json::json!(1.5),
                6 => Value::String(String::new()),
                7 => Value::String("co_z".into()),
                8 => serde_json::json!({}),
                _ => serde_json::json!([]),
            }
        }
    }
}

#[test]
fn mutated_messages_never_panic_the_engine() {
    let corpus = corpus();
    // MAIA_FUZZ_ROUNDS / MAIA_FUZZ_SEED run longer or other sequences by hand.
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let rounds = env("MAIA_FUZZ_ROUNDS").unwrap_or(4_000);
    let mut rng = Rng(env("MAIA_FUZZ_SEED").unwrap_or(0x9E37_79B9_7F4A_7C15) | 1);
    let mut engine = Engine::new(Box::new(MemoryStore::new()));
    let mut next_peer = 1u64;
    let mut peers: Vec<PeerId> = Vec::new();
    let mut sent = 0usize;
    for round in 0..rounds {
        if peers.len() < 4 || rng.below(50) == 0 {
            let p = PeerId(next_peer);
            next_peer += 1;
            engine.connect(p);
            peers.push(p);
        }
        if rng.below(80) == 0 {
            let p = peers.swap_remove(rng.below(peers.len()));
            engine.disconnect(p);
        }
        let peer = peers[rng.below(peers.len())];
        let mut frame = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let mut msg = corpus[rng.below(corpus.len())].clone();
            if rng.below(3) != 0 {
                for _ in 0..1 + rng.below(3) {
                    mutate(&mut msg, &mut rng, 0);
                }
            }
            frame.push(msg.to_string());
        }
        let mut text = frame.join("\n");
        if rng.below(40) == 0 {
            // Byte-level damage too (kept on a char boundary).
            let mut cut = rng.below(text.len());
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        engine.receive_frame(peer, &text);
        if round % 3 == 0 {
            for (_, text) in drain_text(&mut engine) {
                assert!(!text.contains('\n'), "outgoing message spans lines");
                serde_json::from_str::<Value>(&text).expect("outgoing message is JSON");
                sent += 1;
            }
        }
    }
    drain_text(&mut engine);
    assert!(
        sent > 100,
        "the engine answered too little ({sent}) for the corpus to be exercised"
    );
}
