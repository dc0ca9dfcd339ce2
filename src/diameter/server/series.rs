//! The label values of the Diameter shell's metrics known at start, and [`register`], which
//! creates each series at 0 so dashboards and alerts see 0, not "no data": peers by every
//! state, errors by every reason, and the answers an operator watches (success, lock reject,
//! too busy, unable to comply) for Gx and S6b.
//!
//! It also keeps `imei_lockd_diameter_peer_up{origin_host}`: every configured peer at 0 from
//! bind (and from the SIGHUP that adds it), 1 while it has an open connection.
//!
//! The shell (`conn`, `server.rs`) counts; this module only names what it may count. It does
//! not count, log or touch a connection, and it is not on the request path.

use crate::diameter::codec::ResultCode;

/// `state` of `imei_lockd_diameter_peers`.
pub const PEER_STATES: &[&str] = &["wait_cer", "open", "suspect", "closing"];

/// `reason` of `imei_lockd_diameter_errors_total` (checked against the shell's source by the
/// tests below).
pub const ERROR_REASONS: &[&str] = &[
    // Listener (server.rs).
    "accept",
    "connection_limit",
    // Connection (conn.rs): requests.
    "message_timeout",
    "duplicate",
    "duplicate_in_flight",
    "too_busy",
    "engine_task",
    // Connection: the peer machine's counts.
    "decode",
    "error_answer",
    "unmatched_answer",
    // Connection: why it closed (a disconnect by either side is not an error).
    "not_cer",
    "cer_timeout",
    "cer_rejected",
    "protocol",
    "watchdog_expired",
    "dpa_timeout",
];

/// `(app, result_code)` of `imei_lockd_diameter_answers_total` registered at start.
pub const ANSWERS: &[(&str, ResultCode)] = &[
    ("gx", ResultCode::SUCCESS),
    ("gx", ResultCode::AUTHORIZATION_REJECTED),
    ("gx", ResultCode::TOO_BUSY),
    ("gx", ResultCode::UNABLE_TO_COMPLY),
    ("s6b", ResultCode::SUCCESS),
    ("s6b", ResultCode::AUTHORIZATION_REJECTED),
    ("s6b", ResultCode::TOO_BUSY),
    ("s6b", ResultCode::UNABLE_TO_COMPLY),
    ("s6b", ResultCode::USER_UNKNOWN),
];

/// Registers the Diameter series known at start at 0.
pub fn register() {
    for &state in PEER_STATES {
        // Gauges: the connections' increments and decrements add to this 0.
        metrics::gauge!("imei_lockd_diameter_peers", "state" => state).increment(0.0);
    }
    for &reason in ERROR_REASONS {
        metrics::counter!("imei_lockd_diameter_errors_total", "reason" => reason).increment(0);
    }
    for &(app, code) in ANSWERS {
        metrics::counter!("imei_lockd_diameter_answers_total", "app" => app,
            "result_code" => code.0.to_string())
        .increment(0);
    }
    for &form in crate::diameter::nai::FORM_LABELS {
        for decorated in ["false", "true"] {
            metrics::counter!("imei_lockd_s6b_identities_total", "form" => form,
                "decorated" => decorated)
            .increment(0);
        }
    }
}

/// Registers `imei_lockd_diameter_peer_up` at 0 for each configured Origin-Host (a peer
/// already up keeps its 1). The label is the Origin-Host in lowercase: CER matches it
/// case-insensitively.
pub fn register_peers<'a>(origin_hosts: impl IntoIterator<Item = &'a str>) {
    for host in origin_hosts {
        metrics::gauge!("imei_lockd_diameter_peer_up", "origin_host" => host.to_ascii_lowercase())
            .increment(0.0);
    }
}

/// Sets `imei_lockd_diameter_peer_up` of a peer (`key`: its Origin-Host in lowercase, which
/// passed CER, so it is a configured one) when its connection opens or closes.
pub fn set_peer_up(key: &str, up: bool) {
    metrics::gauge!("imei_lockd_diameter_peer_up", "origin_host" => key.to_owned()).set(if up {
        1.0
    } else {
        0.0
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The quoted strings following `pattern` in `src`.
    fn literals_after<'a>(src: &'a str, pattern: &str) -> Vec<&'a str> {
        src.match_indices(pattern)
            .filter_map(|(i, _)| {
                let lit = &src[i + pattern.len()..];
                lit.find('"').map(|end| &lit[..end])
            })
            .collect()
    }

    #[test]
    fn every_reason_and_state_of_the_shell_is_known() {
        let conn = include_str!("conn.rs");
        let server = include_str!("../server.rs");
        let mut reasons = Vec::new();
        for src in [conn, server] {
            reasons.extend(literals_after(src, "error(\""));
            reasons.extend(literals_after(src, "inc(\""));
            reasons.extend(literals_after(src, "\"reason\" => \""));
        }
        // conn.rs: `State::… => Some("state")` for the gauge, `CloseReason::… => Some("reason")`.
        let mapped = literals_after(conn, "=> Some(\"");
        assert!(reasons.len() >= 10, "{reasons:?}");
        assert!(mapped.len() >= 10, "{mapped:?}");
        for r in reasons {
            assert!(
                ERROR_REASONS.contains(&r),
                "reason {r} missing from ERROR_REASONS"
            );
        }
        for r in mapped {
            assert!(
                ERROR_REASONS.contains(&r) || PEER_STATES.contains(&r),
                "{r} missing from ERROR_REASONS or PEER_STATES"
            );
        }
    }
}
