//! Test vectors captured from FreeRADIUS `radclient` 3.2.1 (secret "testing123"), and
//! whole-layer property tests.

pub(crate) mod vectors {
    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Access-Request Id 46: User-Name = "001010000000001@nai.epc.mnc001.mcc001.3gppnetwork.org",
    /// User-Password = "gprs", Calling-Station-Id = "491701234567", Called-Station-Id =
    /// "iot.example", 3GPP-IMSI = "001010000000001", 3GPP-IMEISV = "3520990017614823",
    /// 3GPP-RAT-Type = EUTRAN, Message-Authenticator (radclient puts it last).
    pub(crate) fn access_request() -> Vec<u8> {
        unhex(concat!(
            "012e00c261cb0c70f8419aab215c6c1ec7b9b84401373030313031303030303030303030",
            "31406e61692e6570632e6d6e633030312e6d63633030312e336770706e6574776f726b2e",
            "6f72670212d9192b3388308640c491ca237cf1ee341f0e3439313730313233343536371e",
            "0d696f742e6578616d706c651a17000028af01113030313031303030303030303030311a",
            "18000028af1412333532303939303031373631343832331a09000028af15030650124348",
            "f5d745f2f89ac96cd7aa6e87d6aa"
        ))
    }

    /// Access-Request Id 41: User-Name = "001010000000002", 3GPP-IMEISV given to radclient as
    /// 0x5302990071168432 but sent as the 18-character text "0x5302990071168432",
    /// 3GPP-RAT-Type = UTRAN, Message-Authenticator.
    pub(crate) fn access_request_bad_imei() -> Vec<u8> {
        unhex(concat!(
            "0129007577a0ec7e24347d42f459352bbe8b942f01113030313031303030303030303030",
            "321f0e3439313730313233343536381e0d696f742e6578616d706c651a1a000028af1414",
            "3078353330323939303037313136383433321a09000028af15030150120f6bf89ef7f57e",
            "3cb3a87c89b8d8d543"
        ))
    }

    /// Accounting-Request Id 112: Acct-Status-Type = Start, Acct-Session-Id = "0a0b0c0d",
    /// User-Name and 3GPP-IMSI = "001010000000001", Calling-Station-Id; no Message-Authenticator.
    pub(crate) fn acct_start() -> Vec<u8> {
        unhex(concat!(
            "0470005a000d947d7ddee1c19f10f6eaa3c50f472806000000012c0a3061306230633064",
            "01113030313031303030303030303030311a17000028af01113030313031303030303030",
            "303030311f0e343931373031323334353637"
        ))
    }

    /// Accounting-Request Id 107: Interim-Update, Acct-Session-Id = "0a0b0c0d", 3GPP-IMSI,
    /// 3GPP-IMEISV = "352099001761481,07", Message-Authenticator (computed by radclient with a
    /// zero Authenticator field).
    pub(crate) fn acct_interim_ma() -> Vec<u8> {
        unhex(concat!(
            "046b006709c0f68714d53e824ccffe425ad0bc3f2806000000032c0a3061306230633064",
            "1a17000028af01113030313031303030303030303030311a1a000028af14143335323039",
            "393030313736313438312c30375012620bab92571acd7b4ddec5bfcc74d09d"
        ))
    }

    /// Status-Server Id 155 with Message-Authenticator.
    pub(crate) fn status_server() -> Vec<u8> {
        unhex("0c9b00260761e8a1b0435c2a355f4d4a22d601d95012bf6170ed408f901672c1a0504d1c7165")
    }

    /// Status-Server Id 209 with Message-Authenticator (sent to the accounting port).
    pub(crate) fn status_server_acct() -> Vec<u8> {
        unhex("0cd10026ac971d17c5ae0f291fbf070c3adb8bee5012256dec4d79c906a541f29a88682019c5")
    }

    /// HMAC-MD5 known answer, see `auth::tests::message_authenticator_known_answer`.
    pub(crate) const MA_KNOWN_ANSWER: &str = "76af4581cd5f2f2997136a0a154c47f8";
}

use proptest::prelude::*;

use crate::radius::codec::Packet;
use crate::radius::request::{ClientPolicy, Port, Request};
use crate::radius::{mapping, vsa};

const POLICY: ClientPolicy<'static> = ClientPolicy {
    secret: b"testing123",
    require_message_authenticator: false,
};

fn exercise(raw: &[u8]) {
    let src = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    for port in [Port::Auth, Port::Acct] {
        if let Ok(req) = Request::decode(raw, port, &POLICY) {
            let _ = mapping::access_context(&req, "p", src);
            let _ = mapping::accounting_context(&req, "p", src);
            let _ = mapping::encode_reject(&req, "x", POLICY.secret);
        }
    }
    if let Ok(p) = Packet::decode(raw) {
        for a in p.attributes() {
            if let Ok(subs) = vsa::Vsa::parse(a.value).and_then(|v| v.sub_attributes()) {
                subs.for_each(drop);
            }
        }
    }
}

/// Arbitrary header + attribute soup with a plausible Length field.
fn framed() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![1u8, 4, 12, 2, 0, 255]),
        any::<u8>(),
        any::<[u8; 16]>(),
        prop::collection::vec(
            (
                any::<u8>(),
                prop::collection::vec(any::<u8>(), 0..40),
                any::<bool>(),
            ),
            0..12,
        ),
        -3i32..3,
    )
        .prop_map(|(code, id, auth, attrs, skew)| {
            let mut body = Vec::new();
            for (typ, value, as_3gpp) in attrs {
                if as_3gpp {
                    body.extend([26, (value.len() + 8) as u8, 0, 0, 0x28, 0xaf]);
                    body.extend([typ % 32, (value.len() + 2) as u8]);
                } else {
                    body.extend([typ, (value.len() + 2) as u8]);
                }
                body.extend(value);
            }
            let len = (20 + body.len()) as i32 + skew;
            let mut out = vec![code, id];
            out.extend((len.max(0) as u16).to_be_bytes());
            out.extend(auth);
            out.extend(body);
            out
        })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..300)) {
        exercise(&raw);
    }

    #[test]
    fn framed_soup_never_panics(raw in framed()) {
        exercise(&raw);
    }

    /// Differential: where the `radius` crate rejects the framing, so do we; where it accepts,
    /// we accept too (we are no stricter on framing; extra checks live in `Request::decode`).
    #[test]
    fn framing_agrees_with_radius_crate(raw in framed()) {
        let ours = Packet::decode(&raw).is_ok();
        let theirs = radius::core::packet::Packet::decode(&raw, b"s").is_ok();
        prop_assert_eq!(ours, theirs);
    }

    /// Every single-bit change to a signed request is refused by a client that requires
    /// Message-Authenticator (without the requirement, turning its Type into another is the
    /// one change that passes: that is what the requirement is for).
    #[test]
    fn any_flip_breaks_the_message_authenticator(pos in 0usize..194, bit in 0u8..8) {
        let strict = ClientPolicy { require_message_authenticator: true, ..POLICY };
        let mut raw = vectors::access_request();
        raw[pos] ^= 1 << bit;
        prop_assert!(Request::decode(&raw, Port::Auth, &strict).is_err());
    }
}
