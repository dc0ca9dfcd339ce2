//! Authenticators: Message-Authenticator (HMAC-MD5), Response Authenticator and the
//! Accounting-Request Request Authenticator (MD5). Comparisons are constant-time.
//!
//! RFC 3579 §3.2 (Message-Authenticator):
//!
//! > Message-Authenticator = HMAC-MD5 (Type, Identifier, Length, Request Authenticator,
//! > Attributes) […] When the checksum is calculated the signature string should be considered
//! > to be sixteen octets of zero. […] For Access-Challenge, Access-Accept, and Access-Reject
//! > packets, the Message-Authenticator is calculated as follows, using the Request-Authenticator
//! > from the Access-Request this packet is in reply to. […] Message-Authenticator is calculated
//! > prior to calculation of the Response Authenticator.
//!
//! For Accounting-Request the Request Authenticator is itself a hash of the packet, so the
//! Message-Authenticator is computed with sixteen zero octets in the Authenticator field (as
//! RFC 5176 §3.3 does for CoA, and as FreeRADIUS/radclient do; checked against a radclient
//! capture in the tests), then the Request Authenticator over the final packet. FreeRADIUS
//! also hashes zeros for the Accounting-Response to an Accounting-Request (but the Request
//! Authenticator for the Accounting-Response to a Status-Server): see
//! [`crate::radius::encode::message_authenticator_vector`].
//!
//! RFC 2865 §3 (Response Authenticator):
//!
//! > ResponseAuth = MD5(Code+ID+Length+RequestAuth+Attributes+Secret)
//!
//! RFC 2866 §3 (Accounting-Request Request Authenticator):
//!
//! > Request Authenticator = MD5(Code + Identifier + Length + 16 zero octets + request
//! > attributes + shared secret)
//!
//! An empty shared secret is not refused here; the configuration layer must refuse it.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};

use crate::radius::codec::{Authenticator, HEADER_LEN};

type HmacMd5 = Hmac<Md5>;

/// Octets of a Message-Authenticator value.
pub const MESSAGE_AUTHENTICATOR_LEN: usize = 16;

const ZERO16: [u8; 16] = [0; 16];

/// HMAC-MD5 keyed with `secret`. Keying costs two MD5 blocks (the padded key XOR ipad and
/// opad); a thread keeps the keyed state of the last secret it used and clones it, since one
/// thread serves the same few clients' secrets over and over.
fn keyed(secret: &[u8]) -> Option<HmacMd5> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(Vec<u8>, HmacMd5)>> =
            const { std::cell::RefCell::new(None) };
    }
    // HMAC accepts keys of any length: this never fails.
    let fresh = || HmacMd5::new_from_slice(secret).ok();
    LAST.with(|last| {
        let Ok(mut last) = last.try_borrow_mut() else {
            return fresh();
        };
        if let Some((s, mac)) = last.as_ref() {
            if s.as_slice() == secret {
                return Some(mac.clone());
            }
        }
        let mac = fresh()?;
        *last = Some((secret.to_vec(), mac.clone()));
        Some(mac)
    })
}

/// Splits a packet around the 16-octet value at `value_offset` into
/// (Code+Identifier+Length, attributes before the value, attributes after it).
fn split_around(packet: &[u8], value_offset: usize) -> Option<(&[u8], &[u8], &[u8])> {
    let head = packet.get(..4)?;
    let before = packet.get(HEADER_LEN..value_offset)?;
    let after = packet.get(value_offset.checked_add(MESSAGE_AUTHENTICATOR_LEN)?..)?;
    Some((head, before, after))
}

fn hmac_over(
    packet: &[u8],
    value_offset: usize,
    authenticator: &Authenticator,
    secret: &[u8],
) -> Option<HmacMd5> {
    let (head, before, after) = split_around(packet, value_offset)?;
    let mut mac = keyed(secret)?;
    mac.update(head);
    mac.update(authenticator);
    mac.update(before);
    mac.update(&ZERO16);
    mac.update(after);
    Some(mac)
}

/// Computes a Message-Authenticator.
///
/// `packet` is the whole packet (its Authenticator field is ignored: `authenticator` is hashed in
/// its place); `value_offset` is where the 16-octet Message-Authenticator value sits (hashed as
/// zeros whatever it holds). `None` when the offset does not fit the packet.
pub fn message_authenticator(
    packet: &[u8],
    value_offset: usize,
    authenticator: &Authenticator,
    secret: &[u8],
) -> Option<[u8; 16]> {
    let mac = hmac_over(packet, value_offset, authenticator, secret)?;
    Some(mac.finalize().into_bytes().into())
}

/// Verifies the Message-Authenticator at `value_offset` in constant time (see
/// [`message_authenticator`]); false when it does not match or does not fit.
pub fn verify_message_authenticator(
    packet: &[u8],
    value_offset: usize,
    authenticator: &Authenticator,
    secret: &[u8],
) -> bool {
    let Some(received) = value_offset
        .checked_add(MESSAGE_AUTHENTICATOR_LEN)
        .and_then(|end| packet.get(value_offset..end))
    else {
        return false;
    };
    hmac_over(packet, value_offset, authenticator, secret)
        .is_some_and(|mac| mac.verify_slice(received).is_ok())
}

/// MD5(Code+Identifier+Length + `authenticator` + Attributes + Secret), with `packet`'s own
/// Authenticator field skipped. `None` when `packet` is shorter than the header.
fn md5_with(packet: &[u8], authenticator: &Authenticator, secret: &[u8]) -> Option<Authenticator> {
    let head = packet.get(..4)?;
    let attrs = packet.get(HEADER_LEN..)?;
    let mut h = Md5::new();
    h.update(head);
    h.update(authenticator);
    h.update(attrs);
    h.update(secret);
    Some(h.finalize().into())
}

