//! Rate limiting of log lines by key (a source address and a reason), in bounded memory.
//!
//! [`LogLimiter::admit`] says whether a line may be written now: the first event of a key is
//! written, the next ones within [`LogLimiter::interval`] are not (they are counted), and the
//! first event after the interval is written again with the number suppressed in between
//! ([`Admit::suppressed`]), so the operator sees "suppressed N" on the next line.
//!
//! # Bounded memory under a flood of spoofed sources
//! At most `capacity` keys are remembered. When the map is full, keys whose interval is over
//! are dropped (at most once per interval: a full map of fresh keys is not scanned on every
//! event). A new key that still finds no room shares one *overflow* slot with every other such
//! key: one line per interval for all of them, marked [`Admit::overflow`], with their count.
//! So memory is `capacity` entries whatever the number of sources, and the log carries at most
//! `capacity + 1` lines per interval.
//!
//! Why not the `governor` crate: its keyed limiter grows with every key until its owner calls
//! `retain_recent`, and it counts no suppressed events; this is a map and two counters.
//!
//! This module does not log and reads no clock: the caller passes `now` and writes the line.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A line may be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admit {
    /// Events of this key (or of the overflow slot) not logged since its previous line.
    pub suppressed: u64,
    /// The key found no room: this line stands for every key in the overflow slot.
    pub overflow: bool,
}

/// When a key last had a line, and what was suppressed since.
#[derive(Clone, Copy, Debug)]
struct Slot {
    logged_at: Instant,
    suppressed: u64,
}

impl Slot {
    fn new(now: Instant) -> Self {
        Self {
            logged_at: now,
            suppressed: 0,
        }
    }

    /// Counts an event; `Some(suppressed)` when its line may be written.
    fn hit(&mut self, now: Instant, interval: Duration) -> Option<u64> {
        if now.saturating_duration_since(self.logged_at) >= interval {
            let n = self.suppressed;
            *self = Self::new(now);
            Some(n)
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
            None
        }
    }
}

struct State<K> {
    slots: HashMap<K, Slot, foldhash::fast::RandomState>,
    overflow: Option<Slot>,
    /// No pruning before this instant (see the module docs).
    next_prune: Option<Instant>,
}

/// One line per key per interval, with the count of those suppressed (see the module docs).
pub struct LogLimiter<K> {
    interval: Duration,
    capacity: usize,
    /// Held for one map lookup (or one prune) per event, never across I/O.
    state: Mutex<State<K>>,
}

impl<K: Eq + Hash> LogLimiter<K> {
    /// A limiter of one line per key per `interval`, remembering at most `capacity` keys.
    pub fn new(interval: Duration, capacity: usize) -> Self {
        Self {
            interval,
            capacity: capacity.max(1),
            state: Mutex::new(State {
                slots: HashMap::default(),
                overflow: None,
                next_prune: None,
            }),
        }
    }

    /// The interval between two lines of one key.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Counts an event of `key` at `now`; `Some` when its line may be written.
    pub fn admit(&self, key: K, now: Instant) -> Option<Admit> {
        let mut st = self.state.lock();
        let interval = self.interval;
        if let Some(slot) = st.slots.get_mut(&key) {
            return slot.hit(now, interval).map(|suppressed| Admit {
                suppressed,
                overflow: false,
            });
        }
        if st.slots.len() >= self.capacity && st.next_prune.is_none_or(|t| now >= t) {
            st.slots
                .retain(|_, s| now.saturating_duration_since(s.logged_at) < interval);
            let oldest = st.slots.values().map(|s| s.logged_at).min();
            st.next_prune = Some(oldest.map_or(now, |t| t + interval).max(now + interval / 8));
        }
        if st.slots.len() < self.capacity {
            st.slots.insert(key, Slot::new(now));
            return Some(Admit {
                suppressed: 0,
                overflow: false,
            });
        }
        if let Some(slot) = &mut st.overflow {
            return slot.hit(now, interval).map(|suppressed| Admit {
                suppressed,
                overflow: true,
            });
        }
        st.overflow = Some(Slot::new(now));
        Some(Admit {
            suppressed: 0,
            overflow: true,
        })
    }

    /// Keys remembered (for tests and bounds checks).
    pub fn len(&self) -> usize {
        self.state.lock().slots.len()
    }

    /// No key remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    const I: Duration = Duration::from_secs(10);

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn one_line_per_key_per_interval_then_the_suppressed_count() {
        let l = LogLimiter::new(I, 16);
        let t0 = Instant::now();
        let first = Admit {
            suppressed: 0,
            overflow: false,
        };
        assert_eq!(l.admit((ip(1), "unknown_client"), t0), Some(first));
        for s in 1..=5 {
            assert_eq!(
                l.admit((ip(1), "unknown_client"), t0 + Duration::from_secs(s)),
                None
            );
        }
        // Other keys are independent.
        assert_eq!(l.admit((ip(1), "bad_authenticator"), t0), Some(first));
        assert_eq!(l.admit((ip(2), "unknown_client"), t0), Some(first));
        // After the interval: a line, with the 5 suppressed.
        assert_eq!(
            l.admit((ip(1), "unknown_client"), t0 + I),
            Some(Admit {
                suppressed: 5,
                overflow: false
            })
        );
        assert_eq!(
            l.admit((ip(1), "unknown_client"), t0 + I + Duration::from_secs(1)),
            None
        );
        assert_eq!(
            l.admit((ip(1), "unknown_client"), t0 + I * 3),
            Some(Admit {
                suppressed: 1,
                overflow: false
            })
        );
    }

    #[test]
    fn a_flood_of_sources_stays_bounded_and_shares_one_overflow_line() {
        let cap = 64;
        let l = LogLimiter::new(I, cap);
        let t0 = Instant::now();
        let mut lines = 0;
        let mut overflow_lines = 0;
        for n in 0..10_000u32 {
            if let Some(a) = l.admit(ip(n), t0 + Duration::from_micros(u64::from(n))) {
                lines += 1;
                overflow_lines += u32::from(a.overflow);
            }
        }
        assert!(l.len() <= cap);
        assert_eq!((lines, overflow_lines), (cap + 1, 1));
        // One interval later: old keys are pruned, new sources get lines of their own, and the
        // overflow slot reports what it swallowed.
        let t1 = t0 + I + Duration::from_secs(1);
        assert_eq!(
            l.admit(ip(1_000_000), t1),
            Some(Admit {
                suppressed: 0,
                overflow: false
            })
        );
        assert!(l.len() <= cap);
        for n in 0..cap as u32 - 1 {
            l.admit(ip(2_000_000 + n), t1);
        }
        let a = l.admit(ip(3_000_000), t1).unwrap();
        assert!(a.overflow);
        assert_eq!(a.suppressed, 10_000 - cap as u64 - 1);
    }

    #[test]
    fn a_full_map_is_not_scanned_on_every_event() {
        let l = LogLimiter::new(I, 4);
        let t0 = Instant::now();
        for n in 0..4 {
            l.admit(ip(n), t0);
        }
        // Full of fresh keys: the first newcomer prunes (nothing to drop) and sets the next
        // prune to when the oldest expires; the others go to the overflow slot meanwhile.
        assert!(l.admit(ip(10), t0).unwrap().overflow);
        assert_eq!(l.state.lock().next_prune, Some(t0 + I));
        assert_eq!(l.admit(ip(11), t0 + Duration::from_secs(1)), None);
        assert_eq!(l.len(), 4);
        assert!(!l.admit(ip(12), t0 + I).unwrap().overflow);
    }
}
