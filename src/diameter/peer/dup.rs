//! Duplicate detection on (Origin-Host, End-to-End-Id) (RFC 6733 §6.1.4 / SPEC §2.2).
//!
//! RFC 6733 §3: "The End-to-End Identifier is used to detect duplicate messages. ... the
//! combination of the Origin-Host ... and this field is used to detect duplicates."
//! Retransmissions (often with the 'T' bit, possibly a new Hop-by-Hop Identifier) must get the
//! first answer, never a second evaluation.
//!
//! A small bounded, time-expiring cache; it is not tied to a connection (a retransmission may
//! arrive on another one after failover), so the shell keeps one per daemon behind a lock.
//! It does no I/O and reads no clock.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

type Key = (String, u32);

#[derive(Clone, Debug)]
enum Slot {
    InFlight,
    Answered(Vec<u8>),
}

#[derive(Clone, Debug)]
struct Entry {
    slot: Slot,
    expires: Instant,
}

/// What [`DuplicateCache::check`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// First sight: evaluate, then call [`DuplicateCache::complete`].
    New,
    /// Being evaluated now: drop this copy (the first will be answered).
    InFlight,
    /// Already answered: send these bytes (Hop-by-Hop already set to the new request's).
    Answered(Vec<u8>),
}

/// Bounded cache of answers keyed by (Origin-Host, End-to-End-Id).
#[derive(Debug)]
pub struct DuplicateCache {
    entries: HashMap<Key, Entry, foldhash::fast::RandomState>,
    /// Insertion order with each entry's expiry, for expiry and eviction.
    order: VecDeque<(Key, Instant)>,
    capacity: usize,
    ttl: Duration,
}

impl DuplicateCache {
    /// At most `capacity` entries (at least 1), each kept for `ttl` after its request arrived.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: HashMap::default(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            ttl,
        }
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn key(origin_host: &str, end_to_end: u32) -> Key {
        (origin_host.to_ascii_lowercase(), end_to_end)
    }

    /// Looks up a request; a new one is recorded as in flight. `hop_by_hop` is the arriving
    /// request's, patched into a cached answer.
    pub fn check(
        &mut self,
        now: Instant,
        origin_host: &str,
        end_to_end: u32,
        hop_by_hop: u32,
    ) -> Lookup {
        self.purge(now);
        let key = Self::key(origin_host, end_to_end);
        if let Some(e) = self.entries.get(&key) {
            return match &e.slot {
                Slot::InFlight => Lookup::InFlight,
                Slot::Answered(b) => Lookup::Answered(with_hop_by_hop(b, hop_by_hop)),
            };
        }
        while self.entries.len() >= self.capacity {
            let Some((k, exp)) = self.order.pop_front() else {
                break;
            };
            self.remove_if(&k, exp);
        }
        let expires = now + self.ttl;
        self.order.push_back((key.clone(), expires));
        // Records of abandoned entries stay in `order` until their expiry; bound them (under
        // overload every shed request is abandoned, which would keep a TTL's worth of them).
        if self.order.len() > 2 * self.capacity + 2 {
            let entries = &self.entries;
            self.order
                .retain(|(k, exp)| entries.get(k).is_some_and(|e| e.expires == *exp));
        }
        self.entries.insert(
            key,
            Entry {
                slot: Slot::InFlight,
                expires,
            },
        );
        Lookup::New
    }

    /// Records the encoded answer of a request first seen by [`check`](Self::check).
    pub fn complete(&mut self, origin_host: &str, end_to_end: u32, answer: Vec<u8>) {
        if let Some(e) = self.entries.get_mut(&Self::key(origin_host, end_to_end)) {
            e.slot = Slot::Answered(answer);
        }
    }

    /// Forgets an in-flight request that will not be answered (so a retransmission is
    /// evaluated).
    pub fn abandon(&mut self, origin_host: &str, end_to_end: u32) {
        let key = Self::key(origin_host, end_to_end);
        if matches!(
            self.entries.get(&key).map(|e| &e.slot),
            Some(Slot::InFlight)
        ) {
            self.entries.remove(&key);
        }
    }

    /// Drops expired entries.
    pub fn purge(&mut self, now: Instant) {
        while let Some((_, exp)) = self.order.front() {
            if *exp > now {
                break;
            }
            if let Some((k, exp)) = self.order.pop_front() {
                self.remove_if(&k, exp);
            }
        }
    }

    fn remove_if(&mut self, k: &Key, expires: Instant) {
        if self.entries.get(k).is_some_and(|e| e.expires == expires) {
            self.entries.remove(k);
        }
    }
}

/// `answer` with its Hop-by-Hop Identifier (bytes 12..16) replaced.
pub fn with_hop_by_hop(answer: &[u8], hop_by_hop: u32) -> Vec<u8> {
    let mut out = answer.to_vec();
    if let Some(s) = out.get_mut(12..16) {
        s.copy_from_slice(&hop_by_hop.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmission_gets_the_first_answer() {
        let t0 = Instant::now();
        let mut c = DuplicateCache::new(10, Duration::from_secs(60));
        assert_eq!(c.check(t0, "PGW", 5, 1), Lookup::New);
        assert_eq!(c.check(t0, "pgw", 5, 2), Lookup::InFlight);
        c.complete("pgw", 5, vec![0; 20]);
        let Lookup::Answered(b) = c.check(t0, "pgw", 5, 0xabcd) else {
            panic!()
        };
        assert_eq!(&b[12..16], &0xabcdu32.to_be_bytes());
        assert_eq!(c.check(t0, "other", 5, 1), Lookup::New);
        // Expiry.
        assert_eq!(
            c.check(t0 + Duration::from_secs(61), "pgw", 5, 1),
            Lookup::New
        );
    }

    #[test]
    fn bounded_and_abandon() {
        let t0 = Instant::now();
        let mut c = DuplicateCache::new(2, Duration::from_secs(60));
        for e in 0..5 {
            assert_eq!(c.check(t0, "p", e, 0), Lookup::New);
        }
        assert_eq!(c.len(), 2);
        assert_eq!(c.check(t0, "p", 4, 0), Lookup::InFlight);
        c.abandon("p", 4);
        assert_eq!(c.check(t0, "p", 4, 0), Lookup::New);
    }

    /// Abandoned requests (shed under overload) leave no unbounded trail of order records.
    #[test]
    fn order_stays_bounded_when_requests_are_abandoned() {
        let t0 = Instant::now();
        let mut c = DuplicateCache::new(4, Duration::from_secs(240));
        for e in 0..10_000 {
            assert_eq!(c.check(t0, "p", e, 0), Lookup::New);
            c.abandon("p", e);
        }
        assert!(c.is_empty());
        assert!(c.order.len() <= 2 * 4 + 2, "{}", c.order.len());
        // Live entries are still evicted oldest first.
        for e in 0..6 {
            assert_eq!(c.check(t0, "p", 100_000 + e, 0), Lookup::New);
        }
        assert_eq!(c.len(), 4);
        assert_eq!(c.check(t0, "p", 100_005, 0), Lookup::InFlight);
        assert_eq!(c.check(t0, "p", 100_000, 0), Lookup::New);
    }
}
