//! The fault harness of issue 18: three etcd members and three imei-lockd nodes, each in a
//! network namespace of its own ([`super::netns`]), the [`super::workload`] running through every
//! node, and faults injected one at a time, each for a bounded time and healed. A run ends with
//! the cluster healed, every acknowledged request read back, the history checked
//! ([`super::checker`]), every node's cache compared with etcd, and the availability figures
//! ([`super::availability`]).
//!
//! It does not decide what a run must show: the tests (`integration-tests/cluster_faults.rs`)
//! assert the verdict and the targets.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::availability::{self, FaultFigures, FaultSpan};
use super::checker::{self, Verdict};
use super::cluster::{assert_cache_equals_etcd, node_toml, unique_prefix, wait_serving};
use super::etcd::EtcdCluster;
use super::history::Recorder;
use super::netns::{Host, Net};
use super::workload::{self, Plan, Target, Workload};
use super::{unsafe_kill, Daemon};

/// Nodes of a fault run.
pub const NODES: usize = 3;
/// The nodes' `lease_ttl_s` (from [`node_toml`]).
pub const LEASE_TTL_MS: u64 = 3000;

/// The faults, each injected for a bounded time and then healed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9` of the etcd leader (found with `etcdctl endpoint status`), restarted at the heal.
    LeaderKill,
    /// SIGSTOP / SIGCONT of an etcd member.
    MemberPause,
    /// SIGSTOP / SIGCONT of a node.
    NodePause,
    /// A node's link to etcd set down (its client side stays up).
    NodeCut,
    /// One etcd member's link set down: cut from the other two and from the nodes.
    MinorityPartition,
    /// A node paused while the others write, etcd compacted past it, then the node resumed.
    CompactWhileNodePaused,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::LeaderKill,
        Fault::MemberPause,
        Fault::NodePause,
        Fault::NodeCut,
        Fault::MinorityPartition,
        Fault::CompactWhileNodePaused,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::LeaderKill => "leader-kill",
            Fault::MemberPause => "member-pause",
            Fault::NodePause => "node-pause",
            Fault::NodeCut => "node-cut",
            Fault::MinorityPartition => "minority-partition",
            Fault::CompactWhileNodePaused => "compact-while-node-paused",
        }
    }
}

/// The cluster under test. Fields drop in order: nodes, then etcd, then the namespaces.
pub struct FaultCluster {
    pub nodes: Vec<Daemon>,
    pub etcd: EtcdCluster,
    node_hosts: Vec<Host>,
    net: Net,
}

impl FaultCluster {
    pub fn start() -> Self {
        let mut net = Net::new();
        let etcd = EtcdCluster::start_in(&mut net, 3);
        let prefix = unique_prefix("faults");
        let node_hosts: Vec<Host> = (0..NODES)
            .map(|i| net.add(&format!("n{i}"), true))
            .collect();
        let nodes: Vec<Daemon> = node_hosts
            .iter()
            .enumerate()
            .map(|(i, h)| Daemon::start_in(h, &node_toml(&etcd, &prefix, i)))
            .collect();
        for d in &nodes {
            wait_serving(d, NODES);
        }
        Self {
            nodes,
            etcd,
            node_hosts,
            net,
        }
    }

