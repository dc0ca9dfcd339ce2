//! Fuzz entry points: one function per decoder, taking arbitrary bytes.
//!
//! The `cargo fuzz` targets in `fuzz/fuzz_targets/` and the CI smoke test
//! (`integration-tests/fuzz_smoke.rs`, which replays `fuzz/corpus/` and `fuzz/regressions/` and
//! then mutates the seeds for a bounded number of rounds) call exactly these functions, so a
//! crash found by either is reproduced by both.
//!
//! Each function feeds its input to the decoder the way the daemon does and then checks what must
//! hold for any input. A decoder error is a normal outcome; a panic is a bug, and so is a failed
//! check (the `assert!`s below are the oracles):
//! - [`radius`]: [`Request::decode`] on either port with and without a required
//!   Message-Authenticator; optionally the input is first *re-signed* (Message-Authenticator and
//!   Accounting Request Authenticator recomputed with the fuzz secret) so that mutated packets get
//!   past authentication into attribute/VSA checks and [`crate::radius::mapping`]. Every response
//!   built must frame, carry the request's Identifier, and verify (Response Authenticator,
//!   Message-Authenticator).
//! - [`diameter`]: the input as a TCP stream framed by
//!   [`Decoder::peek_length`](crate::diameter::codec::Decoder::peek_length) and as one frame;
//!   every decoded message re-encodes to the same length and decodes back to itself (as
//!   hickory's `fuzz/fuzz_targets/message.rs` does for DNS), grouped AVPs decode, requests go
//!   through [`validate`] and the Gx/S6b mappings, every answer built encodes and decodes. Then
//!   a [`Peer`](crate::diameter::peer::Peer) machine (before and after capabilities exchange)
//!   is fed the stream; everything it transmits must decode.
//! - [`imei`]: [`Imei::parse_wire`] and [`Imei::parse_text`]; an accepted IMEI round-trips through
//!   its 14/15-digit text, TBCD and the store encoding.
//! - [`csv_import`]: [`parse_import`]; accepted rows written back as CSV parse to the same rows.
//! - [`s6b_user_name`]: [`nai::parse`] of an S6b User-Name; an IMSI read is 5–15 digits found
//!   in the input, and its permanent and decorated forms read back the same IMSI.
//! - [`s13`]: an S13 ME-Identity-Check-Request (any header is read as an ECR's) through the
//!   ECR validation and [`s13::ecr_to_request`]; a mapped request names S13 and a 5–15 digit
//!   IMSI found in User-Name, and every ECA built from it (each Equipment-Status, unknown, the
//!   error answer) encodes and decodes.
//! - [`store_value`]: [`encoding::decode`] of every stored record type (what a damaged or foreign
//!   RocksDB value meets); a decoded value re-encodes and decodes to itself.
//! - [`n5g_query`]: [`parse_query`] of an N5g-eir equipment-status query; an accepted query
//!   written back in its canonical form parses to the same query, an IMSI read is digits of the
//!   input, and a refusal names `pei`, `supi`, `gpsi` or `query`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::parse_import;
use crate::context::{Decision, PresentedImei, Reason};
use crate::diameter::codec::dict;
use crate::diameter::codec::validate::validate;
use crate::diameter::{nai, s13};
use crate::imei::{to_tbcd, Imei};
use crate::n5g_eir::parse_query;
use crate::radius::codec::{Packet, HEADER_LEN as RADIUS_HEADER_LEN};
use crate::radius::{
    access_context, accounting_context, attr, auth, encode_accounting_response, encode_decision,
    encode_reject, encode_status_response, ClientPolicy, Code, Port, Request, RequestKind,
    NO_IMSI_MESSAGE,
};
use crate::store::{encoding, Charge, Event as StoreEvent, OutboxEntry, ProfileRecord};
use crate::store::{ImportRow, RequestRecord, SimRecord};

mod diameter_stream;

pub use diameter_stream::diameter;
use diameter_stream::{check_answer, origin, own_decoder};

/// The shared secret the RADIUS target signs and verifies with.
pub const RADIUS_SECRET: &[u8] = b"fuzz-secret";

/// Origin-Host a Diameter seed's CER should carry to be accepted by the [`diameter`] target's
/// peer machine.
pub const DIAMETER_PEER_HOST: &str = "pgw.localdomain";

