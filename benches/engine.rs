//! Engine decisions per second on one core: a bound, locked SIM presenting its own IMEI, with
//! 10k and 1M SIMs stored (issue 2's benchmark). Run with `scripts/bench-engine.sh`.
//!
//! Each size: SIMs are written in batches, the memtables flushed and compacted to SST files (the
//! steady state of a running node), then one thread decides for random SIMs of the set for a fixed
//! time. Reports decisions/s and the p50/p99 of single decisions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use imei_lockd::context::{AuthContext, Imsi, Interface, Phase, PresentedImei, Reason};
use imei_lockd::engine::{Engine, EnginePolicy, SystemClock};
use imei_lockd::imei::Imei;
use imei_lockd::store::rocks::{RocksOptions, RocksStore};
use imei_lockd::store::{commit_blocking, Batch, Durability, ImeiManagement, SimRecord, Store};

fn imsi_of(i: u64) -> Imsi {
    format!("00101{i:010}").parse().expect("valid IMSI")
}

fn imei_of(i: u64) -> Imei {
    Imei::from_u64(35_000_000_000_000 + i).expect("valid IMEI")
}

/// xorshift: cheap, deterministic.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test --all-targets` runs this without `--bench`: a smoke run that keeps it working.
    let smoke = !args.iter().any(|a| a == "--bench");
    let default_sizes = if smoke {
        vec![1_000]
    } else {
        vec![10_000, 1_000_000]
    };
    let sizes: Vec<u64> = args
        .iter()
        .position(|a| a == "--sims")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or(default_sizes);
    let seconds: u64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let millis = if smoke { 200 } else { seconds * 1000 };
    let mut rates: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    for &n in &sizes {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RocksStore::open(dir.path(), &RocksOptions::default()).expect("open");
        let t0 = Instant::now();
        let mut i = 0;
        while i < n {
            let mut b = Batch::new();
            for j in i..(i + 10_000).min(n) {
                let mut s = SimRecord::new(imsi_of(j));
                s.value = Some(ImeiManagement::Lock);
                s.bound = Some(imei_of(j));
                b.put_sim(s);
            }
            commit_blocking(&store, b, Durability::Buffered).expect("write");
            i += 10_000;
        }
        store.compact().expect("compact");
        let load = t0.elapsed();
        let store: Arc<dyn Store> = Arc::new(store);
        let engine = Engine::new(
            store,
            EnginePolicy::default(),
            Arc::new(SystemClock::default()),
        );
        // Keys prepared outside the timed loop: the loop measures the engine, not formatting.
        let keys: Vec<(Imsi, Imei)> = (0..n).map(|j| (imsi_of(j), imei_of(j))).collect();
        // Two access patterns: "one" decides again and again for one bound, locked SIM in the
        // middle of the key space (what the store size does to a lookup); "uniform" picks a
        // random SIM of the whole set every time (adds the CPU-cache misses of a large set).
        for pattern in ["one", "uniform"] {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
            let mut hist = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
            let deadline = Instant::now() + Duration::from_millis(millis);
            let started = Instant::now();
            let mut done = 0u64;
            let mut ctx = AuthContext {
                interface: Interface::Radius,
                peer: "bench".into(),
                session_id: "bench".into(),
                phase: Phase::Start,
                imsi: imsi_of(0),
                msisdn: None,
                imei: PresentedImei::None,
                apn: None,
                rat_type: None,
            };
            while Instant::now() < deadline {
                for _ in 0..1024 {
                    let k = if pattern == "one" {
                        n / 2
                    } else {
                        rng.next() % n
                    };
                    let (imsi, imei) = keys[k as usize];
                    ctx.imsi = imsi;
                    ctx.imei = PresentedImei::Valid(imei_lockd::imei::ParsedImei {
                        imei,
                        svn: Some(1),
                        form: imei_lockd::imei::ImeiForm::AsciiImeisv,
                    });
                    let t = Instant::now();
                    let d = engine.decide(&ctx).expect("decision");
                    let _ = hist.record(t.elapsed().as_nanos() as u64);
                    assert_eq!(d.reason, Reason::Match);
                    done += 1;
                }
            }
            let rate = done as f64 / started.elapsed().as_secs_f64();
            rates.entry(pattern).or_default().push(rate);
            println!(
                "sims={n:>9} pattern={pattern:<7} load={:>6.1}s decisions={done:>9} rate={:>10.0}/s p50={}ns p99={}ns p99.9={}ns",
                load.as_secs_f64(),
                rate,
                hist.value_at_quantile(0.5),
                hist.value_at_quantile(0.99),
                hist.value_at_quantile(0.999),
            );
        }
    }
    for (pattern, r) in &rates {
        if let (Some(first), Some(last)) = (r.first(), r.last()) {
            println!(
                "pattern={pattern}: ratio largest/smallest = {:.3}",
                last / first
            );
        }
    }
}
