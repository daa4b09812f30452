//! `GET /metrics` on the real binary, parsed by the Prometheus project's
//! own parser (Python `prometheus_client`), before and after traffic: the
//! exposition is valid, and each counter moves by what the traffic did.

mod common;
mod service_support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use service_support::{MapWriter, Next, next, send, ws_connect};

/// Turns the exposition into {"name{label=value,...}": value} with the
/// official parser, which rejects anything malformed.
const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out, types = {}, {}
for family in text_string_to_metric_families(sys.stdin.read()):
    types[family.name] = family.type
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
print(json.dumps({"samples": out, "types": types}))
"#;

/// The first Python that has the Prometheus client: the one on PATH (pip
/// install), or Debian's (`apt-get install python3-prometheus-client`,
/// which `tests/run.sh` does).
fn python_with_parser() -> &'static str {
    ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|py| {
            Command::new(py)
                .args(["-c", "import prometheus_client.parser"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .expect(
            "this test parses /metrics with the Prometheus Python client; install it with: \
             apt-get install python3-prometheus-client (or pip install prometheus_client)",
        )
}

struct Scrape {
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn get(&self, key: &str) -> f64 {
        *self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key}; have {:?}", self.samples.keys()))
    }
}

fn scrape(addr: SocketAddr) -> Scrape {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    let mut py = Command::new(python_with_parser())
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    py.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser rejected /metrics: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let samples = v["samples"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
        .collect();
    let types = v["types"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    Scrape { samples, types }
}

/// Sends `msg` and waits for the `known` reply about `id`.
fn exchange(ws: &mut service_support::Ws, msg: &Value, id: &str) -> Value {
    send(ws, std::slice::from_ref(msg));
    loop {
        match next(ws) {
            Next::Messages(msgs) => {
                if let Some(k) = msgs
                    .into_iter()
                    .find(|m| m["action"] == "known" && m["id"] == id)
                {
                    return k;
                }
            }
            Next::Closed(c) => panic!("closed: {c:?}"),
        }
    }
}

#[test]
fn metrics_parse_and_move_with_traffic() {
    python_with_parser();
    let dir = common::TempDir::new("svc-metrics");
    let db = dir.path().join("m.db");
    let server = common::start_server(&["--db", db.to_str().unwrap()]);
    let before = scrape(server.addr);
    for (family, kind) in [
        ("maia_sync_connections_open", "gauge"),
        ("maia_sync_connections", "counter"),
        ("maia_sync_messages_received", "counter"),
        ("maia_sync_messages_sent", "counter"),
        ("maia_sync_received_bytes", "counter"),
        ("maia_sync_sent_bytes", "counter"),
        ("maia_sync_transactions_accepted", "counter"),
        ("maia_sync_transactions_rejected", "counter"),
        ("maia_sync_storage_commit_duration_seconds", "histogram"),
        ("maia_sync_covalues_in_memory", "gauge"),
        ("maia_sync_cached_bytes", "gauge"),
        ("maia_sync_database_size_bytes", "gauge"),
    ] {
        assert_eq!(
            before.types.get(family).map(String::as_str),
            Some(kind),
            "{family}: {:?}",
            before.types
        );
    }
    // The scrape itself is the one open connection.
    assert_eq!(before.get("maia_sync_connections_open"), 1.0);
    assert_eq!(before.get("maia_sync_transactions_accepted_total"), 0.0);
    assert!(before.get("maia_sync_database_size_bytes") > 0.0);

    let mut ws = ws_connect(server.addr);
    // 3 good batches of 2 transactions.
    let mut good = MapWriter::new(60, "metrics-good");
    for _ in 0..3 {
        let msg = good.next_batch(2);
        let known = exchange(&mut ws, &msg, &good.id);
        assert_eq!(good.acked_in(&known), Some(good.txs.len() as u64));
    }
    // A batch of 3 whose transaction was changed after signing.
    let mut bad = MapWriter::new(61, "metrics-bad");
    let mut msg = bad.next_batch(3);
    msg["new"][&bad.session]["newTransactions"][1]["madeAt"] = 5.into();
    exchange(&mut ws, &msg, &bad.id);
    // A batch of 2 that starts after transactions the server never got.
    let mut gap = MapWriter::new(62, "metrics-gap");
    let first = gap.next_batch(2);
    let mut second = gap.next_batch(2);
    second["header"] = first["header"].clone();
    let known = exchange(&mut ws, &second, &gap.id);
    assert_eq!(known["isCorrection"], true, "{known}");
    // Also a load, so a second action is counted in both directions.
    let mut load = serde_json::json!({"action":"load","id":good.id,"header":false,"sessions":{}});
    send(&mut ws, &[load.take()]);
    let Next::Messages(_) = next(&mut ws) else {
        panic!("no answer to the load")
    };

    let after = scrape(server.addr);
    let delta = |k: &str| after.get(k) - before.get(k);
    assert_eq!(after.get("maia_sync_websockets_open"), 1.0);
    assert_eq!(
        after.get("maia_sync_connections_open"),
        2.0,
        "ws + this scrape"
    );
    assert_eq!(
        delta("maia_sync_connections_total"),
        2.0,
        "ws + this scrape"
    );
    assert_eq!(
        delta("maia_sync_messages_received_total{action=content}"),
        5.0
    );
    assert_eq!(delta("maia_sync_messages_received_total{action=load}"), 1.0);
    assert!(delta("maia_sync_messages_sent_total{action=known}") >= 5.0);
    assert!(delta("maia_sync_messages_sent_total{action=content}") >= 1.0);
    assert_eq!(delta("maia_sync_messages_sent_total{action=other}"), 0.0);
    assert!(delta("maia_sync_received_bytes_total") > 1000.0);
    assert!(delta("maia_sync_sent_bytes_total") > 500.0);
    assert_eq!(delta("maia_sync_transactions_accepted_total"), 6.0);
    assert_eq!(
        delta("maia_sync_transactions_rejected_total{reason=invalid_signature}"),
        3.0
    );
    assert_eq!(
        delta("maia_sync_transactions_rejected_total{reason=gap}"),
        2.0
    );
    assert_eq!(
        delta("maia_sync_transactions_rejected_total{reason=invalid_header}"),
        0.0
    );
    // Two CoValues were created (good, gap) and bad's header too: each
    // turn with writes committed once, and was timed.
    let commits = after.get("maia_sync_storage_commit_duration_seconds_count");
    assert!(commits >= 3.0, "{commits}");
    assert_eq!(
        after.get("maia_sync_storage_commit_duration_seconds_bucket{le=+Inf}"),
        commits
    );
    assert!(after.get("maia_sync_storage_commit_duration_seconds_sum") > 0.0);
    assert!(after.get("maia_sync_covalues_in_memory") >= 2.0);
    assert!(after.get("maia_sync_cached_bytes") > 0.0);
    assert!(after.get("maia_sync_database_size_bytes") > 0.0);
    drop(ws);
}
