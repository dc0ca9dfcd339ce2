//! A received request, framed, authenticated and checked: the gate between the socket and
//! [`crate::radius::mapping`].
//!
//! Order of checks in [`Request::decode`] (authenticate before reading any value):
//! 1. framing ([`Packet::decode`]);
//! 2. Code served on this port: Access-Request and Status-Server on the auth port,
//!    Accounting-Request and Status-Server on the accounting port (RFC 2865 §3: "A RADIUS server
//!    MUST silently discard" packets with an invalid Code; RFC 5997 §3);
//! 3. at most one Message-Authenticator, of Length 18 (RFC 3579 §3.2);
//! 4. Message-Authenticator verified when present; required on Status-Server (RFC 5997 §3:
//!    "Status-Server packets […] MUST contain a Message-Authenticator") and on Access-Request when
//!    the client's `require_message_authenticator` is set (BlastRADIUS; a missing one is
//!    discarded and counted as `missing_message_authenticator`, as FreeRADIUS does);
//! 5. Accounting-Request: Request Authenticator verified (RFC 2866 §3: "it MUST be silently
//!    discarded" when it does not match);
//! 6. the attributes this daemon reads are well-formed: no empty User-Name, Called-/Calling-
//!    Station-Id, Acct-Session-Id, Vendor-Specific (RFC 2865: Length ≥ 3); Acct-Status-Type of
//!    Length 6; every 3GPP VSA parses, and its IMSI/IMEISV/RAT-Type sub-attributes are not empty.
//!
//! Every error is a silent discard (RFC 2865 §3, RFC 3579 §3.2, RFC 2866 §3): the shell counts
//! it under [`RequestError::label`] and sends nothing.
//!
//! This module does not look at User-Password, CHAP or EAP: the IMEI lock authorizes the device,
//! not the subscriber's password (the GGSN/P-GW sends a fixed one).

use std::fmt;
use std::net::SocketAddr;

use crate::radius::attr;
use crate::radius::auth;
use crate::radius::codec::{Authenticator, Code, DecodeError, Packet};
use crate::radius::dedup::DedupKey;
use crate::radius::vsa::{self, VsaError};

/// Which listener a datagram arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Port {
    /// Authentication (1812).
    Auth,
    /// Accounting (1813).
    Acct,
}

impl Port {
    /// Label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Acct => "acct",
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the configuration says of the client a datagram came from.
#[derive(Clone, Copy)]
pub struct ClientPolicy<'a> {
    /// The shared secret (the configuration must refuse an empty one).
    pub secret: &'a [u8],
    /// Discard Access-Requests without a Message-Authenticator (default true, SPEC §2.1).
    pub require_message_authenticator: bool,
}

impl fmt::Debug for ClientPolicy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientPolicy")
            .field("secret", &"*redacted*")
            .field(
                "require_message_authenticator",
                &self.require_message_authenticator,
            )
            .finish()
    }
}

/// What to do about a request that cannot be served normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Send nothing; count under the label.
    SilentDrop,
    /// Answer Access-Reject with this Reply-Message.
    Reject(&'static str),
}

/// Why a datagram is discarded. Every variant is [`Disposition::SilentDrop`].
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Malformed(#[from] DecodeError),
    #[error("malformed Vendor-Specific attribute: {0}")]
    Vsa(#[from] VsaError),
    #[error("{code} is not served on the {port} port")]
    UnexpectedCode { code: Code, port: Port },
    #[error("attribute {typ} at offset {offset} has an empty or malformed value")]
    BadAttribute { typ: u8, offset: usize },
    #[error("3GPP sub-attribute {typ} has an empty value")]
    Empty3gppAttribute { typ: u8 },
    #[error("Message-Authenticator has length {0}, not 18")]
    MessageAuthenticatorLength(usize),
    #[error("more than one Message-Authenticator")]
    DuplicateMessageAuthenticator,
    #[error("Message-Authenticator missing on {0}, which requires it")]
    MissingMessageAuthenticator(Code),
    #[error("Message-Authenticator does not verify")]
    BadMessageAuthenticator,
    #[error("Accounting-Request Request Authenticator does not verify")]
    BadRequestAuthenticator,
}

impl RequestError {
    /// Stable label for the drop counter.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Malformed(e) => e.label(),
            Self::Vsa(_) | Self::Empty3gppAttribute { .. } => "malformed_vsa",
            Self::UnexpectedCode { .. } => "unexpected_code",
            Self::BadAttribute { .. } | Self::MessageAuthenticatorLength(_) => {
                "malformed_attribute"
            }
            Self::DuplicateMessageAuthenticator => "duplicate_message_authenticator",
            Self::MissingMessageAuthenticator(_) => "missing_message_authenticator",
            Self::BadMessageAuthenticator => "bad_message_authenticator",
            Self::BadRequestAuthenticator => "bad_request_authenticator",
        }
    }

    /// Always [`Disposition::SilentDrop`]: RADIUS answers no malformed or unauthenticated packet.
    pub fn disposition(&self) -> Disposition {
        Disposition::SilentDrop
    }
}