/// Profiles the [`csv_import`] target treats as existing.
pub const CSV_PROFILES: [&str; 2] = ["fleet", "iot"];

/// A fuzz target: its name and its entry point.
pub type Target = (&'static str, fn(&[u8]));

/// The targets by name (the names of `fuzz/fuzz_targets/*.rs` and `fuzz/corpus/*`).
pub const TARGETS: [Target; 8] = [
    ("radius", radius),
    ("diameter", diameter),
    ("imei", imei),
    ("csv_import", csv_import),
    ("store_value", store_value),
    ("s6b_user_name", s6b_user_name),
    ("s13", s13),
    ("n5g_query", n5g_query),
];

// ---------------------------------------------------------------------------------------------
// RADIUS

/// RADIUS entry point. The first input octet selects the mode (bit 0: accounting port; bit 1:
/// require Message-Authenticator; bit 2: re-sign before decoding); the rest is the datagram.
pub fn radius(data: &[u8]) {
    let Some((&mode, datagram)) = data.split_first() else {
        return;
    };
    let port = if mode & 1 == 0 {
        Port::Auth
    } else {
        Port::Acct
    };
    let policy = ClientPolicy {
        secret: RADIUS_SECRET,
        require_message_authenticator: mode & 2 != 0,
    };
    let mut buf = datagram.to_vec();
    if mode & 4 != 0 {
        resign(&mut buf);
    }
    let req = match Request::decode(&buf, port, &policy) {
        Ok(r) => r,
        Err(e) => {
            // Every error has a counter label and a log text.
            assert!(!e.label().is_empty());
            let _ = e.to_string();
            return;
        }
    };
    assert!(req.packet().len() >= RADIUS_HEADER_LEN && req.packet().len() <= 4096);
    let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000);
    let _ = req.dedup_key(src);
    match req.kind() {
        RequestKind::Access => match access_context(&req, "fuzz", src) {
            Ok(_) => {
                for reason in [Reason::Bound, Reason::Mismatch] {
                    let d = Decision {
                        reason,
                        bound: None,
                    };
                    check_radius_response(&req, encode_decision(&req, &d, RADIUS_SECRET));
                }
            }
            Err(e) => {
                let _ = e.label();
                check_radius_response(&req, encode_reject(&req, NO_IMSI_MESSAGE, RADIUS_SECRET));
            }
        },
        RequestKind::Accounting => {
            let _ = accounting_context(&req, "fuzz", src);
            check_radius_response(&req, encode_accounting_response(&req, RADIUS_SECRET));
        }
        RequestKind::Status => {
            check_radius_response(&req, encode_status_response(&req, RADIUS_SECRET));
        }
    }
}

/// Recomputes the Message-Authenticator (when there is exactly one of the right length) and,
/// for an Accounting-Request, the Request Authenticator, with [`RADIUS_SECRET`].
fn resign(buf: &mut [u8]) {
    let Ok(p) = Packet::decode(buf) else {
        return;
    };
    let len = p.len();
    let code = p.code();
    let request_auth = *p.authenticator();
    let mas: Vec<usize> = p
        .attributes()
        .filter(|a| a.typ == attr::MESSAGE_AUTHENTICATOR && a.value.len() == 16)
        .map(|a| a.value_offset())
        .collect();
    let ma_auth = if code == Code::AccountingRequest {
        [0; 16]
    } else {
        request_auth
    };
    if let [off] = mas[..] {
        if let Some(ma) = auth::message_authenticator(&buf[..len], off, &ma_auth, RADIUS_SECRET) {
            buf[off..off + 16].copy_from_slice(&ma);
        }
    }
    if code == Code::AccountingRequest {
        if let Some(ra) = auth::accounting_request_authenticator(&buf[..len], RADIUS_SECRET) {
            buf[4..RADIUS_HEADER_LEN].copy_from_slice(&ra);
        }
    }
}

