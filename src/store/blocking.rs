//! Driving a ledger future from blocking code.
//!
//! The engine and the provisioning processor run on tokio's blocking pool and are synchronous;
//! the [`super::Ledger`] is async because its cluster implementation waits on etcd. [`wait`]
//! polls a future on the calling thread, parking it between wake-ups, as
//! `futures::executor::block_on` does. The embedded store's futures are ready at once; etcd's
//! are woken by the runtime's I/O driver, which runs on the runtime's worker threads (never on
//! the thread parked here), so this is safe on a blocking-pool thread and must not be used on an
//! async task.
//!
//! [`InFlight`] drives several such futures at once, a bounded number (the provisioning
//! processor's bulk batches on etcd, each waiting on its own transaction).
//!
//! This module does not choose a thread or a runtime; it only waits.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `fut` to completion on this thread.
pub fn wait<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// A future [`InFlight`] drives.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Up to `limit` futures driven together from blocking code, as [`wait`] drives one.
///
/// Each call polls every future still running, on the calling thread (parking it between
/// wake-ups when it must wait), and hands back the outputs of those that finished, in the order
/// they were noticed. A future that is dropped unfinished is cancelled where it stands: call
/// [`InFlight::finish`] before dropping when that matters.
pub struct InFlight<'a, T> {
    limit: usize,
    running: Vec<Pending<'a, T>>,
}

impl<'a, T> InFlight<'a, T> {
    /// At most `limit` (at least 1) running at once.
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            running: Vec::new(),
        }
    }

    /// How many are running.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Starts `fut` (polls it, and every other one), then waits while `limit` are still
    /// running. Returns the outputs of the futures that finished meanwhile. With a limit of 1
    /// this is [`wait`]: `fut` has finished when it returns.
    pub fn push(&mut self, fut: Pending<'a, T>) -> Vec<T> {
        self.running.push(fut);
        let mut done = self.poll_all();
        while self.running.len() >= self.limit {
            std::thread::park();
            done.extend(self.poll_all());
        }
        done
    }

    /// Waits for every running future; their outputs.
    pub fn finish(&mut self) -> Vec<T> {
        let mut done = self.poll_all();
        while !self.running.is_empty() {
            std::thread::park();
            done.extend(self.poll_all());
        }
        done
    }

    /// Polls each running future once with a waker for this thread; removes the finished ones.
    fn poll_all(&mut self) -> Vec<T> {
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut done = Vec::new();
        self.running
            .retain_mut(|fut| match fut.as_mut().poll(&mut cx) {
                Poll::Ready(v) => {
                    done.push(v);
                    false
                }
                Poll::Pending => true,
            });
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_keeps_at_most_limit_running_and_returns_every_output() {
        let mut set = InFlight::new(3);
        let mut receivers = Vec::new();
        let mut senders = Vec::new();
        for i in 0..3u32 {
            let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
            senders.push((i, tx));
            receivers.push(rx);
        }
        // Answered from another thread, a little later.
        let answer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            for (i, tx) in senders {
                tx.send(i).ok();
            }
        });
        let mut outputs = Vec::new();
        for (i, rx) in receivers.into_iter().enumerate() {
            outputs.extend(set.push(Box::pin(async move { rx.await.unwrap_or(u32::MAX) })));
            if i < 2 {
                // Below the limit: nothing waited, nothing finished yet.
                assert_eq!(set.len(), i + 1);
                assert!(outputs.is_empty());
            }
        }
        // The third reached the limit: it returned only once one of them had finished.
        assert!(set.len() < 3, "{} running", set.len());
        assert!(!outputs.is_empty());
        outputs.extend(set.push(Box::pin(async { 3 })));
        outputs.extend(set.finish());
        answer.join().ok();
        assert!(set.is_empty());
        outputs.sort_unstable();
        assert_eq!(outputs, vec![0, 1, 2, 3]);
    }

    #[test]
    fn in_flight_of_one_finishes_each_before_the_next() {
        let mut set = InFlight::new(1);
        assert_eq!(set.push(Box::pin(async { 1 })), vec![1]);
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(10));
            tx.send(2).ok();
        });
        assert_eq!(set.push(Box::pin(async { rx.await.unwrap_or(0) })), vec![2]);
        assert!(set.is_empty());
        t.join().ok();
    }

    #[test]
    fn a_future_woken_from_another_thread_completes() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.send(7).ok();
        });
        assert_eq!(wait(rx).ok(), Some(7));
        t.join().ok();
    }

    #[test]
    fn a_ready_future_returns_at_once() {
        assert_eq!(wait(std::future::ready(3)), 3);
    }
}
