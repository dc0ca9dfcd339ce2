//! What one alert POST carries: the JSON body (with its `id`), the optional
//! `X-Signature-256` header, and the pause before the next attempt (exponential backoff with
//! jitter).
//!
//! Pure functions: no I/O, no clock (the caller passes attempt counts and randomness), so the
//! bytes and the schedule are unit-tested here. This module does not send anything.

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::store::OutboxEntry;

/// Name of the signature header (GitHub's convention: `sha256=<lowercase hex>`).
pub const SIGNATURE_HEADER: &str = "X-Signature-256";
/// Header repeating the payload's `id` (receivers can dedupe without parsing the body).
pub const ID_HEADER: &str = "X-Alert-Id";

/// First pause after a failure; doubles with each further failure.
const FIRST_BACKOFF_MS: i64 = 2_000;

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The alert's id: derived from the durable outbox entry (its id in the outbox plus the event's
/// SIM, kind and time), so every retry of one alert — also after a restart or on another
/// node — carries the same id, and two alerts never share one. 32 lowercase hex digits.
pub fn alert_id(outbox_id: u64, entry: &OutboxEntry) -> String {
    let ev = &entry.event;
    let mut h = Sha256::new();
    h.update(outbox_id.to_be_bytes());
    h.update(ev.imsi.as_str().as_bytes());
    h.update([0]);
    h.update(ev.kind.as_str().as_bytes());
    h.update([0]);
    h.update(ev.at.to_be_bytes());
    let digest = h.finalize();
    hex(digest.get(..16).unwrap_or(&digest))
}

/// The exact body bytes of an alert POST.
pub fn body(outbox_id: u64, entry: &OutboxEntry) -> Vec<u8> {
    let ev = &entry.event;
    let v = json!({
        "id": alert_id(outbox_id, entry),
        "event": ev.kind.as_str(),
        "imsi": ev.imsi.as_str(),
        "imei": ev.imei.map(|i| i.to_string()),
        "bound_imei": ev.bound.map(|i| i.to_string()),
        "interface": ev.interface.as_str(),
        "peer": ev.peer,
        "at_ms": ev.at,
        "detail": ev.detail,
    });
    // Serializing a Value with string keys cannot fail.
    serde_json::to_vec(&v).unwrap_or_default()
}

/// The `X-Signature-256` value: `sha256=` and the lowercase hex HMAC-SHA256 of `body` under
/// `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length: new_from_slice cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

/// The pause after the `attempts`-th failed attempt (1 = the first): 2 s, 4 s, 8 s ... capped
/// at `cap_ms`, of which a random half is taken off ("equal jitter", `random` uniform over
/// `u64`): between half the step and the step, so receivers that came back are not hit by
/// every sender at once.
pub fn backoff_ms(attempts: u32, cap_ms: i64, random: u64) -> i64 {
    let step = FIRST_BACKOFF_MS
        .saturating_mul(1i64 << attempts.saturating_sub(1).min(20))
        .min(cap_ms)
        .max(2);
    let half = step / 2;
    let jitter = i64::try_from(random % (half as u64 + 1)).unwrap_or(0);
    half + jitter
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Imsi, Interface};
    use crate::store::{Event, EventKind};

    fn entry(at: i64) -> OutboxEntry {
        OutboxEntry {
            event: Event {
                kind: EventKind::ImeiMismatch,
                imsi: "001010000000001".parse::<Imsi>().unwrap(),
                at,
                interface: Interface::Radius,
                peer: "127.0.0.1".into(),
                imei: None,
                bound: None,
                detail: None,
            },
            attempts: 0,
            next_attempt_at: at,
            done: Vec::new(),
        }
    }

    #[test]
    fn id_is_stable_across_attempts_and_distinct_across_alerts() {
        let mut e = entry(1_000);
        let first = alert_id(7, &e);
        e.attempts = 5;
        e.next_attempt_at = 99_999;
        e.done.push("http://x/".into());
        assert_eq!(alert_id(7, &e), first);
        assert_eq!(first.len(), 32);
        assert!(first
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(alert_id(8, &e), first);
        assert_ne!(alert_id(7, &entry(1_001)), first);
        let body: serde_json::Value = serde_json::from_slice(&body(7, &e)).unwrap();
        assert_eq!(body["id"], first);
        assert_eq!(body["event"], "imei_mismatch");
    }

    #[test]
    fn signature_matches_rfc4231_test_case_2() {
        // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        for (attempts, step) in [(1, 2_000), (2, 4_000), (3, 8_000), (10, 300_000)] {
            for random in [0, 1, 12_345, u64::MAX] {
                let b = backoff_ms(attempts, 300_000, random);
                assert!((step / 2..=step).contains(&b), "{attempts} {random} {b}");
            }
        }
        assert_eq!(backoff_ms(1, 300_000, 0), 1_000);
        assert_eq!(backoff_ms(u32::MAX, 300_000, 0), 150_000);
    }
}