/// A response we built must frame, answer the request's Identifier, and verify.
fn check_radius_response(req: &Request<'_>, out: Result<Vec<u8>, crate::radius::EncodeError>) {
    let Ok(bytes) = out else {
        // Only a response over 4096 octets (huge Proxy-States) fails to encode.
        return;
    };
    let p = Packet::decode(&bytes).expect("our response frames");
    assert_eq!(p.len(), bytes.len());
    assert_eq!(p.identifier(), req.identifier());
    let expected = auth::response_authenticator(&bytes, req.authenticator(), RADIUS_SECRET);
    assert_eq!(expected.as_ref(), Some(p.authenticator()));
    let mas: Vec<_> = p
        .attributes()
        .filter(|a| a.typ == attr::MESSAGE_AUTHENTICATOR)
        .collect();
    assert!(mas.len() <= 1);
    if let [ma] = mas[..] {
        // Answers to Accounting-Requests hash sixteen zeros, as FreeRADIUS does (see
        // `encode::message_authenticator_vector`); the others the Request Authenticator.
        let vector = match req.kind() {
            RequestKind::Accounting => [0; 16],
            RequestKind::Access | RequestKind::Status => *req.authenticator(),
        };
        assert!(auth::verify_message_authenticator(
            &bytes,
            ma.value_offset(),
            &vector,
            RADIUS_SECRET
        ));
    }
}

// ---------------------------------------------------------------------------------------------
// IMEI

