//! Encoding: responses (always Message-Authenticator first, then the Response Authenticator) and,
//! for tests and a load generator, requests.
//!
//! Response encoding order (RFC 3579 §3.2, RFC 2865 §3):
//! 1. header with the *Request* Authenticator in the Authenticator field, a zeroed
//!    Message-Authenticator as the first attribute, then the other attributes;
//! 2. Message-Authenticator := HMAC-MD5(secret, those octets);
//! 3. Authenticator field := MD5(Code+ID+Length+RequestAuth+Attributes+Secret).
//!
//! Message-Authenticator first is the BlastRADIUS (CVE-2024-3596) mitigation: a forged
//! chosen-prefix MD5 collision needs attacker-controlled octets *before* the
//! Message-Authenticator, and a first attribute leaves none.

use crate::radius::attr;
use crate::radius::auth;
use crate::radius::codec::{
    Authenticator, Code, HEADER_LEN, MAX_ATTRIBUTE_VALUE_LEN, MAX_PACKET_LEN,
};

/// Why a packet could not be encoded. For a response, the shell drops the request and counts it
/// (label `encode_error`): nothing can be sent.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("attribute {typ} value of {len} octets exceeds 253")]
    AttributeTooLong { typ: u8, len: usize },
    #[error("packet of {0} octets exceeds 4096")]
    PacketTooLarge(usize),
    #[error("User-Password cannot be hidden: {0}")]
    UserPassword(String),
}

/// Offset of the Message-Authenticator value when it is the first attribute.
const FIRST_MA_VALUE: usize = HEADER_LEN + 2;

/// A packet under construction (header + attributes).
struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    fn new(code: Code, identifier: u8, authenticator: &Authenticator) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend([code.as_u8(), identifier, 0, 0]);
        buf.extend_from_slice(authenticator);
        Self { buf }
    }

    fn push(&mut self, typ: u8, value: &[u8]) -> Result<(), EncodeError> {
        if value.len() > MAX_ATTRIBUTE_VALUE_LEN {
            return Err(EncodeError::AttributeTooLong {
                typ,
                len: value.len(),
            });
        }
        let len = u8::try_from(value.len() + 2).map_err(|_| EncodeError::AttributeTooLong {
            typ,
            len: value.len(),
        })?;
        self.buf.extend([typ, len]);
        self.buf.extend_from_slice(value);
        Ok(())
    }

    /// Writes the Length field.
    fn finish(mut self) -> Result<Vec<u8>, EncodeError> {
        let len = self.buf.len();
        let field = u16::try_from(len)
            .ok()
            .filter(|_| len <= MAX_PACKET_LEN)
            .ok_or(EncodeError::PacketTooLarge(len))?;
        if let Some(l) = self.buf.get_mut(2..4) {
            l.copy_from_slice(&field.to_be_bytes());
        }
        Ok(self.buf)
    }
}

/// Fills in the Message-Authenticator value at `value_offset`, computed with `authenticator` in
/// place of the Authenticator field.
fn sign_message_authenticator(
    pkt: &mut [u8],
    value_offset: usize,
    authenticator: &Authenticator,
    secret: &[u8],
) {
    if let Some(ma) = auth::message_authenticator(pkt, value_offset, authenticator, secret) {
        if let Some(slot) = pkt.get_mut(value_offset..value_offset + 16) {
            slot.copy_from_slice(&ma);
        }
    }
}

fn set_authenticator(pkt: &mut [u8], value: Option<Authenticator>) {
    if let (Some(v), Some(slot)) = (value, pkt.get_mut(4..HEADER_LEN)) {
        slot.copy_from_slice(&v);
    }
}

/// The Authenticator hashed into a response's Message-Authenticator.
///
/// RFC 3579 §3.2 gives the Request Authenticator for Access-Accept/Reject/Challenge, and RFC 5997
/// §3 the same for answers to Status-Server. For an Accounting-Response to an Accounting-Request
/// no RFC says; FreeRADIUS (`rad_sign`/`rad_verify`, which radclient and most NASes follow) hashes
/// sixteen zero octets, as for the Accounting-Request itself. We do the same: radclient refuses
/// the other choice.
pub fn message_authenticator_vector(
    request_code: Code,
    request_authenticator: &Authenticator,
) -> Authenticator {
    match request_code {
        Code::AccountingRequest => [0; 16],
        _ => *request_authenticator,
    }
}

