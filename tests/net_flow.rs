//! Flow control: a client that asks for much more than it reads is served
//! at its own pace (answers are produced as its socket drains, repeated
//! loads join) instead of being dropped at the outbound cap.

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
    // A marker behind the loads: once its answer is in, everything the
    // loads caused has been sent.
    let marker = "co_zF1owMarker1";
    greedy.send(&json!({"action":"load","id":marker,"header":false,"sessions":{}}));
    // Now read. Answers are produced as the socket drains, and repeated
    // loads of one CoValue waiting in line join into one answer, so the
    // client gets the whole map at least once and never 30 copies queued.
    let mut txs = 0usize;
    loop {
        let m = greedy
            .recv_within(Duration::from_secs(30))
            .expect("answers keep coming until the marker's");
        if m["id"] == marker {
            assert_eq!(m["header"], false, "{m}");
            break;
        }
        assert_eq!(m["action"], "content", "{m}");
        txs += m["new"][&map.session]["newTransactions"]
            .as_array()
            .unwrap()
            .len();
    }
    assert!(txs >= 5_000, "the map arrived whole ({txs} transactions)");
    assert!(
        txs < 5_000 * loads,
        "repeated loads were joined, not each answered in full ({txs} transactions)"
    );
    assert!(
        !server
            .logs
            .snapshot()
            .iter()
            .any(|l| l.contains("exceeds max-outbound-bytes")),
        "nobody was dropped at the cap"
    );
}