/// The kinds of request this daemon serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    Access,
    Accounting,
    /// Status-Server (RFC 5997), on either port.
    Status,
}

/// A framed, authenticated, checked request. Borrows the datagram.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    packet: Packet<'a>,
    kind: RequestKind,
    port: Port,
    message_authenticator: bool,
}

impl<'a> Request<'a> {
    /// Frames, authenticates and checks a datagram from a known client (see the module docs for
    /// the order of checks).
    ///
    /// # Errors
    /// [`RequestError`]: always a silent discard, counted under [`RequestError::label`].
    pub fn decode(
        datagram: &'a [u8],
        port: Port,
        policy: &ClientPolicy<'_>,
    ) -> Result<Self, RequestError> {
        let packet = Packet::decode(datagram)?;
        let kind = match (packet.code(), port) {
            (Code::AccessRequest, Port::Auth) => RequestKind::Access,
            (Code::AccountingRequest, Port::Acct) => RequestKind::Accounting,
            (Code::StatusServer, _) => RequestKind::Status,
            (code, port) => return Err(RequestError::UnexpectedCode { code, port }),
        };

        let mut ma = None;
        for a in packet
            .attributes()
            .filter(|a| a.typ == attr::MESSAGE_AUTHENTICATOR)
        {
            if ma.is_some() {
                return Err(RequestError::DuplicateMessageAuthenticator);
            }
            if a.value.len() != auth::MESSAGE_AUTHENTICATOR_LEN {
                return Err(RequestError::MessageAuthenticatorLength(a.value.len() + 2));
            }
            ma = Some(a.value_offset());
        }

        // The Authenticator hashed into the Message-Authenticator.
        let ma_auth: Authenticator = match kind {
            RequestKind::Accounting => [0; 16],
            RequestKind::Access | RequestKind::Status => *packet.authenticator(),
        };
        match ma {
            Some(off) => {
                if !auth::verify_message_authenticator(
                    packet.as_bytes(),
                    off,
                    &ma_auth,
                    policy.secret,
                ) {
                    return Err(RequestError::BadMessageAuthenticator);
                }
            }
            None => {
                let required = match kind {
                    RequestKind::Status => true,
                    RequestKind::Access => policy.require_message_authenticator,
                    RequestKind::Accounting => false,
                };
                if required {
                    return Err(RequestError::MissingMessageAuthenticator(packet.code()));
                }
            }
        }
        if kind == RequestKind::Accounting
            && !auth::verify_accounting_request_authenticator(packet.as_bytes(), policy.secret)
        {
            return Err(RequestError::BadRequestAuthenticator);
        }

        check_read_attributes(&packet)?;
        Ok(Self {
            packet,
            kind,
            port,
            message_authenticator: ma.is_some(),
        })
    }

    /// The framed packet (attributes, header).
    pub fn packet(&self) -> &Packet<'a> {
        &self.packet
    }

    pub fn kind(&self) -> RequestKind {
        self.kind
    }

    pub fn port(&self) -> Port {
        self.port
    }

    pub fn identifier(&self) -> u8 {
        self.packet.identifier()
    }

    /// The Request Authenticator.
    pub fn authenticator(&self) -> &Authenticator {
        self.packet.authenticator()
    }

    /// Whether a (verified) Message-Authenticator was present.
    pub fn has_message_authenticator(&self) -> bool {
        self.message_authenticator
    }

    /// The duplicate-detection key for this request from `src` (RFC 5080 §2.2.2).
    pub fn dedup_key(&self, src: SocketAddr) -> DedupKey {
        DedupKey::new(src, self.identifier(), *self.authenticator())
    }
}

