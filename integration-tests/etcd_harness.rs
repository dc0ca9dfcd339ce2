//! The etcd test harness (common/etcd.rs) against real etcd members, and the etcd behaviours
//! cluster mode relies on, shown with `etcdctl` alone: replication, a new leader after the
//! leader is killed and the member rejoining, quorum with a paused follower, and the error a
//! watch from a compacted revision ends with. Needs Debian's etcd-server and etcd-client
//! (`scripts/setup.sh --test`); without them every test fails saying so.

mod common;

use std::time::{Duration, Instant};

use common::etcd::EtcdCluster;
use serde_json::Value;

/// `etcdctl get KEY --print-value-only` through member `i` alone; `serializable` reads its own
/// store without asking the leader.
fn get_on(c: &EtcdCluster, i: usize, key: &str, serializable: bool) -> String {
    let mut args = vec!["get", key, "--print-value-only"];
    if serializable {
        args.push("--consistency=s");
    }
    let (code, out) = c.etcdctl_on(&[i], &args);
    assert_eq!(code, 0, "get {key} on m{i}: {out}");
    out.trim().to_owned()
}

/// Member `i`'s own revision (`endpoint status`), None when it does not answer.
fn member_revision(c: &EtcdCluster, i: usize) -> Option<i64> {
    c.status(i)?["header"]["revision"].as_i64()
}

