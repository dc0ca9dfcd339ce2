//! Sending again what never left this node.
//!
//! The etcd client balances requests over every configured endpoint. While a member is down or
//! cut off, a request the balancer hands to that member's channel fails with UNAVAILABLE and a
//! connect error: it never reached any member, so sending it again cannot apply it twice (a
//! transaction included) and usually reaches a live member. [`txn`] and [`get`] do that until a
//! deadline; any other error is the caller's to judge (a transaction that was sent has an
//! unknown outcome).
//!
//! This module retries nothing that may have been delivered, and decides nothing about answers.

use std::time::{Duration, Instant};

use etcd_client::{
    Client, GetOptions, GetResponse, KvClient, Txn, TxnResponse, WatchOptions, WatchStream,
};

/// gRPC UNAVAILABLE: with a connect error as its message, the client never reached the member.
const GRPC_UNAVAILABLE: i32 = 14;
/// Pause before a request that never left this node goes out again.
pub(super) const RETRY: Duration = Duration::from_millis(20);

/// Whether `e` says the request never reached a member (see the module doc).
pub(super) fn unsent(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s)
        if i32::from(s.code()) == GRPC_UNAVAILABLE && s.message().contains("connect error"))
}

/// Notes one more send of a request that never left (metric and debug line).
fn count(what: &'static str, e: &etcd_client::Error) {
    metrics::counter!("imei_lockd_etcd_unsent_retries_total").increment(1);
    tracing::debug!(error = %e, request = what, "etcd request not sent; sending again");
}

/// Sends `txn` until it reaches a member or `deadline` passes. `None`: the deadline passed while
/// a send was in flight (its outcome is unknown).
pub(super) async fn txn(
    kv: &mut KvClient,
    txn: &Txn,
    deadline: Instant,
) -> Option<Result<TxnResponse, etcd_client::Error>> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, kv.txn(txn.clone())).await {
            Ok(Err(e)) if unsent(&e) && Instant::now() + RETRY < deadline => {
                count("txn", &e);
                tokio::time::sleep(RETRY).await;
            }
            Ok(r) => return Some(r),
            Err(_) => return None,
        }
    }
}

/// A `get` of `key`, sent again while it never left this node, until `within` has passed.
pub(super) async fn get(
    kv: &mut KvClient,
    key: &[u8],
    options: Option<GetOptions>,
    within: Duration,
) -> Result<GetResponse, etcd_client::Error> {
    let deadline = Instant::now() + within;
    loop {
        match kv.get(key, options.clone()).await {
            Err(e) if unsent(&e) && Instant::now() + RETRY < deadline => {
                count("get", &e);
                tokio::time::sleep(RETRY).await;
            }
            r => return r,
        }
    }
}

/// Opens a watch, again while the request never left this node, until `within` has passed.
/// A dead member's channel looks ready to the balancer and fails at once, so the follower's
/// read-nodes-then-watch sequence would otherwise often pick it and back off in between.
pub(super) async fn watch(
    client: &mut Client,
    key: &[u8],
    options: WatchOptions,
    within: Duration,
) -> Result<WatchStream, etcd_client::Error> {
    let deadline = Instant::now() + within;
    loop {
        match client.watch(key.to_vec(), Some(options.clone())).await {
            Err(e) if unsent(&e) && Instant::now() + RETRY < deadline => {
                count("watch", &e);
                tokio::time::sleep(RETRY).await;
            }
            r => return r,
        }
    }
}
