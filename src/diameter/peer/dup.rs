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
//! Two generations, each a hash map that is only ever added to and an arena of answer bytes:
//! new requests go into the young one; when it holds half the capacity, or is half the TTL old,
//! the old generation is dropped whole and the young one becomes old. So an answer is kept for
//! at least half the TTL or half the capacity's worth of later requests, and never beyond the
//! TTL. Why not one map that evicts its oldest entry per insert: at capacity that costs a cache
//! miss and a free per request, and the map's tombstones made it rehash in place every few
//! seconds — 25 ms with every request of the daemon waiting (200 000 entries). Dropping a
//! generation frees one table and a few hundred 64 KiB chunks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// An interned Origin-Host (see [`DuplicateCache::host_id`]) and an End-to-End Identifier:
/// one integer, so a lookup hashes 8 bytes and an entry owns no string.
type Key = u64;

/// Distinct Origin-Hosts the cache tells apart. Requests from further hosts are not checked
/// for duplicates (each is new); a network has a handful of peers, each with one Origin-Host.
const MAX_HOSTS: usize = 4096;

/// Size of an arena chunk (a larger answer gets a chunk of its own size).
const CHUNK: usize = 64 * 1024;

#[derive(Clone, Copy, Debug)]
enum Slot {
    InFlight,
    /// Given up ([`DuplicateCache::abandon`]): as if absent.
    Abandoned,
    /// The answer's bytes in the generation's arena.
    Answered {
        chunk: u32,
        at: u32,
        len: u32,
    },
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

/// One generation: entries that are never removed one by one, and their answers' bytes.
#[derive(Debug)]
struct Generation {
    entries: HashMap<Key, Slot, foldhash::fast::RandomState>,
    chunks: Vec<Vec<u8>>,
    /// When it first saw a request as the young generation.
    started: Option<Instant>,
    abandoned: usize,
}

impl Generation {
    fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::with_capacity_and_hasher(capacity, Default::default()),
            chunks: Vec::new(),
            started: None,
            abandoned: 0,
        }
    }

    fn live(&self) -> usize {
        self.entries.len() - self.abandoned
    }

    fn answer(&self, chunk: u32, at: u32, len: u32) -> Option<&[u8]> {
        let (at, len) = (at as usize, len as usize);
        self.chunks.get(chunk as usize)?.get(at..at + len)
    }

    /// Stores `answer` for `key`, if the key is here.
    fn complete(&mut self, key: Key, answer: &[u8]) -> bool {
        let Some(slot) = self.entries.get_mut(&key) else {
            return false;
        };
        let (Ok(len), room) = (
            u32::try_from(answer.len()),
            self.chunks.last().map_or(0, |c| c.capacity() - c.len()),
        ) else {
            return true;
        };
        if room < answer.len() {
            self.chunks
                .push(Vec::with_capacity(CHUNK.max(answer.len())));
        }
        let index = self.chunks.len() - 1;
        let (Some(chunk), Ok(c)) = (self.chunks.last_mut(), u32::try_from(index)) else {
            return true;
        };
        let Ok(at) = u32::try_from(chunk.len()) else {
            return true;
        };
        chunk.extend_from_slice(answer);
        if matches!(slot, Slot::Abandoned) {
            self.abandoned -= 1;
        }
        *slot = Slot::Answered { chunk: c, at, len };
        true
    }
}

/// Bounded cache of answers keyed by (Origin-Host, End-to-End-Id).
#[derive(Debug)]
pub struct DuplicateCache {
    young: Generation,
    old: Generation,
    /// Entries a generation takes before it ages: half the capacity.
    generation: usize,
    ttl: Duration,
    /// Origin-Hosts (ASCII lower case) and their ids.
    hosts: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
}

