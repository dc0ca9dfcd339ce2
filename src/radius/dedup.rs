//! Duplicate detection: a bounded cache of encoded responses (RFC 5080 §2.2.2).
//!
//! > Each server SHOULD keep a cache of recent responses […] indexed by (Code, Identifier,
//! > source IP, source port, Request Authenticator) […] When a duplicate request is received, the
//! > server SHOULD send the cached response […] The cache entry SHOULD be kept for a time
//! > (e.g. 5 seconds) […]
//!
//! A retransmission gets the first answer byte for byte and is never evaluated again, so it
//! can neither bind twice nor flip a decision. A retransmission that arrives while the first copy
//! is still being evaluated is dropped ([`Begin::InProgress`]); the client retries after its
//! timeout and then finds the cached answer.
//!
//! The key omits the Code: each listening socket (auth, acct) has its own cache, and on one port
//! an (address, Identifier, Authenticator) triple names one request.
//!
//! # Calling contract
//! - `now` comes from a monotonic clock ([`Instant`]) and never goes backwards between calls.
//! - Every [`Begin::Started`] is followed by [`ResponseCache::insert`] (answer sent) or
//!   [`ResponseCache::abandon`] (request dropped, e.g. the engine failed); a marker left alone
//!   expires with the window like any entry.
//! - Entries expire `window` after they were last written: a marker `window` after `begin`, an
//!   answer `window` after `insert`. An evaluation slower than the window (5 s: the client has
//!   given up by then) could see its retransmission evaluated again; the engine's "first wins"
//!   binding keeps that harmless.
//!
//! # Concurrency
//! `ResponseCache` is a plain `Send` struct with no locking. The shell shards it: a
//! `Vec<Mutex<ResponseCache>>` indexed by [`DedupKey::shard`], each lock held only for one
//! `begin`/`insert` call (never across the engine's await).

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::radius::codec::Authenticator;

/// RFC 5080 §2.2.2's example lifetime.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(5);
/// Default bound on entries per cache (shard).
pub const DEFAULT_CAPACITY: usize = 65_536;

/// (source address and port, Identifier, Request Authenticator).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DedupKey {
    pub src: SocketAddr,
    pub identifier: u8,
    pub authenticator: Authenticator,
}

impl DedupKey {
    pub fn new(src: SocketAddr, identifier: u8, authenticator: Authenticator) -> Self {
        Self {
            src,
            identifier,
            authenticator,
        }
    }

    /// The shard (0..`shards`) this key lives in; 0 when `shards` is 0. Stable within a process.
    pub fn shard(&self, shards: usize) -> usize {
        if shards == 0 {
            return 0;
        }
        // A fixed seed: the shard only spreads lock contention (each shard's map is seeded).
        let h = foldhash::fast::FixedState::with_seed(0x5eed_d00d).hash_one(self);
        // The modulo keeps the result below `shards`, which fits usize.
        usize::try_from(h % shards as u64).unwrap_or(0)
    }
}

#[derive(Debug)]
enum State {
    InProgress,
    Done(Box<[u8]>),
}

#[derive(Debug)]
struct Entry {
    state: State,
    written: Instant,
}

/// What [`ResponseCache::begin`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin<'a> {
    /// A duplicate of an answered request: send these octets again.
    Cached(&'a [u8]),
    /// A duplicate of a request still being evaluated: drop it (label `duplicate_in_progress`).
    InProgress,
    /// A new request, now marked in progress: evaluate it, then `insert` or `abandon`.
    Started,
}

/// Bounded response cache with a time window. See the module docs.
#[derive(Debug)]
pub struct ResponseCache {
    /// foldhash: seeded per map, several times cheaper than SipHash on this 40-octet key.
    entries: HashMap<DedupKey, Entry, foldhash::fast::RandomState>,
    /// Write order, oldest first. A record is stale when its entry was rewritten or removed
    /// since (its time no longer matches); stale records are skipped when popped. Each live
    /// entry has at most two records (marker, answer), so this stays below 2 × capacity + 2.
    order: VecDeque<(DedupKey, Instant)>,
    window: Duration,
    capacity: usize,
}