/// Step 6 of the module docs.
fn check_read_attributes(packet: &Packet<'_>) -> Result<(), RequestError> {
    for a in packet.attributes() {
        let bad = || RequestError::BadAttribute {
            typ: a.typ,
            offset: a.offset,
        };
        match a.typ {
            attr::USER_NAME
            | attr::CALLED_STATION_ID
            | attr::CALLING_STATION_ID
            | attr::ACCT_SESSION_ID
            | attr::VENDOR_SPECIFIC
                if a.value.is_empty() =>
            {
                return Err(bad());
            }
            attr::ACCT_STATUS_TYPE if a.value.len() != 4 => return Err(bad()),
            attr::VENDOR_SPECIFIC => match vsa::parse_3gpp(a.value) {
                Ok(subs) => {
                    for s in subs {
                        if matches!(
                            s.typ,
                            vsa::TGPP_IMSI | vsa::TGPP_IMEISV | vsa::TGPP_RAT_TYPE
                        ) && s.value.is_empty()
                        {
                            return Err(RequestError::Empty3gppAttribute { typ: s.typ });
                        }
                    }
                }
                // Other vendors' layouts are theirs: skipped, not judged.
                Err(VsaError::WrongVendor(_)) => {}
                Err(e) => return Err(e.into()),
            },
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::encode::{encode_access_request, encode_accounting_request};
    use crate::radius::tests::vectors;
    use crate::radius::vsa::{encode_vsa, VENDOR_3GPP};

    const SECRET: &[u8] = b"testing123";
    const STRICT: ClientPolicy<'static> = ClientPolicy {
        secret: SECRET,
        require_message_authenticator: true,
    };
    const LAX: ClientPolicy<'static> = ClientPolicy {
        secret: SECRET,
        require_message_authenticator: false,
    };

    fn access(attrs: &[(u8, &[u8])], ma: bool) -> Vec<u8> {
        encode_access_request(Code::AccessRequest, 5, &[3; 16], attrs, SECRET, ma).unwrap()
    }

    #[test]
    fn radclient_access_request_verifies() {
        for raw in [
            vectors::access_request(),
            vectors::access_request_bad_imei(),
        ] {
            let r = Request::decode(&raw, Port::Auth, &STRICT).unwrap();
            assert_eq!(r.kind(), RequestKind::Access);
            assert!(r.has_message_authenticator());
            assert_eq!(
                Request::decode(
                    &raw,
                    Port::Auth,
                    &ClientPolicy {
                        secret: b"wrong",
                        ..STRICT
                    }
                )
                .unwrap_err(),
                RequestError::BadMessageAuthenticator
            );
        }
    }

    #[test]
    fn radclient_status_server_on_both_ports() {
        for raw in [vectors::status_server(), vectors::status_server_acct()] {
            for port in [Port::Auth, Port::Acct] {
                let r = Request::decode(&raw, port, &LAX).unwrap();
                assert_eq!(r.kind(), RequestKind::Status);
            }
        }
    }

    #[test]
    fn radclient_accounting_requests_verify() {
        for raw in [vectors::acct_start(), vectors::acct_interim_ma()] {
            let r = Request::decode(&raw, Port::Acct, &STRICT).unwrap();
            assert_eq!(r.kind(), RequestKind::Accounting);
        }
        assert!(
            Request::decode(&vectors::acct_interim_ma(), Port::Acct, &STRICT)
                .unwrap()
                .has_message_authenticator()
        );
    }

    #[test]
    fn tampering_is_detected() {
        let raw = vectors::access_request();
        // Flip every octet in turn (header and attributes): never accepted as-is.
        for i in 0..raw.len() {
            let mut t = raw.clone();
            t[i] ^= 0x01;
            assert!(
                Request::decode(&t, Port::Auth, &STRICT).is_err(),
                "octet {i}"
            );
        }
        let raw = vectors::acct_start();
        for i in 4..raw.len() {
            let mut t = raw.clone();
            t[i] ^= 0x80;
            assert!(
                Request::decode(&t, Port::Acct, &STRICT).is_err(),
                "octet {i}"
            );
        }
    }

    #[test]
    fn missing_message_authenticator() {
        let raw = access(&[(attr::USER_NAME, b"001010000000001")], false);
        let e = Request::decode(&raw, Port::Auth, &STRICT).unwrap_err();
        assert_eq!(
            e,
            RequestError::MissingMessageAuthenticator(Code::AccessRequest)
        );
        assert_eq!(e.label(), "missing_message_authenticator");
        assert_eq!(e.disposition(), Disposition::SilentDrop);
        let r = Request::decode(&raw, Port::Auth, &LAX).unwrap();
        assert!(!r.has_message_authenticator());
        // Status-Server always requires it.
        let st =
            encode_access_request(Code::StatusServer, 1, &[1; 16], &[], SECRET, false).unwrap();
        assert!(matches!(
            Request::decode(&st, Port::Auth, &LAX),
            Err(RequestError::MissingMessageAuthenticator(
                Code::StatusServer
            ))
        ));
    }

    #[test]
    fn own_encoder_roundtrip() {
        let raw = access(&[(attr::USER_NAME, b"001010000000001")], true);
        assert!(Request::decode(&raw, Port::Auth, &STRICT).is_ok());
        let acct = encode_accounting_request(9, &[(40, &[0, 0, 0, 3])], SECRET, true).unwrap();
        let r = Request::decode(&acct, Port::Acct, &STRICT).unwrap();
        assert!(r.has_message_authenticator());
        let acct = encode_accounting_request(9, &[(40, &[0, 0, 0, 3])], b"other", false).unwrap();
        assert_eq!(
            Request::decode(&acct, Port::Acct, &STRICT).unwrap_err(),
            RequestError::BadRequestAuthenticator
        );
    }

    #[test]
    fn wrong_port_or_code() {
        let raw = access(&[], true);
        assert!(matches!(
            Request::decode(&raw, Port::Acct, &STRICT),
            Err(RequestError::UnexpectedCode {
                code: Code::AccessRequest,
                port: Port::Acct
            })
        ));
        let acct = vectors::acct_start();
        assert!(matches!(
            Request::decode(&acct, Port::Auth, &STRICT),
            Err(RequestError::UnexpectedCode { .. })
        ));
        for code in [2u8, 3, 5, 11, 13, 40, 43, 0, 255] {
            let raw =
                encode_access_request(Code::from_u8(code), 1, &[0; 16], &[], SECRET, true).unwrap();
            for port in [Port::Auth, Port::Acct] {
                let e = Request::decode(&raw, port, &STRICT).unwrap_err();
                assert_eq!(e.label(), "unexpected_code");
            }
        }
    }

    #[test]
    fn message_authenticator_shape() {
        let mut raw = access(&[(attr::USER_NAME, b"00101")], true);
        raw.extend([80, 18]);
        raw.extend([0; 16]);
        let len = raw.len() as u16;
        raw[2..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            Request::decode(&raw, Port::Auth, &STRICT).unwrap_err(),
            RequestError::DuplicateMessageAuthenticator
        );
        let raw = access(&[(80, &[0; 15])], false);
        assert_eq!(
            Request::decode(&raw, Port::Auth, &LAX).unwrap_err(),
            RequestError::MessageAuthenticatorLength(17)
        );
        let raw = access(&[(80, &[])], false);
        assert!(Request::decode(&raw, Port::Auth, &LAX).is_err());
    }

    #[test]
    fn empty_values_of_read_attributes() {
        for typ in [1u8, 30, 31, 44, 26] {
            let raw = access(&[(typ, b"")], true);
            let e = Request::decode(&raw, Port::Auth, &STRICT).unwrap_err();
            assert_eq!(
                e,
                RequestError::BadAttribute { typ, offset: 38 },
                "type {typ}"
            );
        }
        // Unread attributes may be empty (e.g. State, Class).
        let raw = access(&[(24, b""), (25, b"")], true);
        assert!(Request::decode(&raw, Port::Auth, &STRICT).is_ok());
        // Acct-Status-Type must be 4 octets.
        let raw = encode_accounting_request(1, &[(40, &[1])], SECRET, false).unwrap();
        assert!(matches!(
            Request::decode(&raw, Port::Acct, &STRICT),
            Err(RequestError::BadAttribute { typ: 40, .. })
        ));
    }

    #[test]
    fn malformed_and_foreign_vsas() {
        let empty_imeisv = encode_vsa(VENDOR_3GPP, &[(20, b"")]).unwrap();
        let truncated = b"\x00\x00\x28\xaf\x01\x10001".to_vec();
        let short = b"\x00\x00\x28\xaf".to_vec();
        for (v, label) in [
            (empty_imeisv, "malformed_vsa"),
            (truncated, "malformed_vsa"),
            (short, "malformed_vsa"),
        ] {
            let raw = access(&[(26, &v)], true);
            assert_eq!(
                Request::decode(&raw, Port::Auth, &STRICT)
                    .unwrap_err()
                    .label(),
                label
            );
        }
        // Another vendor's odd layout is not ours to judge.
        let foreign = b"\x00\x00\x01\x37\x00\x00\x00\x01\x00".to_vec();
        let raw = access(&[(26, &foreign)], true);
        assert!(Request::decode(&raw, Port::Auth, &STRICT).is_ok());
        // An empty unread 3GPP sub-attribute is fine.
        let v = encode_vsa(VENDOR_3GPP, &[(8, b"")]).unwrap();
        assert!(Request::decode(&access(&[(26, &v)], true), Port::Auth, &STRICT).is_ok());
    }

    #[test]
    fn every_truncation_is_an_error() {
        for (raw, port) in [
            (vectors::access_request(), Port::Auth),
            (vectors::acct_interim_ma(), Port::Acct),
            (vectors::status_server(), Port::Auth),
        ] {
            for n in 0..raw.len() {
                assert!(
                    Request::decode(&raw[..n], port, &STRICT).is_err(),
                    "prefix {n}"
                );
            }
            // With the Length field patched to the prefix: framing may pass, the MA must not.
            for n in 20..raw.len() {
                let mut t = raw[..n].to_vec();
                t[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                assert!(
                    Request::decode(&t, port, &STRICT).is_err(),
                    "patched prefix {n}"
                );
            }
        }
    }

    #[test]
    fn policy_debug_redacts_secret() {
        assert!(!format!("{STRICT:?}").contains("testing123"));
    }
}
