//! The delivery loop over the in-memory store and real HTTP: a dead webhook's backlog does not
//! hold back a healthy webhook.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::*;
use crate::config::WebhookConfig;
use crate::context::Interface;
use crate::engine::SystemClock;
use crate::imei::Imei;
use crate::store::memory::MemStore;
use crate::store::{Event, EventKind, Ledger, LocalRead};

fn webhook(url: &str) -> Webhook {
    let c: WebhookConfig = serde_json::from_value(serde_json::json!({
        "url": url,
        "min_interval_s": 0,
        "timeout_ms": 500,
        "max_in_flight": 4,
        "circuit_failures": 1,
        "circuit_cooldown_s": 600,
    }))
    .expect("webhook config");
    Webhook::new(0, &c).expect("webhook")
}

fn entry(n: u64, done: Vec<String>) -> OutboxEntry {
    let imsi = format!("00101{n:010}");
    OutboxEntry {
        event: Event {
            kind: EventKind::ImeiMismatch,
            imsi: Imsi::parse(imsi.as_bytes()).expect("test IMSI"),
            at: 1_000 + n as i64,
            interface: Interface::Radius,
            peer: "test".into(),
            imei: Imei::from_u64(35_000_000_000_000 + n),
            bound: None,
            detail: None,
        },
        attempts: 0,
        next_attempt_at: 0,
        done,
    }
}

/// A receiver answering 200 to every POST; returns its URL and the `X-Alert-Id`s it got.
async fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/alerts",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let seen = seen.clone();
            async move {
                let id = headers
                    .get(payload::ID_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                seen.lock().push(id);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/alerts"), got)
}

/// A port nothing listens on (bound, then closed): deliveries fail at once.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_webhooks_backlog_beyond_one_read_does_not_hold_back_a_healthy_one() {
    let (live_url, got) = receiver().await;
    let dead_url = format!("http://127.0.0.1:{}/alerts", closed_port());
    let store = Arc::new(MemStore::new());
    // More than one read of entries the healthy webhook already has and the dead one wants,
    // then one new alert for both.
    let backlog = READ_AHEAD as u64 + 200;
    let mut batch = Batch::new();
    for n in 0..=backlog {
        let done = if n < backlog {
            vec![live_url.clone()]
        } else {
            Vec::new()
        };
        batch.push(Op::PutOutbox {
            id: store.next_outbox_id(),
            entry: entry(n, done),
        });
    }
    store
        .commit(batch, Durability::Synced)
        .await
        .expect("commit");
    let (new_id, new_entry) = store
        .outbox(usize::MAX)
        .expect("outbox")
        .pop()
        .expect("the new alert");
    let want = payload::alert_id(new_id, &new_entry);

    let delivery = AlertDelivery::new(
        store.clone(),
        Arc::new(SystemClock::default()),
        vec![webhook(&dead_url), webhook(&live_url)],
    );
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn(delivery.run(stop));
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) && !got.lock().contains(&want) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = start.elapsed();
    let _ = stop_tx.send(true);
    let _ = task.await;
    assert_eq!(
        *got.lock(),
        vec![want],
        "the healthy webhook gets the new alert (and only it) behind the dead one's backlog"
    );
    assert!(took < Duration::from_secs(5), "promptly: took {took:?}");
    // The dead webhook's backlog is kept (its circuit is open, nothing is given up).
    let left = store.outbox(usize::MAX).expect("outbox");
    assert_eq!(left.len() as u64, backlog + 1);
}