/// Encodes a response to a request of `request_code`: Message-Authenticator first (see
/// [`message_authenticator_vector`]), then `attributes` in order, then the Response
/// Authenticator.
///
/// # Errors
/// [`EncodeError`] when an attribute value exceeds 253 octets or the packet exceeds 4096.
pub fn encode_response(
    request_code: Code,
    code: Code,
    identifier: u8,
    request_authenticator: &Authenticator,
    attributes: &[(u8, &[u8])],
    secret: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let ma_vector = message_authenticator_vector(request_code, request_authenticator);
    let mut b = Builder::new(code, identifier, request_authenticator);
    b.push(attr::MESSAGE_AUTHENTICATOR, &[0; 16])?;
    for &(typ, value) in attributes {
        b.push(typ, value)?;
    }
    let mut pkt = b.finish()?;
    sign_message_authenticator(&mut pkt, FIRST_MA_VALUE, &ma_vector, secret);
    let ra = auth::response_authenticator(&pkt, request_authenticator, secret);
    set_authenticator(&mut pkt, ra);
    Ok(pkt)
}

/// Splits a Reply-Message text into attribute values of at most 253 octets, at UTF-8 character
/// boundaries (RFC 2865 §5.18: several Reply-Messages are displayed in order). An empty text gives
/// no attribute (Length ≥ 3).
pub fn reply_message_chunks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(MAX_ATTRIBUTE_VALUE_LEN);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        out.push(head);
        rest = tail;
    }
    out
}

/// Hides a User-Password (RFC 2865 §5.2) with the `radius` crate, for request encoding.
///
/// # Errors
/// [`EncodeError::UserPassword`] when the password exceeds 128 octets or the secret is empty.
pub fn hide_user_password(
    password: &[u8],
    secret: &[u8],
    request_authenticator: &Authenticator,
) -> Result<Vec<u8>, EncodeError> {
    radius::core::avp::AVP::from_user_password(
        attr::USER_PASSWORD,
        password,
        secret,
        request_authenticator,
    )
    .map(|avp| avp.encode_bytes())
    .map_err(|e| EncodeError::UserPassword(e.to_string()))
}

/// Encodes an Access-Request (or, with `code` = Status-Server, a Status-Server) for tests and load
/// generation. With `message_authenticator`, it is the first attribute.
///
/// `authenticator` must be unpredictable in real use (RFC 2865 §3: "SHOULD exhibit global and
/// temporal uniqueness").
///
/// # Errors
/// [`EncodeError`] when an attribute value exceeds 253 octets or the packet exceeds 4096.
pub fn encode_access_request(
    code: Code,
    identifier: u8,
    authenticator: &Authenticator,
    attributes: &[(u8, &[u8])],
    secret: &[u8],
    message_authenticator: bool,
) -> Result<Vec<u8>, EncodeError> {
    let mut b = Builder::new(code, identifier, authenticator);
    if message_authenticator {
        b.push(attr::MESSAGE_AUTHENTICATOR, &[0; 16])?;
    }
    for &(typ, value) in attributes {
        b.push(typ, value)?;
    }
    let mut pkt = b.finish()?;
    if message_authenticator {
        sign_message_authenticator(&mut pkt, FIRST_MA_VALUE, authenticator, secret);
    }
    Ok(pkt)
}