/// RFC 2865 §3 Response Authenticator of an encoded response (its Authenticator field is ignored).
/// `None` when `response` is shorter than the header.
pub fn response_authenticator(
    response: &[u8],
    request_authenticator: &Authenticator,
    secret: &[u8],
) -> Option<Authenticator> {
    md5_with(response, request_authenticator, secret)
}

/// RFC 2866 §3 Request Authenticator of an Accounting-Request (its Authenticator field is
/// ignored). `None` when `request` is shorter than the header.
pub fn accounting_request_authenticator(request: &[u8], secret: &[u8]) -> Option<Authenticator> {
    md5_with(request, &ZERO16, secret)
}

/// Checks an Accounting-Request's Request Authenticator in constant time.
pub fn verify_accounting_request_authenticator(request: &[u8], secret: &[u8]) -> bool {
    match (
        accounting_request_authenticator(request, secret),
        request.get(4..HEADER_LEN),
    ) {
        (Some(expected), Some(received)) => ct_eq(&expected, received),
        _ => false,
    }
}

/// Constant-time equality (length is not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2865 §7.1: Access-Request and its Access-Accept, secret "xyzzy5461".
    const RFC2865_REQ_AUTH: [u8; 16] = [
        0x0f, 0x40, 0x3f, 0x94, 0x73, 0x97, 0x80, 0x57, 0xbd, 0x83, 0xd5, 0xcb, 0x98, 0xf4, 0x22,
        0x7a,
    ];
    const RFC2865_ACCEPT: [u8; 38] = [
        0x02, 0x00, 0x00, 0x26, 0x86, 0xfe, 0x22, 0x0e, 0x76, 0x24, 0xba, 0x2a, 0x10, 0x05, 0xf6,
        0xbf, 0x9b, 0x55, 0xe0, 0xb2, 0x06, 0x06, 0x00, 0x00, 0x00, 0x01, 0x0f, 0x06, 0x00, 0x00,
        0x00, 0x00, 0x0e, 0x06, 0xc0, 0xa8, 0x01, 0x03,
    ];

    #[test]
    fn rfc2865_section7_response_authenticator() {
        let got = response_authenticator(&RFC2865_ACCEPT, &RFC2865_REQ_AUTH, b"xyzzy5461").unwrap();
        assert_eq!(&got[..], &RFC2865_ACCEPT[4..20]);
        assert!(radius::core::packet::Packet::is_authentic_response(
            &RFC2865_ACCEPT,
            &[&[1u8, 0, 0, 20][..], &RFC2865_REQ_AUTH].concat(),
            b"xyzzy5461"
        ));
    }

    /// radclient 3.2.1 Accounting-Request (secret "testing123"): its Request Authenticator.
    #[test]
    fn radclient_accounting_request_authenticator() {
        let pkt = crate::radius::tests::vectors::acct_start();
        let got = accounting_request_authenticator(&pkt, b"testing123").unwrap();
        assert_eq!(&got[..], &pkt[4..20]);
        assert!(verify_accounting_request_authenticator(&pkt, b"testing123"));
        assert!(!verify_accounting_request_authenticator(
            &pkt,
            b"testing124"
        ));
        // Independent implementation (the `radius` crate, md5 0.7).
        assert!(radius::core::packet::Packet::is_authentic_request(
            &pkt,
            b"testing123"
        ));
    }

    /// Known answer computed with Python's hmac/hashlib:
    /// hmac.new(b"secret", bytes([1,1,0,38]) + bytes(range(16)) + bytes([80,18]) + bytes(16),
    ///          hashlib.md5).hexdigest()
    #[test]
    fn message_authenticator_known_answer() {
        let mut pkt = vec![1u8, 1, 0, 38];
        pkt.extend(0u8..16);
        pkt.extend([80, 18]);
        pkt.extend([0xEE; 16]); // whatever is there is hashed as zeros
        let auth: [u8; 16] = core::array::from_fn(|i| i as u8);
        let got = message_authenticator(&pkt, 22, &auth, b"secret").unwrap();
        assert_eq!(
            hex(&got),
            crate::radius::tests::vectors::MA_KNOWN_ANSWER,
            "HMAC-MD5 known answer"
        );
    }

    #[test]
    fn offsets_outside_the_packet_do_not_panic() {
        let pkt = [1u8; 30];
        assert!(message_authenticator(&pkt, 22, &ZERO16, b"s").is_none());
        assert!(message_authenticator(&pkt, usize::MAX, &ZERO16, b"s").is_none());
        assert!(message_authenticator(&pkt, 10, &ZERO16, b"s").is_none());
        assert!(!verify_message_authenticator(
            &pkt,
            usize::MAX - 3,
            &ZERO16,
            b"s"
        ));
        assert!(response_authenticator(&pkt[..19], &ZERO16, b"s").is_none());
        assert!(!verify_accounting_request_authenticator(&pkt[..5], b"s"));
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    pub(crate) fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}

#[cfg(test)]
mod keyed_tests {
    use super::*;

    /// The per-thread keyed state follows the secret: alternating secrets give each its own
    /// HMAC, equal to one keyed from scratch.
    #[test]
    fn keyed_state_follows_the_secret() {
        let packet = [[1u8, 7, 0, 38].as_slice(), &[9; 16], &[80, 18], &[0; 16]].concat();
        let auth = [9u8; 16];
        for secret in [&b"alpha"[..], b"beta-secret", b"alpha", b"", b"alpha"] {
            let got = message_authenticator(&packet, 22, &auth, secret).unwrap();
            let mut mac = HmacMd5::new_from_slice(secret).unwrap();
            mac.update(&packet);
            assert_eq!(got[..], mac.finalize().into_bytes()[..], "{secret:?}");
        }
    }
}
