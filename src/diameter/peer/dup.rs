//! Duplicate detection on (Origin-Host, End-to-End-Id) (RFC 6733 §6.1.4 / SPEC §2.2).
//!
//! RFC 6733 §3: "The End-to-End Identifier is used to detect duplicate messages. ... the
//! combination of the Origin-Host ... and this field is used to detect duplicates."
//! Retransmissions (often with the 'T' bit, possibly a new Hop-by-Hop Identifier) must get the
//! first answer, never a second evaluation.
//!
//! A bounded, time-expiring cache; it is not tied to a connection (a retransmission may
//! arrive on another one after failover), so the shell keeps one per daemon behind a lock.
//! It does no I/O and reads no clock.
//!
//! A large cache is split into shards by key hash, each with its own map and expiry queue: a
//! cache at capacity removes one entry for every one it adds, and the hash map's tombstones
//! then make it rehash in place from time to time. One map of 200 000 entries took 25 ms to do
//! so, every request of the daemon waiting behind it (the p99 of a Diameter benchmark at half
//! of peak went from 0.6 to 11 ms); a shard of a few thousand takes a fraction of a millisecond.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

/// An interned Origin-Host (see [`DuplicateCache::host_id`]) and an End-to-End Identifier:
/// one integer, so a lookup hashes 8 bytes and an entry owns no string.
type Key = u64;

/// Distinct Origin-Hosts the cache tells apart. Requests from further hosts are not checked
/// for duplicates (each is new); a network has a handful of peers, each with one Origin-Host.
const MAX_HOSTS: usize = 4096;

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

/// Entries per shard a cache aims at; a smaller cache is one shard.
const SHARD_ENTRIES: usize = 4096;
/// Most shards a cache is split into.
const MAX_SHARDS: usize = 64;

/// Bounded cache of answers keyed by (Origin-Host, End-to-End-Id).
#[derive(Debug)]
pub struct DuplicateCache {
    shards: Vec<Shard>,
    hasher: foldhash::fast::RandomState,
    /// Origin-Hosts (ASCII lower case) and their ids.
    hosts: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
}

impl DuplicateCache {
    /// At most `capacity` entries (at least 1), each kept for `ttl` after its request arrived.
    /// A cache of more than a few thousand entries is sharded: each shard holds its share of
    /// `capacity` and evicts its own oldest entries.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        let capacity = capacity.max(1);
        let n = (capacity / SHARD_ENTRIES).clamp(1, MAX_SHARDS);
        let shards = (0..n)
            .map(|i| {
                // The first `capacity % n` shards take one more, so the total is `capacity`.
                let cap = capacity / n + usize::from(i < capacity % n);
                Shard {
                    entries: HashMap::with_capacity_and_hasher(cap, Default::default()),
                    order: VecDeque::with_capacity(cap),
                    capacity: cap.max(1),
                    ttl,
                }
            })
            .collect();
        Self {
            shards,
            hasher: Default::default(),
            hosts: HashMap::default(),
        }
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.entries.len()).sum()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.entries.is_empty())
    }

    /// The id of `origin_host` (compared without regard to ASCII case), given a new one if
    /// `add` and fewer than [`MAX_HOSTS`] are known.
    fn host_id(&mut self, origin_host: &str, add: bool) -> Option<u32> {
        let lower;
        let host = if origin_host.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = origin_host.to_ascii_lowercase();
            lower.as_str()
        } else {
            origin_host
        };
        if let Some(&id) = self.hosts.get(host) {
            return Some(id);
        }
        let id = u32::try_from(self.hosts.len()).ok()?;
        if !add || self.hosts.len() >= MAX_HOSTS {
            return None;
        }
        self.hosts.insert(host.into(), id);
        Some(id)
    }

    fn key(&mut self, origin_host: &str, end_to_end: u32, add: bool) -> Option<Key> {
        let id = self.host_id(origin_host, add)?;
        Some(u64::from(id) << 32 | u64::from(end_to_end))
    }

    fn shard(&mut self, key: Key) -> Option<&mut Shard> {
        let n = self.shards.len();
        let i = (self.hasher.hash_one(key) % n as u64) as usize;
        self.shards.get_mut(i)
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
        let Some(key) = self.key(origin_host, end_to_end, true) else {
            // An Origin-Host beyond the MAX_HOSTS known: not checked.
            return Lookup::New;
        };
        match self.shard(key) {
            Some(shard) => shard.check(now, key, hop_by_hop),
            // Unreachable: `new` makes at least one shard. A request is evaluated then.
            None => Lookup::New,
        }
    }

    /// Records the encoded answer of a request first seen by [`check`](Self::check).
    pub fn complete(&mut self, origin_host: &str, end_to_end: u32, answer: Vec<u8>) {
        let Some(key) = self.key(origin_host, end_to_end, false) else {
            return;
        };
        if let Some(e) = self.shard(key).and_then(|s| s.entries.get_mut(&key)) {
            e.slot = Slot::Answered(answer);
        }
    }

    /// Forgets an in-flight request that will not be answered (so a retransmission is
    /// evaluated).
    pub fn abandon(&mut self, origin_host: &str, end_to_end: u32) {
        let Some(key) = self.key(origin_host, end_to_end, false) else {
            return;
        };
        if let Some(shard) = self.shard(key) {
            if matches!(
                shard.entries.get(&key).map(|e| &e.slot),
                Some(Slot::InFlight)
            ) {
                shard.entries.remove(&key);
            }
        }
    }

    /// Drops expired entries (of every shard; [`check`](Self::check) purges its own shard).
    pub fn purge(&mut self, now: Instant) {
        for s in &mut self.shards {
            s.purge(now);
        }
    }
}

