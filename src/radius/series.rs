//! The label values of the RADIUS shell's metrics ([`super::server`]) known at start, and
//! [`register`], which creates each series at 0 so dashboards and alerts see 0, not "no data".
//!
//! The shell counts; this module only names what it may count: every drop reason (the shell's
//! own and every `label()` of the errors it drops on), the codes served on each port and the
//! answers each port sends. It does not count, log or touch a socket, and it is not on the
//! request path (the shell's [`crate::telemetry::Handles`] are).

use crate::radius::codec::Code;
use crate::radius::request::Port;

/// Every `reason` of `imei_lockd_radius_drops_total`: the shell's own, then
/// [`crate::radius::DecodeError::label`], [`crate::radius::RequestError::label`] and
/// [`crate::radius::MappingError::label`] (checked by the tests below).
pub const DROP_REASONS: &[&str] = &[
    // The shell (server.rs).
    "unknown_client",
    "duplicate_in_progress",
    "overload",
    "receive_buffer",
    "engine_error",
    "encode_error",
    "send_error",
    // Framing (DecodeError).
    "short_datagram",
    "bad_length",
    "truncated_packet",
    "malformed_attribute",
    // Checks (RequestError).
    "malformed_vsa",
    "unexpected_code",
    "duplicate_message_authenticator",
    "missing_message_authenticator",
    "bad_message_authenticator",
    "bad_request_authenticator",
    // Mapping (MappingError; an Access-Request without IMSI is rejected, not dropped).
    "no_imsi",
    "wrong_kind",
];

/// The request codes a port serves (`code` of `imei_lockd_radius_packets_total`).
pub fn codes(port: Port) -> [Code; 2] {
    match port {
        Port::Auth => [Code::AccessRequest, Code::StatusServer],
        Port::Acct => [Code::AccountingRequest, Code::StatusServer],
    }
}

/// The answers a port sends (`type` of `imei_lockd_radius_responses_total`).
pub fn answers(port: Port) -> &'static [&'static str] {
    match port {
        Port::Auth => &["access_accept", "access_reject", "status"],
        Port::Acct => &["accounting_response", "status"],
    }
}

/// Registers at 0 every RADIUS series of `port` known at start: packets by served code,
/// answers by type, drops by every reason, duplicates.
pub fn register(port: Port) {
    let p = port.as_str();
    for code in codes(port) {
        metrics::counter!("imei_lockd_radius_packets_total", "port" => p, "code" => code.name())
            .increment(0);
    }
    for &kind in answers(port) {
        metrics::counter!("imei_lockd_radius_responses_total", "port" => p, "type" => kind)
            .increment(0);
    }
    for &reason in DROP_REASONS {
        metrics::counter!("imei_lockd_radius_drops_total", "port" => p, "reason" => reason)
            .increment(0);
    }
    metrics::counter!("imei_lockd_radius_duplicates_total", "port" => p).increment(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::{DecodeError, MappingError, RequestError, RequestKind, VsaError};

    fn known(label: &str) {
        assert!(
            DROP_REASONS.contains(&label),
            "drop reason {label} is missing from radius::series::DROP_REASONS"
        );
    }

    #[test]
    fn every_error_label_is_a_known_drop_reason() {
        let decode = [
            DecodeError::ShortDatagram(3),
            DecodeError::LengthBelowMinimum(3),
            DecodeError::LengthAboveMaximum(5000),
            DecodeError::LengthBeyondDatagram {
                length: 40,
                datagram: 20,
            },
            DecodeError::AttributeHeaderTruncated { offset: 20 },
            DecodeError::AttributeLengthTooSmall {
                offset: 20,
                typ: 1,
                length: 1,
            },
            DecodeError::AttributeOverrun {
                offset: 20,
                typ: 1,
                length: 9,
            },
        ];
        for e in &decode {
            known(e.label());
        }
        let request = [
            RequestError::Malformed(DecodeError::ShortDatagram(3)),
            RequestError::Vsa(VsaError::TooShort(2)),
            RequestError::Vsa(VsaError::WrongVendor(9)),
            RequestError::UnexpectedCode {
                code: Code::AccessAccept,
                port: Port::Auth,
            },
            RequestError::BadAttribute { typ: 1, offset: 20 },
            RequestError::Empty3gppAttribute { typ: 1 },
            RequestError::MessageAuthenticatorLength(3),
            RequestError::DuplicateMessageAuthenticator,
            RequestError::MissingMessageAuthenticator(Code::AccessRequest),
            RequestError::BadMessageAuthenticator,
            RequestError::BadRequestAuthenticator,
        ];
        for e in &request {
            known(e.label());
        }
        for e in [
            MappingError::NoImsi,
            MappingError::WrongKind(RequestKind::Status),
        ] {
            known(e.label());
        }
    }

    /// The reasons the shell (server/port.rs) passes to `drop_packet` (or counts itself) as
    /// literals.
    #[test]
    fn every_literal_drop_reason_of_the_shell_is_known() {
        let src = include_str!("server/port.rs");
        let mut found = 0;
        for (i, _) in src.match_indices("drop_packet(") {
            // drop_packet(<address>, <reason>, <detail>): the address is an identifier.
            let args = &src[i + "drop_packet(".len()..];
            let Some((_, rest)) = args.split_once(',') else {
                continue;
            };
            if let Some(lit) = rest.trim_start().strip_prefix('"') {
                known(&lit[..lit.find('"').unwrap()]);
                found += 1;
            }
        }
        for (i, _) in src.match_indices("\"reason\" => \"") {
            let lit = &src[i + "\"reason\" => \"".len()..];
            known(&lit[..lit.find('"').unwrap()]);
            found += 1;
        }
        assert!(found >= 6, "the scan found only {found} literal reasons");
    }

    #[test]
    fn reasons_are_unique() {
        let mut v = DROP_REASONS.to_vec();
        v.sort_unstable();
        v.dedup();
        assert_eq!(v.len(), DROP_REASONS.len());
    }
}