impl DuplicateCache {
    /// At most `capacity` entries (at least 2), each kept for up to `ttl` after its request
    /// arrived and for at least half of either.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        let generation = (capacity / 2).max(1);
        Self {
            young: Generation::new(generation),
            old: Generation::new(0),
            generation,
            ttl,
            hosts: HashMap::default(),
        }
    }

    /// Number of entries held (given-up ones not counted).
    pub fn len(&self) -> usize {
        self.young.live() + self.old.live()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    /// Ages the generations: the young one becomes old when full or half the TTL old; the old
    /// one goes when its first entry could be older than the TTL.
    fn age(&mut self, now: Instant) {
        let started = *self.young.started.get_or_insert(now);
        if self.young.entries.len() >= self.generation || now >= started + self.ttl / 2 {
            let mut young = std::mem::replace(&mut self.young, Generation::new(self.generation));
            young.started.get_or_insert(now);
            self.young.started = Some(now);
            self.old = young;
        }
        if self
            .old
            .started
            .is_some_and(|s| now >= s + self.ttl && !self.old.entries.is_empty())
        {
            self.old = Generation::new(0);
        }
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
        self.age(now);
        let Some(key) = self.key(origin_host, end_to_end, true) else {
            // An Origin-Host beyond the MAX_HOSTS known: not checked.
            return Lookup::New;
        };
        for generation in [&self.young, &self.old] {
            match generation.entries.get(&key) {
                Some(Slot::InFlight) => return Lookup::InFlight,
                Some(&Slot::Answered { chunk, at, len }) => {
                    if let Some(b) = generation.answer(chunk, at, len) {
                        return Lookup::Answered(with_hop_by_hop(b, hop_by_hop));
                    }
                }
                Some(Slot::Abandoned) | None => {}
            }
        }
        match self.young.entries.get_mut(&key) {
            Some(slot) => {
                // Abandoned here before: in flight again.
                *slot = Slot::InFlight;
                self.young.abandoned -= 1;
            }
            None => {
                self.young.entries.insert(key, Slot::InFlight);
            }
        }
        Lookup::New
    }

    /// Records the encoded answer of a request first seen by [`check`](Self::check).
    pub fn complete(&mut self, origin_host: &str, end_to_end: u32, answer: &[u8]) {
        let Some(key) = self.key(origin_host, end_to_end, false) else {
            return;
        };
        if !self.young.complete(key, answer) {
            self.old.complete(key, answer);
        }
    }

    /// Forgets an in-flight request that will not be answered (so a retransmission is
    /// evaluated).
    pub fn abandon(&mut self, origin_host: &str, end_to_end: u32) {
        let Some(key) = self.key(origin_host, end_to_end, false) else {
            return;
        };
        for generation in [&mut self.young, &mut self.old] {
            if let Some(slot) = generation.entries.get_mut(&key) {
                if matches!(slot, Slot::InFlight) {
                    *slot = Slot::Abandoned;
                    generation.abandoned += 1;
                }
                return;
            }
        }
    }

    /// Drops what has aged out.
    pub fn purge(&mut self, now: Instant) {
        self.age(now);
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

    /// A large cache holds between half its capacity and its capacity, the newest entries;
    /// everything goes once the TTL has passed.
    #[test]
    fn generations_hold_between_half_and_all_of_the_capacity() {
        let t0 = Instant::now();
        let cap = 20_000;
        let mut c = DuplicateCache::new(cap, Duration::from_secs(240));
        for e in 0..100_000u32 {
            assert_eq!(c.check(t0, "PGW", e, 0), Lookup::New);
            c.complete("pgw", e, &e.to_be_bytes().repeat(5));
            assert!(c.len() <= cap, "{} at {e}", c.len());
        }
        assert!(c.len() >= cap / 2, "{}", c.len());
        // The newest half of the capacity is all there, with its own answers.
        for e in 100_000 - cap as u32 / 2..100_000 {
            let Lookup::Answered(b) = c.check(t0, "pgw", e, 7) else {
                panic!("{e} gone")
            };
            assert_eq!(b.get(16..20), Some(&e.to_be_bytes()[..]), "{e}");
        }
        assert_eq!(c.check(t0, "pgw", 0, 7), Lookup::New, "the oldest went");
        c.purge(t0 + Duration::from_secs(241));
        assert!(c.is_empty(), "{}", c.len());
    }

    /// Time ages the generations too: an answer is kept for at least half the TTL and never
    /// for the whole TTL past its request.
    #[test]
    fn answers_live_between_half_the_ttl_and_the_ttl() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(100);
        let mut c = DuplicateCache::new(1000, ttl);
        c.check(t0, "p", 1, 0);
        c.complete("p", 1, &[0; 20]);
        let at = |s| t0 + Duration::from_secs(s);
        assert!(matches!(c.check(at(49), "p", 1, 0), Lookup::Answered(_)));
        assert!(matches!(c.check(at(60), "p", 1, 0), Lookup::Answered(_)));
        assert_eq!(c.check(at(100), "p", 1, 0), Lookup::New);
    }

    /// An answer larger than an arena chunk is kept whole.
    #[test]
    fn a_large_answer_is_kept_whole() {
        let t0 = Instant::now();
        let mut c = DuplicateCache::new(10, Duration::from_secs(60));
        let big: Vec<u8> = (0..3 * CHUNK).map(|i| i as u8).collect();
        c.check(t0, "p", 1, 0);
        c.complete("p", 1, &big);
        c.check(t0, "p", 2, 0);
        c.complete("p", 2, &[9; 20]);
        let Lookup::Answered(b) = c.check(t0, "p", 1, 0x0102_0304) else {
            panic!()
        };
        assert_eq!(b.len(), big.len());
        assert_eq!(b.get(16..), big.get(16..));
        let Lookup::Answered(b) = c.check(t0, "p", 2, 0) else {
            panic!()
        };
        assert_eq!(b.len(), 20);
    }

    #[test]
    fn retransmission_gets_the_first_answer() {
        let t0 = Instant::now();
        let mut c = DuplicateCache::new(10, Duration::from_secs(60));
        assert_eq!(c.check(t0, "PGW", 5, 1), Lookup::New);
        assert_eq!(c.check(t0, "pgw", 5, 2), Lookup::InFlight);
        c.complete("pgw", 5, &[0; 20]);
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
        c.complete("extra", 1, &[0; 20]);
        assert_eq!(c.len(), MAX_HOSTS);
        assert_eq!(c.check(t0, "host7", 1, 0), Lookup::InFlight);
    }

    /// Abandoned requests (shed under overload) leave nothing counted and no trail.
    #[test]
    fn abandoned_requests_leave_nothing_behind() {
        let t0 = Instant::now();
        let mut c = DuplicateCache::new(4, Duration::from_secs(240));
        for e in 0..10_000 {
            assert_eq!(c.check(t0, "p", e, 0), Lookup::New);
            c.abandon("p", e);
        }
        assert!(c.is_empty());
        assert!(c.young.entries.len() + c.old.entries.len() <= 4);
        // Live entries: the newest stay, the oldest go.
        for e in 0..6 {
            assert_eq!(c.check(t0, "p", 100_000 + e, 0), Lookup::New);
        }
        assert!((2..=4).contains(&c.len()), "{}", c.len());
        assert_eq!(c.check(t0, "p", 100_005, 0), Lookup::InFlight);
        assert_eq!(c.check(t0, "p", 100_000, 0), Lookup::New);
    }
}