/// Waits up to `within` until member `i` answers `endpoint status` with a revision of at least
/// `rev`; returns how long it took.
fn wait_caught_up(c: &EtcdCluster, i: usize, rev: i64, within: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let r = member_revision(c, i);
        if r.is_some_and(|r| r >= rev) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < within,
            "m{i} not caught up with revision {rev} within {within:?}: at {r:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn three_members_start_and_a_put_on_one_is_read_on_another() {
    let t0 = Instant::now();
    let c = EtcdCluster::start(3);
    println!("{}: 3 members up in {:?}", c.version, t0.elapsed());
    assert_eq!(c.endpoints().len(), 3);
    assert_eq!(c.endpoints()[2], c.endpoint(2));
    assert!(c.endpoint(0).starts_with("http://127.0.0.1:"));

    // One cluster: every member answers, with one cluster id and one leader.
    let statuses: Vec<Value> = c
        .statuses(&[0, 1, 2])
        .into_iter()
        .map(|s| s.expect("every member answers endpoint status"))
        .collect();
    let leader = c.leader().expect("a leader after start");
    for s in &statuses {
        assert_eq!(
            s["header"]["cluster_id"],
            statuses[0]["header"]["cluster_id"]
        );
        assert_eq!(s["leader"].as_u64(), Some(c.member_id(leader)), "{s}");
    }
    let ids: std::collections::BTreeSet<u64> = (0..3).map(|i| c.member_id(i)).collect();
    assert_eq!(ids.len(), 3, "three distinct member ids: {ids:?}");

    let (code, out) = c.etcdctl(&["endpoint", "health"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("is healthy").count(), 3, "{out}");

    c.put_on(&[0], "/it/replicated", "from-m0");
    // Linearizable through m2: must see the write at once.
    assert_eq!(get_on(&c, 2, "/it/replicated", false), "from-m0");
    // Serializable: m2's own store has it (applied there, not just read from the leader).
    assert_eq!(get_on(&c, 2, "/it/replicated", true), "from-m0");
    // Through all endpoints too.
    let (code, out) = c.etcdctl(&["get", "/it/replicated", "--print-value-only"]);
    assert_eq!((code, out.trim()), (0, "from-m0"));
    println!("test took {:?}", t0.elapsed());
}

#[test]
fn killed_leader_is_replaced_and_the_member_rejoins() {
    let t0 = Instant::now();
    let mut c = EtcdCluster::start(3);
    for k in 0..5 {
        c.put_on(&[0, 1, 2], &format!("/it/before/{k}"), "v");
    }
    let old = c.wait_for_leader(Duration::from_secs(5));
    let survivors: Vec<usize> = (0..3).filter(|&i| i != old).collect();

    let killed_at = Instant::now();
    c.kill(old);
    assert!(!c.is_running(old));
    let new = c.wait_for_leader(Duration::from_secs(10));
    let elected = killed_at.elapsed();
    assert_ne!(new, old);
    // The first write that succeeds after the kill, through the survivors' endpoints.
    let written = loop {
        let (code, out) = c.etcdctl_on(
            &survivors,
            &["put", "/it/after/first", "v", "--command-timeout=2s"],
        );
        if code == 0 {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "no write through {survivors:?} within 10 s of the kill: {out}"
        );
    };
    println!(
        "leader m{old} killed: m{new} leader after {} ms (polled with etcdctl endpoint status), \
         first write ok after {} ms",
        elected.as_millis(),
        written.as_millis()
    );
    // Election timeout 500 ms (randomised to 500-1000 ms) plus etcdctl polling.
    assert!(
        elected < Duration::from_secs(5),
        "new leader after {elected:?}"
    );

    // Writes through each surviving member (a follower forwards to the new leader), and through
    // the whole endpoint list with the dead member in it.
    for &i in &survivors {
        c.put_on(&[i], &format!("/it/after/m{i}"), "v");
    }
    c.put_on(&[0, 1, 2], "/it/after/all", "v");
    assert!(member_revision(&c, old).is_none(), "killed m{old} answers");
    let rev = c.revision();

    // The killed member comes back on its data directory and catches up.
    let restarted_at = Instant::now();
    c.restart(old);
    assert!(c.is_running(old));
    let caught_up = wait_caught_up(&c, old, rev, Duration::from_secs(10));
    println!(
        "m{old} restarted: healthy after {} ms, at revision {rev} after {} ms more",
        (restarted_at.elapsed() - caught_up).as_millis(),
        caught_up.as_millis()
    );
    assert_eq!(get_on(&c, old, "/it/after/all", true), "v");
    let status = c.status(old).unwrap();
    assert_eq!(
        status["header"]["member_id"].as_u64(),
        Some(c.member_id(old))
    );
    let (code, out) = c.etcdctl(&["endpoint", "health"]);
    assert_eq!(code, 0, "{out}");
    c.wait_for_leader(Duration::from_secs(5));
    println!("test took {:?}", t0.elapsed());
}

#[test]
fn paused_follower_leaves_a_quorum_that_takes_writes() {
    let t0 = Instant::now();
    let mut c = EtcdCluster::start(3);
    let leader = c.wait_for_leader(Duration::from_secs(5));
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;

    c.pause(follower);
    assert!(c.is_running(follower) && c.is_paused(follower));
    assert!(!c.live().contains(&follower));
    assert!(c.status(follower).is_none(), "paused m{follower} answers");

    // Quorum of 2: writes through the leader and through the other follower (forwarded).
    let writes = Instant::now();
    for k in 0..10 {
        c.put_on(&[leader], &format!("/it/paused/l{k}"), "v");
        c.put_on(&[other], &format!("/it/paused/f{k}"), "v");
    }
    println!(
        "m{follower} paused: 20 writes through m{leader} (leader) and m{other} in {} ms",
        writes.elapsed().as_millis()
    );
    assert_eq!(get_on(&c, other, "/it/paused/l9", true), "v");
    // A paused follower cannot campaign: the leader stays.
    assert_eq!(c.leader(), Some(leader));
    let rev = c.revision();

    c.resume(follower);
    assert!(!c.is_paused(follower));
    let caught_up = wait_caught_up(&c, follower, rev, Duration::from_secs(10));
    println!(
        "m{follower} resumed: at revision {rev} after {} ms; leader now {:?} (was m{leader})",
        caught_up.as_millis(),
        c.leader()
    );
    assert_eq!(get_on(&c, follower, "/it/paused/f9", true), "v");
    println!("test took {:?}", t0.elapsed());
}

#[test]
fn watch_from_a_compacted_revision_fails_with_compacted() {
    let t0 = Instant::now();
    let c = EtcdCluster::start(3);
    c.put_on(&[0, 1, 2], "/it/w", "v1");
    let old = c.revision();
    c.put_on(&[0, 1, 2], "/it/w", "v2");
    c.put_on(&[0, 1, 2], "/it/w", "v3");
    let now = c.revision();
    assert_eq!(now, old + 2);
    c.compact(now);

    // etcd 3.4.23's etcdctl prints, and exits with 5:
    //   watch was canceled (etcdserver: mvcc: required revision has been compacted)
    //   Error: watch is canceled by the server
    // The gRPC WatchResponse behind it: canceled = true, compact_revision = the compacted
    // revision (`now` here), cancel_reason "etcdserver: mvcc: required revision has been
    // compacted". That is what the cache rebuild must detect.
    let within = Duration::from_secs(10);
    let all = [0, 1, 2];
    let (code, out) =
        c.etcdctl_within(&all, &["watch", "/it/w", "--rev", &old.to_string()], within);
    println!("watch --rev {old} after compact {now}: exit {code}:\n{out}");
    assert_ne!(
        code, -1,
        "watch from a compacted revision still running after {within:?}"
    );
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("required revision has been compacted"),
        "{out}"
    );

    // The same as JSON (the fields the client library sees).
    let (code, out) = c.etcdctl_within(
        &all,
        &[
            "watch",
            "/it/w",
            "--prefix",
            "--rev",
            &old.to_string(),
            "-w",
            "json",
        ],
        within,
    );
    assert_ne!(code, 0, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{out}"));
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["Canceled"], true, "{line}");
    assert_eq!(v["CompactRevision"].as_i64(), Some(now), "{line}");

    // A read at a compacted revision fails the same way (a rebuild overtaken by compaction):
    //   Error: etcdserver: mvcc: required revision has been compacted
    let (code, out) = c.etcdctl(&["get", "/it/w", "--rev", &old.to_string()]);
    println!(
        "get --rev {old}: exit {code}: {}",
        out.lines().last().unwrap_or("")
    );
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("required revision has been compacted"),
        "{out}"
    );

    // The compaction revision itself is kept: a watch from it replays the put made at it and
    // keeps running (killed at the deadline).
    let (code, out) = c.etcdctl_within(
        &all,
        &["watch", "/it/w", "--rev", &now.to_string()],
        Duration::from_millis(1500),
    );
    assert_eq!(code, -1, "watch --rev {now} ended: {out}");
    assert!(out.starts_with("PUT\n/it/w\nv3\n"), "{out}");
    let (code, out) = c.etcdctl(&[
        "get",
        "/it/w",
        "--rev",
        &now.to_string(),
        "--print-value-only",
    ]);
    assert_eq!((code, out.trim()), (0, "v3"));

    c.defrag();
    println!("test took {:?}", t0.elapsed());
}