/// Encodes an Accounting-Request with its RFC 2866 Request Authenticator (and, optionally, a
/// Message-Authenticator first, computed with a zero Authenticator field).
///
/// # Errors
/// [`EncodeError`] when an attribute value exceeds 253 octets or the packet exceeds 4096.
pub fn encode_accounting_request(
    identifier: u8,
    attributes: &[(u8, &[u8])],
    secret: &[u8],
    message_authenticator: bool,
) -> Result<Vec<u8>, EncodeError> {
    let mut b = Builder::new(Code::AccountingRequest, identifier, &[0; 16]);
    if message_authenticator {
        b.push(attr::MESSAGE_AUTHENTICATOR, &[0; 16])?;
    }
    for &(typ, value) in attributes {
        b.push(typ, value)?;
    }
    let mut pkt = b.finish()?;
    if message_authenticator {
        sign_message_authenticator(&mut pkt, FIRST_MA_VALUE, &[0; 16], secret);
    }
    let ra = auth::accounting_request_authenticator(&pkt, secret);
    set_authenticator(&mut pkt, ra);
    Ok(pkt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radius::codec::Packet;

    const REQ_AUTH: Authenticator = [7; 16];

    #[test]
    fn response_has_ma_first_and_valid_authenticators() {
        let req_hdr = [&[1u8, 42, 0, 20][..], &REQ_AUTH].concat();
        let resp = encode_response(
            Code::AccessRequest,
            Code::AccessReject,
            42,
            &REQ_AUTH,
            &[(attr::REPLY_MESSAGE, b"IMEI mismatch")],
            b"s3cret",
        )
        .unwrap();
        let p = Packet::decode(&resp).unwrap();
        assert_eq!(p.code(), Code::AccessReject);
        assert_eq!(p.identifier(), 42);
        let first = p.attributes().next().unwrap();
        assert_eq!((first.typ, first.value.len(), first.offset), (80, 16, 20));
        // Independent: the radius crate's Response Authenticator check.
        assert!(radius::core::packet::Packet::is_authentic_response(
            &resp, &req_hdr, b"s3cret"
        ));
        // Independent recomputation of the MA: request auth in the field, MA zeroed.
        let mut copy = resp.clone();
        copy[4..20].copy_from_slice(&REQ_AUTH);
        copy[22..38].fill(0);
        use hmac::Mac;
        let mut mac = hmac::Hmac::<md5::Md5>::new_from_slice(b"s3cret").unwrap();
        mac.update(&copy);
        assert_eq!(&resp[22..38], &mac.finalize().into_bytes()[..]);
        // The radius crate decodes it and finds the Reply-Message.
        let dec = radius::core::packet::Packet::decode(&resp, b"s3cret").unwrap();
        assert_eq!(
            radius::core::rfc2865::lookup_reply_message(&dec)
                .unwrap()
                .unwrap(),
            "IMEI mismatch"
        );
    }

    #[test]
    fn long_reply_message_is_split() {
        let text = "é".repeat(200); // 400 octets
        let chunks = reply_message_chunks(&text);
        assert_eq!(chunks.len(), 2);
        assert!(chunks.iter().all(|c| c.len() <= 253));
        assert_eq!(chunks.concat(), text);
        assert!(reply_message_chunks("").is_empty());
        assert_eq!(reply_message_chunks("IMEI mismatch"), ["IMEI mismatch"]);
    }

    #[test]
    fn oversize_is_an_error() {
        let big = [0u8; 254];
        assert_eq!(
            encode_response(
                Code::AccessRequest,
                Code::AccessAccept,
                0,
                &REQ_AUTH,
                &[(18, &big)],
                b"s"
            ),
            Err(EncodeError::AttributeTooLong { typ: 18, len: 254 })
        );
        let v = [0u8; 253];
        let many: Vec<(u8, &[u8])> = (0..17).map(|_| (18u8, &v[..])).collect();
        assert!(matches!(
            encode_response(
                Code::AccessRequest,
                Code::AccessAccept,
                0,
                &REQ_AUTH,
                &many,
                b"s"
            ),
            Err(EncodeError::PacketTooLarge(_))
        ));
    }

    #[test]
    fn user_password_roundtrip_with_radius_crate() {
        let hidden = hide_user_password(b"gprs", b"testing123", &REQ_AUTH).unwrap();
        assert_eq!(hidden.len(), 16);
        let avp = radius::core::avp::AVP::from_bytes(2, &hidden);
        assert_eq!(
            avp.encode_user_password(b"testing123", &REQ_AUTH).unwrap(),
            b"gprs"
        );
        assert!(hide_user_password(&[b'x'; 129], b"s", &REQ_AUTH).is_err());
    }

    #[test]
    fn accounting_request_matches_radius_crate() {
        let pkt = encode_accounting_request(
            3,
            &[
                (attr::ACCT_SESSION_ID, b"abc"),
                (attr::ACCT_STATUS_TYPE, &[0, 0, 0, 1]),
            ],
            b"testing123",
            false,
        )
        .unwrap();
        assert!(radius::core::packet::Packet::is_authentic_request(
            &pkt,
            b"testing123"
        ));
        // The crate's own encoder produces the same octets.
        let mut theirs = radius::core::packet::Packet::new_with_identifier(
            radius::core::code::Code::AccountingRequest,
            b"testing123",
            3,
        );
        radius::core::rfc2866::add_acct_session_id(&mut theirs, "abc");
        radius::core::rfc2866::add_acct_status_type(
            &mut theirs,
            radius::core::rfc2866::ACCT_STATUS_TYPE_START,
        );
        assert_eq!(theirs.encode().unwrap(), pkt);
    }
}
