//! How far this node's cache has applied etcd, and the commits waiting for it to reach their
//! own revision (read-your-writes: a bind is answered once this node's reads show it).
//!
//! Each waiter is keyed by the revision it needs and woken once, when the cache reaches it. A
//! `tokio::sync::watch` channel, used before, woke every waiter on every applied revision: with
//! a hundred binds in flight, each revision unparked a hundred blocking-pool threads only for
//! most of them to park again (`scripts/bench-cluster.sh --phases c`: 4.8 ms of node CPU per
//! first bind, 257 binds/s on two nodes).
//!
//! This module applies nothing and decides nothing; the watch (`follow`) says how far it got.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// The applied revision and its waiters.
pub(super) struct Applied {
    value: AtomicU64,
    waiters: Mutex<BTreeMap<u64, Vec<oneshot::Sender<()>>>>,
}

impl Applied {
    pub(super) fn new(at: u64) -> Self {
        Self {
            value: AtomicU64::new(at),
            waiters: Mutex::new(BTreeMap::new()),
        }
    }

    /// The revision the cache has applied.
    pub(super) fn get(&self) -> u64 {
        self.value.load(Ordering::SeqCst)
    }

    /// Moves forward to `position` (never back) and wakes the waiters it satisfies; whether it
    /// moved.
    pub(super) fn advance(&self, position: u64) -> bool {
        let moved = self.value.fetch_max(position, Ordering::SeqCst) < position;
        if moved {
            self.wake(position);
        }
        moved
    }

    /// Sets `position`, back if need be (a rebuild's revision), and wakes the waiters it
    /// satisfies.
    pub(super) fn reset(&self, position: u64) {
        self.value.store(position, Ordering::SeqCst);
        self.wake(position);
    }

    fn wake(&self, position: u64) {
        let ready = {
            let mut w = self.waiters.lock();
            let later = w.split_off(&position.saturating_add(1));
            std::mem::replace(&mut *w, later)
        };
        for tx in ready.into_values().flatten() {
            let _ = tx.send(()); // a waiter that timed out is gone: nothing to wake
        }
    }

    /// Waits (at most `timeout`) until the cache has applied `rev`; whether it has.
    pub(super) async fn wait(&self, rev: u64, timeout: Duration) -> bool {
        let rx = {
            // Checked under the lock `wake` takes after moving the value: either this sees the
            // new value, or `wake` sees this waiter.
            let mut w = self.waiters.lock();
            if self.get() >= rev {
                return true;
            }
            let (tx, rx) = oneshot::channel();
            w.entry(rev).or_default().push(tx);
            rx
        };
        matches!(tokio::time::timeout(timeout, rx).await, Ok(Ok(())))
    }

    /// Waiters registered (tests).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiters.lock().values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn each_waiter_wakes_when_its_revision_is_reached_and_not_before() {
        let a = Arc::new(Applied::new(10));
        assert!(a.wait(10, Duration::from_millis(1)).await, "already there");
        let spawn = |rev| {
            let a = a.clone();
            tokio::spawn(async move { a.wait(rev, Duration::from_secs(5)).await })
        };
        let (w12, w15) = (spawn(12), spawn(15));
        while a.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        assert!(a.advance(12));
        assert!(w12.await.unwrap());
        assert_eq!(a.waiting(), 1, "the waiter for 15 is still waiting");
        assert!(!a.advance(11), "never back");
        assert_eq!(a.get(), 12);
        a.reset(16);
        assert!(w15.await.unwrap());
        assert_eq!(a.waiting(), 0);
        a.reset(3);
        assert_eq!(a.get(), 3, "a rebuild may move it back");
        assert!(!a.wait(4, Duration::from_millis(20)).await, "times out");
    }
}
