//! Cluster harness: real `imei-lockd` nodes on one etcd prefix (members from [`super::etcd`]),
//! waiting until they serve, and the session helpers the cluster tests share.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::etcd::EtcdCluster;
use super::radius::{access_request, authenticator, exchange, udp, SECRET};
use super::Daemon;

pub const PCEF: &str = "pcef.localdomain";
/// RADIUS Access-Accept / Access-Reject codes.
pub const ACCEPT: u8 = 2;
pub const REJECT: u8 = 3;

pub fn unique_prefix(tag: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("/it-{tag}-{n}")
}

/// Config of node `i` of a cluster on `etcd` under `prefix`.
pub fn node_toml(etcd: &EtcdCluster, prefix: &str, i: usize) -> String {
    let endpoints: Vec<String> = etcd.endpoints().iter().map(|e| format!("{e:?}")).collect();
    format!(
        "[[diameter.peers]]\norigin_host = \"{PCEF}\"\n\
         [cluster]\nbackend = \"etcd\"\nnode_name = \"node-{i}\"\nlease_ttl_s = 3\n\
         [cluster.etcd]\nendpoints = [{}]\nprefix = \"{prefix}\"\n",
        endpoints.join(", ")
    )
}

/// `n` nodes on one prefix, each serving (its cache caught up, its lease held).
pub fn nodes(etcd: &EtcdCluster, n: usize, tag: &str) -> Vec<Daemon> {
    let prefix = unique_prefix(tag);
    let ds: Vec<Daemon> = (0..n)
        .map(|i| Daemon::start(&node_toml(etcd, &prefix, i)))
        .collect();
    for d in &ds {
        wait_serving(d, n);
    }
    ds
}

/// Waits until `d` sees `n` nodes serving.
pub fn wait_serving(d: &Daemon, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let (s, v) = d.api().get("/v1/cluster");
        if s == 200 {
            let serving = v["nodes"]
                .as_array()
                .map_or(0, |a| a.iter().filter(|n| n["serving"] == true).count());
            if serving >= n && v["serving"] == true {
                return;
            }
        }
        last = v;
        thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "cluster not serving on {} nodes: {last}\n{}",
        n,
        d.log_text()
    );
}

/// One RADIUS Access-Request to node `d`: the answer's code (None: no answer).
pub fn radius(d: &Daemon, imsi: &str, imei: &str, id: u8) -> Option<u8> {
    let s = udp("127.0.0.1:0", Duration::from_secs(2));
    let pkt = access_request(id, authenticator(id), imsi, Some(imei), SECRET, true);
    exchange(&s, d.ports.radius_auth, &pkt).and_then(|a| a.first().copied())
}

/// A 14-digit TAC+SNR with its Luhn check digit (the 15-digit IMEI S6b carries).
pub fn with_check_digit(tac_snr: &str) -> String {
    let sum: u32 = tac_snr
        .bytes()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                x / 10 + x % 10
            } else {
                d
            }
        })
        .sum();
    format!("{tac_snr}{}", (10 - sum % 10) % 10)
}

/// Config of node `i` with `extra` TOML appended (inside no table: start it with one).
pub fn node_toml_with(etcd: &EtcdCluster, prefix: &str, i: usize, extra: &str) -> String {
    format!("{}{extra}", node_toml(etcd, prefix, i))
}

/// `n` nodes on one fresh prefix, each with `extra` config, each serving.
pub fn nodes_with(etcd: &EtcdCluster, n: usize, tag: &str, extra: &str) -> Vec<Daemon> {
    let prefix = unique_prefix(tag);
    let ds: Vec<Daemon> = (0..n)
        .map(|i| Daemon::start(&node_toml_with(etcd, &prefix, i, extra)))
        .collect();
    for d in &ds {
        wait_serving(d, n);
    }
    ds
}

/// `POST /v1/cluster/verify` on `d`: asserts the node's cache equals etcd at one revision.
pub fn assert_cache_equals_etcd(d: &Daemon) -> Value {
    let (status, v) = d.api().call("POST", "/v1/cluster/verify", None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["equal"],
        true,
        "cache differs from etcd: {v}\n{}",
        d.log_text()
    );
    assert!(v["revision"].as_u64().unwrap_or(0) > 0, "{v}");
    v
}
