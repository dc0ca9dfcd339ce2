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
//! This module does not choose a thread or a runtime; it only waits.

use std::future::Future;
use std::pin::pin;
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

#[cfg(test)]
mod tests {
    use super::*;

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
