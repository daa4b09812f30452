//! Flow control: a client that asks for much more than it reads is served
//! at its own pace (the server stops reading its requests while too much
//! output waits) instead of being dropped at the outbound cap.

mod common;
mod service_support;

use common::{WsClient, start_server};
use serde_json::json;
use service_support::MapWriter;
use std::time::Duration;

#[test]
fn a_client_that_requests_faster_than_it_reads_is_paced_not_dropped() {
    // A hard cap of 8 MiB, and ~14 MB of answers requested.
    let server = start_server(&["--in-memory", "--max-outbound-bytes", "8M"]);
    let mut writer = WsClient::connect(server.addr);
    let mut map = MapWriter::new(61, "flow-big");
    for _ in 0..10 {
        let batch = map.next_batch(500);
        writer.send(&batch);
        let ack = writer.recv();
        assert!(map.acked_in(&ack).is_some(), "{ack}");
    }
    // One answer (possibly in several pieces) carries all 5 000 transactions.
    let answer = |c: &mut WsClient, i: usize| -> usize {
        let mut txs = 0;
        let mut bytes = 0;
        while txs < 5_000 {
            let m = c
                .recv_within(Duration::from_secs(30))
                .unwrap_or_else(|| panic!("answer {i}: only {txs} transactions arrived"));
            assert_eq!(m["action"], "content", "answer {i}: {m}");
            txs += m["new"][&map.session]["newTransactions"]
                .as_array()
                .unwrap()
                .len();
            bytes += m.to_string().len();
        }
        assert_eq!(txs, 5_000, "answer {i} complete");
        bytes
    };
    let mut probe = WsClient::connect(server.addr);
    probe.send(&json!({"action":"load","id":map.id,"header":false,"sessions":{}}));
    let answer_bytes = answer(&mut probe, 0);
    assert!(answer_bytes > 400_000, "one answer is {answer_bytes} bytes");

    let mut greedy = WsClient::connect(server.addr);
    let loads = 30;
    for _ in 0..loads {
        greedy.send(&json!({"action":"load","id":map.id,"header":false,"sessions":{}}));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        server
            .logs
            .wait_for("not reading until it drains", Duration::from_secs(10))
            .is_some(),
        "the server paused reading this client"
    );
    // Now read: every answer arrives, complete.
    for i in 0..loads {
        answer(&mut greedy, i);
    }
    assert!(
        !server
            .logs
            .snapshot()
            .iter()
            .any(|l| l.contains("exceeds max-outbound-bytes")),
        "nobody was dropped at the cap"
    );
}
