//! `radius`: Access-Requests (or Accounting-Requests) from one UDP socket per thread.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use imei_lockd::radius::codec::Code;
use imei_lockd::radius::encode::{encode_access_request, encode_accounting_request};
use imei_lockd::radius::vsa::encode_vsa;

use super::pace::{fine_timer_slack, is_would_block, quota_of, sim_of, wait_fd, Pacer, Tally};
use super::pace::{IDLE_WAIT, TIMEOUT_SCAN};
use super::RadiusArgs;

/// A socket receive buffer large enough that the generator itself does not drop answers.
fn big_recv_buffer(s: &UdpSocket) {
    let _ = socket2::SockRef::from(s).set_recv_buffer_size(4 << 20);
}

pub fn radius_worker(args: Arc<RadiusArgs>, seed: u64, workers: usize) -> Result<Tally, String> {
    fine_timer_slack();
    let c = &args.common;
    let sock = UdpSocket::bind(if args.target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .map_err(|e| e.to_string())?;
    big_recv_buffer(&sock);
    sock.connect(args.target).map_err(|e| e.to_string())?;
    sock.set_nonblocking(true).map_err(|e| e.to_string())?;
    let fd = sock.as_raw_fd();
    let mut tally = Tally::new()?;
    let window = c.window.clamp(1, 256);
    let timeout = Duration::from_millis(c.timeout_ms);
    let mut outstanding: [Option<Instant>; 256] = [None; 256];
    let mut in_flight = 0usize;
    let mut next_id = 0u8;
    let mut k = seed;
    let mut pacer = Pacer::new(c.rate, workers);
    let end = Instant::now() + Duration::from_secs_f64(c.duration);
    let quota = quota_of(c.count, seed, workers);
    let mut last_scan = Instant::now();
    let mut buf = [0u8; 4096];
    let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    loop {
        let now = Instant::now();
        let sending = now < end && tally.sent < quota;
        if (!sending && in_flight == 0) || now > end + timeout {
            break;
        }
        let mut next_due = None;
        let mut progressed = false;
        while sending && in_flight < window && tally.sent < quota {
            let due = match pacer.due(now) {
                Ok(due) => due,
                Err(later) => {
                    next_due = Some(later);
                    break;
                }
            };
            // A free Identifier: `in_flight < window <= 256` guarantees one.
            let mut tries = 0;
            while outstanding[usize::from(next_id)].is_some() && tries < 256 {
                next_id = next_id.wrapping_add(1);
                tries += 1;
            }
            let (imsi, imeisv) = sim_of(c, k, tally.sent);
            k += workers as u64;
            let vsa = encode_vsa(
                10415,
                &[(1, imsi.as_bytes()), (20, imeisv.as_bytes()), (21, &[6])],
            )
            .map_err(|e| e.to_string())?;
            let attrs: [(u8, &[u8]); 3] = [(1, imsi.as_bytes()), (30, b"iot.apn"), (26, &vsa)];
            let pkt = if args.accounting {
                let status = 3u32.to_be_bytes();
                let acct: [(u8, &[u8]); 5] = [
                    (1, imsi.as_bytes()),
                    (40, &status),
                    (44, imsi.as_bytes()),
                    (30, b"iot.apn"),
                    (26, &vsa),
                ];
                encode_accounting_request(next_id, &acct, args.secret.as_bytes(), false)
            } else {
                let mut auth = [0u8; 16];
                for chunk in auth.chunks_mut(8) {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    chunk.copy_from_slice(&rng.to_le_bytes());
                }
                encode_access_request(
                    Code::AccessRequest,
                    next_id,
                    &auth,
                    &attrs,
                    args.secret.as_bytes(),
                    true,
                )
            }
            .map_err(|e| e.to_string())?;
            match sock.send(&pkt) {
                Ok(_) => {
                    // Open loop: latency counts from when the request was due, so a generator
                    // that falls behind shows up in the figures (no coordinated omission).
                    outstanding[usize::from(next_id)] = Some(due.unwrap_or_else(Instant::now));
                    in_flight += 1;
                    tally.sent += 1;
                }
                Err(e) if is_would_block(&e) => {
                    tally.errors += 1;
                    break;
                }
                Err(_) => tally.errors += 1,
            }
            progressed = true;
            next_id = next_id.wrapping_add(1);
        }
        loop {
            match sock.recv(&mut buf) {
                Ok(n) if n >= 20 => {
                    progressed = true;
                    let (code, id) = (buf[0], usize::from(buf[1])); // n >= 20: both present
                    if let Some(t0) = outstanding[id].take() {
                        in_flight -= 1;
                        let code = match code {
                            2 => "accept",
                            3 => "reject",
                            5 => "accounting_response",
                            _ => "other",
                        };
                        tally.answer(code, t0.elapsed());
                    }
                }
                Ok(_) => tally.errors += 1,
                Err(e) if is_would_block(&e) => break,
                Err(_) => {
                    tally.errors += 1;
                    break;
                }
            }
        }
        let now = Instant::now();
        if now.duration_since(last_scan) >= TIMEOUT_SCAN {
            last_scan = now;
            for slot in outstanding.iter_mut() {
                if slot.is_some_and(|t0| now.saturating_duration_since(t0) > timeout) {
                    *slot = None;
                    in_flight -= 1;
                    tally.timeouts += 1;
                }
            }
        }
        if !progressed {
            let wait = next_due.map_or(IDLE_WAIT, |d| {
                d.saturating_duration_since(now).min(IDLE_WAIT)
            });
            wait_fd(fd, libc::POLLIN, wait);
        }
    }
    Ok(tally)
}
