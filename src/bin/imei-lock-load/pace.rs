//! What every mode shares: the tally of answers and latencies, open-loop pacing, the SIM pool,
//! and the non-blocking socket helpers of the thread-per-socket modes.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use imei_lockd::imei::Imei;

use super::Common;

/// What one worker measured.
pub struct Tally {
    pub sent: u64,
    pub codes: HashMap<&'static str, u64>,
    pub timeouts: u64,
    pub errors: u64,
    pub hist: Histogram<u64>,
}

impl Tally {
    pub fn new() -> Result<Self, String> {
        Ok(Self {
            sent: 0,
            codes: HashMap::new(),
            timeouts: 0,
            errors: 0,
            hist: Histogram::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?,
        })
    }

    pub fn answer(&mut self, code: &'static str, latency: Duration) {
        *self.codes.entry(code).or_default() += 1;
        let _ = self.hist.record((latency.as_nanos() as u64).max(1));
    }

    pub fn merge(&mut self, o: Self) {
        self.sent += o.sent;
        self.timeouts += o.timeouts;
        self.errors += o.errors;
        for (k, v) in o.codes {
            *self.codes.entry(k).or_default() += v;
        }
        let _ = self.hist.add(&o.hist);
    }
}

/// Paces one worker in open-loop mode: the time the next request is due.
pub struct Pacer {
    start: Instant,
    interval: Option<Duration>,
    n: u64,
}

impl Pacer {
    pub fn new(total_rate: u64, workers: usize) -> Self {
        let per = total_rate as f64 / workers.max(1) as f64;
        Self {
            start: Instant::now(),
            interval: (per > 0.0).then(|| Duration::from_secs_f64(1.0 / per)),
            n: 0,
        }
    }

    /// Closed loop: `Ok(None)`, send now. Open loop: `Ok(Some(due))` when the next request was
    /// due at or before `now` (and takes it), else `Err(when it is due)`.
    pub fn due(&mut self, now: Instant) -> Result<Option<Instant>, Instant> {
        match self.interval {
            None => Ok(None),
            Some(iv) => {
                let due = self.start + iv.mul_f64(self.n as f64);
                if now >= due {
                    self.n += 1;
                    Ok(Some(due))
                } else {
                    Err(due)
                }
            }
        }
    }
}

/// This worker's share of `--count` (0 = no limit): worker w sends SIMs w, w + workers, ...
pub fn quota_of(count: u64, seed: u64, workers: usize) -> u64 {
    let w = workers.max(1) as u64;
    if count == 0 {
        u64::MAX
    } else {
        count / w + u64::from(seed < count % w)
    }
}

/// The SIM of request `k` (numbered across workers) and the device it presents; `n` is the
/// request's number within its worker, so that every worker presents another device on every
/// `--mismatch-every`th request whatever share of the load it gets.
pub fn sim_of(c: &Common, k: u64, n: u64) -> (String, String) {
    let i = (k % c.sims.max(1)) * c.stride.max(1);
    let imsi = format!("{:015}", c.imsi_base + i);
    let mismatch = c.mismatch_every > 0 && n % c.mismatch_every == c.mismatch_every - 1;
    let dev = c.imei_base + i + if mismatch { 50_000_000 } else { 0 };
    let imei = Imei::from_u64(dev % 100_000_000_000_000)
        .map_or_else(|| "35000000000000".to_owned(), |x| x.to_string());
    (imsi, format!("{imei}01"))
}

/// Waits until `fd` is ready for `events` or `timeout` passes.
pub fn wait_fd(fd: RawFd, events: libc::c_short, timeout: Duration) {
    wait_fds(
        &mut [libc::pollfd {
            fd,
            events,
            revents: 0,
        }],
        timeout,
    );
}

/// Waits until one of `fds` is ready or `timeout` passes (ppoll: nanosecond timeouts, which
/// open-loop pacing at 100k/s needs; std only offers per-socket timeouts that cost a syscall to
/// change).
#[allow(unsafe_code)]
pub fn wait_fds(fds: &mut [libc::pollfd], timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: `fds` is a live slice of pollfds and nfds its length, `ts` a live timespec, no
    // signal mask; ppoll(2) only reads them and writes each `revents`. The result (ready,
    // timeout or EINTR) is not needed: the caller tries its non-blocking I/O again either way.
    unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        );
    }
}

/// Timer slack of this thread down to 1 ns, so short ppoll timeouts (open-loop pacing) are not
/// rounded up to the default 50 µs.
#[allow(unsafe_code)]
pub fn fine_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and touches only this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

pub fn is_would_block(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock
            | std::io::ErrorKind::TimedOut
            | std::io::ErrorKind::Interrupted
    )
}

/// How often outstanding requests are checked for their timeout.
pub const TIMEOUT_SCAN: Duration = Duration::from_millis(10);
/// Longest wait for an answer before the loop looks at the clock again.
pub const IDLE_WAIT: Duration = Duration::from_millis(5);