    pub fn targets(&self) -> Vec<Target> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, d)| Target::of(&format!("node-{i}"), d))
            .collect()
    }

    fn pause_node(&self, i: usize) {
        unsafe_kill(self.nodes[i].pid() as i32, 19);
    }

    fn resume_node(&self, i: usize) {
        unsafe_kill(self.nodes[i].pid() as i32, 18);
    }

    /// Injects `fault` for `hold`, heals it; `victim` picks which member or node (modulo).
    pub fn inject(
        &mut self,
        rec: &Recorder,
        fault: Fault,
        hold: Duration,
        victim: usize,
    ) -> FaultSpan {
        let start = rec.now_ms();
        let t0 = Instant::now();
        let rest = |t0: Instant| thread::sleep(hold.saturating_sub(t0.elapsed()));
        let mut reference = None;
        let who = match fault {
            Fault::LeaderKill => {
                let l = self.etcd.wait_for_leader(Duration::from_secs(10));
                self.etcd.kill(l);
                self.etcd.wait_for_leader(Duration::from_secs(10));
                reference = Some(rec.now_ms());
                rest(t0);
                self.etcd.restart(l);
                format!("m{l}")
            }
            Fault::MemberPause => {
                let m = victim % self.etcd.size();
                self.etcd.pause(m);
                rest(t0);
                self.etcd.resume(m);
                format!("m{m}")
            }
            Fault::NodePause => {
                let n = victim % NODES;
                self.pause_node(n);
                rest(t0);
                self.resume_node(n);
                format!("node-{n}")
            }
            Fault::NodeCut => {
                let n = victim % NODES;
                self.net.cut(&self.node_hosts[n]);
                rest(t0);
                self.net.heal(&self.node_hosts[n]);
                format!("node-{n}")
            }
            Fault::MinorityPartition => {
                let m = victim % self.etcd.size();
                let h = self.etcd.host(m).expect("members in namespaces").clone();
                self.net.cut(&h);
                rest(t0);
                self.net.heal(&h);
                format!("m{m}")
            }
            Fault::CompactWhileNodePaused => {
                let n = victim % NODES;
                self.pause_node(n);
                thread::sleep(hold / 2);
                let rev = self.etcd.revision();
                self.etcd.compact(rev);
                rest(t0);
                self.resume_node(n);
                format!("node-{n} (compacted at {rev})")
            }
        };
        let healed = rec.now_ms();
        FaultSpan {
            name: fault.name().to_owned(),
            victim: who,
            start,
            healed,
            reference: reference.unwrap_or(healed),
            until: healed,
        }
    }

    /// Waits until every node serves again (all three seeing three serving).
    pub fn wait_healed(&self) {
        for d in &self.nodes {
            wait_serving(d, NODES);
        }
    }
}

/// What a run found.
pub struct RunReport {
    pub verdict: Verdict,
    pub figures: Vec<FaultFigures>,
    pub failed_requests: u64,
    pub history_path: std::path::PathBuf,
}

/// Runs the workload on a fresh cluster, injecting `schedule` (fault, hold) one after the other
/// with `quiet` between them, then heals, checks and measures.
pub fn run(schedule: &[(Fault, Duration)], quiet: Duration, sims: usize) -> RunReport {
    let mut c = FaultCluster::start();
    let rec = Recorder::new();
    let targets = c.targets();
    let plan = Arc::new(Plan::new(sims, 7_000_000));
    c.nodes[0].api().import_locked(plan.imsis.iter().cloned());
    workload::seed_state(&rec, &targets[0], &plan);
    let load = Workload::start(&rec, &targets, plan.clone(), 0x5eed_0018);
    thread::sleep(quiet);
    let mut spans: Vec<FaultSpan> = Vec::new();
    for (k, &(fault, hold)) in schedule.iter().enumerate() {
        // A different victim each round of the same fault (schedules cycle through the six).
        let span = c.inject(&rec, fault, hold, k + 1 + k / Fault::ALL.len());
        eprintln!(
            "fault {}/{}: {} on {} for {} ms",
            k + 1,
            schedule.len(),
            span.name,
            span.victim,
            span.healed - span.start
        );
        spans.push(span);
        thread::sleep(quiet);
    }
    let end = rec.now_ms();
    for k in 0..spans.len() {
        spans[k].until = spans.get(k + 1).map_or(end, |next| next.start);
    }
    c.wait_healed();
    let failed_requests = load.stop(Duration::from_secs(60));
    workload::read_back_requests(&rec, &targets[0]);
    let history = rec.history();
    let history_path =
        std::env::temp_dir().join(format!("imei-lockd-faults-{}.jsonl", std::process::id()));
    rec.write_jsonl(&history_path).expect("write the history");
    let verdict = checker::check(&history);
    let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    let figures = availability::figures(&history, &spans, &names);
    // The spans and the nodes' logs beside the history, for a look after the run.
    let spans_text: Vec<String> = spans.iter().map(|s| format!("{s:?}")).collect();
    let _ = std::fs::write(history_path.with_extension("spans"), spans_text.join("\n"));
    for (i, d) in c.nodes.iter().enumerate() {
        let _ = std::fs::copy(&d.log, history_path.with_extension(format!("node-{i}.log")));
    }
    for d in &c.nodes {
        assert_cache_equals_etcd(d);
    }
    RunReport {
        verdict,
        figures,
        failed_requests,
        history_path,
    }
}