/// IMEI entry point: every wire and text form.
pub fn imei(data: &[u8]) {
    if let Ok(p) = Imei::parse_wire(data) {
        check_imei(p.imei);
        if let Some(svn) = p.svn {
            assert!(svn <= 99, "SVN is two digits");
            let t = Imei::parse_wire(&to_tbcd(p.imei, svn)).expect("our TBCD parses");
            assert_eq!((t.imei, t.svn), (p.imei, Some(svn)));
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(p) = Imei::parse_text(s) {
            check_imei(p.imei);
            assert_eq!(s.parse::<Imei>().ok(), Some(p.imei));
        }
    }
}

fn check_imei(i: Imei) {
    assert!(i.as_u64() < 100_000_000_000_000);
    let text = i.to_string();
    assert_eq!(text.len(), 14);
    assert_eq!(text.parse::<Imei>().ok(), Some(i));
    assert_eq!(i.to_imei15().parse::<Imei>().ok(), Some(i));
    assert_eq!(Imei::from_u64(i.as_u64()), Some(i));
    let stored: Imei = encoding::decode(&encoding::encode(&i)).expect("stored IMEI decodes");
    assert_eq!(stored, i);
}

// ---------------------------------------------------------------------------------------------
// CSV import

/// CSV import entry point (`POST /v1/sims:import` body); profiles [`CSV_PROFILES`] exist.
pub fn csv_import(data: &[u8]) {
    let known = |p: &str| CSV_PROFILES.contains(&p);
    let Ok(rows) = parse_import(data, known) else {
        return;
    };
    assert!(!rows.is_empty());
    let again = parse_import(&write_import(&rows), known).expect("rows written back parse");
    assert_eq!(again, rows);
}

/// Rows as an import file (header, then one line each; quoted where the CSV writer must).
fn write_import(rows: &[ImportRow]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(["imsi", "msisdn", "profile", "imei_management"]);
    for r in rows {
        let imsi = r.imsi.to_string();
        let _ = w.write_record([
            imsi.as_str(),
            r.msisdn.as_deref().unwrap_or(""),
            r.profile.as_deref().unwrap_or(""),
            r.value.map(|v| v.as_str()).unwrap_or(""),
        ]);
    }
    w.into_inner().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Stored values

/// Stored-value entry point: the bytes as each record type the store reads.
pub fn store_value(data: &[u8]) {
    roundtrip::<SimRecord>(data);
    roundtrip::<ProfileRecord>(data);
    roundtrip::<StoreEvent>(data);
    roundtrip::<RequestRecord>(data);
    roundtrip::<Charge>(data);
    roundtrip::<OutboxEntry>(data);
}

fn roundtrip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(v) = encoding::decode::<T>(data) {
        let enc = encoding::encode(&v);
        let back: T = encoding::decode(&enc).expect("a re-encoded record decodes");
        assert_eq!(back, v);
    }
}

// ---------------------------------------------------------------------------------------------
// S6b User-Name

/// S6b User-Name entry point: [`nai::parse`] on the input as text.
pub fn s6b_user_name(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(id) = nai::parse(text) else {
        return;
    };
    assert!(nai::FORM_LABELS.contains(&id.label()));
    let Some(imsi) = id.imsi() else {
        return;
    };
    let digits = imsi.as_str();
    assert!((5..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()));
    assert!(text.contains(digits), "the IMSI is in the User-Name");
    // The 16-digit permanent forms of a 15-digit IMSI, plain and decorated, read it back.
    if digits.len() == 15 {
        for tag in ['0', '1', '6'] {
            for form in [
                format!("{tag}{digits}@nai.example"),
                format!("home.example!{tag}{digits}@visited.example"),
            ] {
                let back = nai::parse(&form).ok().and_then(|i| i.imsi());
                assert_eq!(back.map(|i| i.as_str().to_owned()).as_deref(), Some(digits));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// S13

/// S13 entry point: a Diameter message whose header is taken as an ECR's (application 16777252,
/// command 324, request), validated and mapped as the daemon does.
pub fn s13(data: &[u8]) {
    use crate::context::{Interface, PresentedImei};
    use crate::eir::{EirAnswer, EquipmentStatus};

    let Ok(mut msg) = own_decoder().decode(data) else {
        return;
    };
    msg.header.application_id = s13::APP_S13;
    msg.header.code = s13::CMD_ECR;
    msg.header.flags = crate::diameter::codec::CommandFlags(
        crate::diameter::codec::CommandFlags::REQUEST
            | crate::diameter::codec::CommandFlags::PROXIABLE,
    );
    let o = origin();
    if let Err(e) = validate(&msg, &s13::ECR) {
        check_answer(&s13::error_answer(&msg, &o, &e));
        return;
    }
    match s13::ecr_to_request(&msg) {
        Ok(req) => {
            assert_eq!(req.interface, Interface::S13);
            if let Some(imsi) = &req.imsi {
                let user_name = msg.find(dict::USER_NAME, 0).map(|u| u.data.as_slice());
                assert_eq!(
                    user_name,
                    Some(imsi.as_bytes()),
                    "the IMSI is the User-Name"
                );
            }
            if let PresentedImei::Valid(p) = &req.imei {
                assert!(p.imei.to_string().len() == 14);
            }
            for a in [
                EirAnswer::Status(EquipmentStatus::Whitelisted),
                EirAnswer::Status(EquipmentStatus::Blacklisted),
                EirAnswer::Status(EquipmentStatus::Greylisted),
                EirAnswer::Unknown,
            ] {
                let eca = s13::eca(&msg, &o, a);
                check_answer(&eca);
                assert!(eca.result_code().is_some() != eca.experimental_result().is_some());
            }
        }
        Err(e) => {
            let a = s13::error_answer(&msg, &o, &e);
            check_answer(&a);
            assert_eq!(a.result_code(), Some(e.result_code()));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// N5g-eir query

/// N5g-eir entry point: [`parse_query`] on the input as text (lossy UTF-8: the daemon only
/// ever sees the ASCII of a URI, and this feeds it odd octets too).
pub fn n5g_query(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match parse_query(&text) {
        Ok(q) => {
            if let Some(imsi) = q.imsi {
                assert!(text.contains(imsi.as_str()) || text.contains('%'));
            }
            let pei = match &q.pei {
                PresentedImei::Valid(p) => match p.svn {
                    Some(svn) => format!("imeisv-{}{svn:02}", p.imei),
                    None => format!("imei-{}", p.imei.to_imei15()),
                },
                // Only a wrong check digit gets here: not rebuilt.
                PresentedImei::Malformed(_) | PresentedImei::None => return,
            };
            let mut canon = format!("pei={pei}");
            if let Some(i) = q.imsi {
                canon.push_str(&format!("&supi=imsi-{i}"));
            }
            if let Some(m) = &q.msisdn {
                canon.push_str(&format!("&gpsi=msisdn-{m}"));
            }
            assert_eq!(parse_query(&canon).ok(), Some(q), "{canon}");
        }
        Err(e) => {
            assert!(
                ["pei", "supi", "gpsi", "query"].contains(&e.param()),
                "{e:?}"
            );
            assert!(
                e.cause().ends_with("_MISSING")
                    || e.cause().contains("INCORRECT")
                    || e.cause() == "INVALID_QUERY_PARAM"
            );
        }
    }
}