impl Default for ResponseCache {
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW, DEFAULT_CAPACITY)
    }
}

impl ResponseCache {
    /// A cache keeping entries for `window`, at most `capacity` of them (at least 1).
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            entries: HashMap::default(),
            order: VecDeque::new(),
            window,
            capacity: capacity.max(1),
        }
    }

    /// Live entries (markers and answers), expired ones included until the next write.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn live(&self, e: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(e.written) < self.window
    }

    /// The cached answer for `key`, if one was stored less than the window ago.
    pub fn lookup(&self, key: &DedupKey, now: Instant) -> Option<&[u8]> {
        match self.entries.get(key) {
            Some(e) if self.live(e, now) => match &e.state {
                State::Done(b) => Some(b),
                State::InProgress => None,
            },
            _ => None,
        }
    }

    /// Looks `key` up and, when it is new (or expired), marks it in progress.
    pub fn begin(&mut self, key: DedupKey, now: Instant) -> Begin<'_> {
        self.expire(now);
        let window = self.window;
        let fresh = match self.entries.get(&key) {
            Some(e) => now.saturating_duration_since(e.written) >= window,
            None => true,
        };
        if fresh {
            self.write(key, State::InProgress, now);
            return Begin::Started;
        }
        match self.entries.get(&key).map(|e| &e.state) {
            Some(State::Done(b)) => Begin::Cached(b),
            Some(State::InProgress) => Begin::InProgress,
            // Unreachable (checked above); starting again is the safe answer.
            None => Begin::Started,
        }
    }

    /// Stores the encoded answer for `key` (replacing its in-progress marker).
    pub fn insert(&mut self, key: DedupKey, response: Vec<u8>, now: Instant) {
        self.expire(now);
        self.write(key, State::Done(response.into_boxed_slice()), now);
    }

    /// Removes the in-progress marker of a request that will not be answered, so a
    /// retransmission is evaluated. Leaves a stored answer alone.
    pub fn abandon(&mut self, key: &DedupKey) {
        if let MapEntry::Occupied(o) = self.entries.entry(*key) {
            if matches!(o.get().state, State::InProgress) {
                o.remove();
            }
        }
    }

    fn write(&mut self, key: DedupKey, state: State, now: Instant) {
        self.entries.insert(
            key,
            Entry {
                state,
                written: now,
            },
        );
        self.order.push_back((key, now));
        while self.entries.len() > self.capacity {
            if !self.pop_oldest() {
                break;
            }
        }
        // Bound stale records (rewrites of the same key by a caller that never expires).
        if self.order.len() > 2 * self.capacity + 2 {
            self.order
                .retain(|(k, t)| self.entries.get(k).is_some_and(|e| e.written == *t));
        }
    }

    /// Removes the oldest live entry; false when there is none.
    fn pop_oldest(&mut self) -> bool {
        while let Some((k, t)) = self.order.pop_front() {
            if self.entries.get(&k).is_some_and(|e| e.written == t) {
                self.entries.remove(&k);
                return true;
            }
        }
        false
    }

    /// Drops entries written a window or more before `now`.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(k, t)) = self.order.front() {
            if now.saturating_duration_since(t) < self.window {
                break;
            }
            self.order.pop_front();
            if self.entries.get(&k).is_some_and(|e| e.written == t) {
                self.entries.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16, id: u8) -> DedupKey {
        DedupKey::new(SocketAddr::from(([10, 0, 0, 1], port)), id, [id; 16])
    }

    #[test]
    fn duplicate_gets_cached_bytes() {
        let t0 = Instant::now();
        let mut c = ResponseCache::default();
        assert_eq!(c.begin(key(1, 1), t0), Begin::Started);
        assert_eq!(c.begin(key(1, 1), t0), Begin::InProgress);
        assert_eq!(c.lookup(&key(1, 1), t0), None);
        c.insert(key(1, 1), vec![2, 1, 0, 20], t0);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(c.begin(key(1, 1), t1), Begin::Cached(&[2, 1, 0, 20]));
        assert_eq!(c.lookup(&key(1, 1), t1), Some(&[2u8, 1, 0, 20][..]));
        // Another port, identifier or authenticator is another request.
        assert_eq!(c.begin(key(2, 1), t1), Begin::Started);
        assert_eq!(c.begin(key(1, 2), t1), Begin::Started);
        let mut other_auth = key(1, 1);
        other_auth.authenticator[0] ^= 1;
        assert_eq!(c.begin(other_auth, t1), Begin::Started);
    }

    #[test]
    fn window_expires() {
        let t0 = Instant::now();
        let mut c = ResponseCache::new(Duration::from_secs(5), 10);
        c.begin(key(1, 1), t0);
        c.insert(key(1, 1), vec![1], t0 + Duration::from_secs(1));
        // Window counts from the answer.
        assert!(c
            .lookup(&key(1, 1), t0 + Duration::from_millis(5900))
            .is_some());
        assert!(c.lookup(&key(1, 1), t0 + Duration::from_secs(6)).is_none());
        assert_eq!(
            c.begin(key(1, 1), t0 + Duration::from_secs(6)),
            Begin::Started
        );
        c.expire(t0 + Duration::from_secs(60));
        assert!(c.is_empty());
    }

    #[test]
    fn stale_marker_expires() {
        let t0 = Instant::now();
        let mut c = ResponseCache::new(Duration::from_secs(5), 10);
        assert_eq!(c.begin(key(1, 1), t0), Begin::Started);
        assert_eq!(
            c.begin(key(1, 1), t0 + Duration::from_secs(5)),
            Begin::Started
        );
    }

    #[test]
    fn abandon_allows_reevaluation_but_keeps_answers() {
        let t0 = Instant::now();
        let mut c = ResponseCache::default();
        c.begin(key(1, 1), t0);
        c.abandon(&key(1, 1));
        assert_eq!(c.begin(key(1, 1), t0), Begin::Started);
        c.insert(key(1, 1), vec![9], t0);
        c.abandon(&key(1, 1));
        assert_eq!(c.begin(key(1, 1), t0), Begin::Cached(&[9]));
    }

    #[test]
    fn capacity_evicts_oldest() {
        let t0 = Instant::now();
        let mut c = ResponseCache::new(Duration::from_secs(5), 3);
        for id in 0..3u8 {
            c.begin(key(1, id), t0);
            c.insert(
                key(1, id),
                vec![id],
                t0 + Duration::from_millis(u64::from(id)),
            );
        }
        c.begin(key(1, 3), t0 + Duration::from_millis(10));
        assert_eq!(c.len(), 3);
        let t = t0 + Duration::from_millis(20);
        assert!(c.lookup(&key(1, 0), t).is_none());
        assert!(c.lookup(&key(1, 1), t).is_some());
        assert!(c.lookup(&key(1, 2), t).is_some());
        assert_eq!(c.begin(key(1, 3), t), Begin::InProgress);
    }

    #[test]
    fn order_queue_stays_bounded() {
        let t0 = Instant::now();
        let mut c = ResponseCache::new(Duration::from_secs(3600), 4);
        for i in 0..10_000u32 {
            let k = key(1, (i % 2) as u8);
            c.begin(k, t0);
            c.abandon(&k);
        }
        assert!(c.order.len() <= 2 * 4 + 2);
        assert!(c.len() <= 4);
    }

    #[test]
    fn shards_are_stable_and_in_range() {
        for n in [1usize, 2, 7, 16] {
            for id in 0..50 {
                let s = key(1000, id).shard(n);
                assert!(s < n);
                assert_eq!(s, key(1000, id).shard(n));
            }
        }
        assert_eq!(key(1, 1).shard(0), 0);
    }
}