/// One shard: its entries, their insertion order and its share of the capacity.
#[derive(Debug)]
struct Shard {
    entries: HashMap<Key, Entry, foldhash::fast::RandomState>,
    /// Insertion order with each entry's expiry, for expiry and eviction.
    order: VecDeque<(Key, Instant)>,
    capacity: usize,
    ttl: Duration,
}

impl Shard {
    fn check(&mut self, now: Instant, key: Key, hop_by_hop: u32) -> Lookup {
        self.purge(now);
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
        self.order.push_back((key, expires));
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

    fn purge(&mut self, now: Instant) {
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

    /// A large cache is sharded, and still holds exactly its capacity: the newest entries
    /// stay, every shard evicts its oldest.
    #[test]
    fn a_sharded_cache_holds_its_capacity() {
        let t0 = Instant::now();
        let cap = 20_000;
        let mut c = DuplicateCache::new(cap, Duration::from_secs(240));
        assert!(c.shards.len() > 1, "{} shards", c.shards.len());
        assert_eq!(c.shards.iter().map(|s| s.capacity).sum::<usize>(), cap);
        for e in 0..100_000u32 {
            assert_eq!(c.check(t0, "PGW", e, 0), Lookup::New);
            c.complete("pgw", e, vec![0; 20]);
        }
        assert_eq!(c.len(), cap);
        // The newest entry of all is still there, in whatever shard it fell.
        assert!(matches!(c.check(t0, "pgw", 99_999, 7), Lookup::Answered(_)));
        // Expiry reaches every shard.
        c.purge(t0 + Duration::from_secs(241));
        assert!(c.is_empty());
    }

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

    /// Origin-Hosts are told apart up to MAX_HOSTS; requests from further ones are all new
    /// (and leave nothing behind), the known ones are still checked.
    #[test]
    fn hosts_beyond_the_bound_are_not_checked() {
        let t0 = Instant::now();
        let mut c = DuplicateCache::new(100_000, Duration::from_secs(240));
        for h in 0..MAX_HOSTS {
            assert_eq!(c.check(t0, &format!("Host{h}"), 1, 0), Lookup::New);
        }
        assert_eq!(c.check(t0, "extra", 1, 0), Lookup::New);
        assert_eq!(c.check(t0, "extra", 1, 0), Lookup::New);
        c.complete("extra", 1, vec![0; 20]);
        assert_eq!(c.len(), MAX_HOSTS);
        assert_eq!(c.check(t0, "host7", 1, 0), Lookup::InFlight);
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
        let order = c.shards.iter().map(|s| s.order.len()).sum::<usize>();
        assert!(order <= 2 * 4 + 2, "{order}");
        // Live entries are still evicted oldest first.
        for e in 0..6 {
            assert_eq!(c.check(t0, "p", 100_000 + e, 0), Lookup::New);
        }
        assert_eq!(c.len(), 4);
        assert_eq!(c.check(t0, "p", 100_005, 0), Lookup::InFlight);
        assert_eq!(c.check(t0, "p", 100_000, 0), Lookup::New);
    }
}
