//! Codec tests: real capture vectors, truncation and altered lengths, property tests, and a
//! (value, bytes) table.

use std::path::PathBuf;

use proptest::prelude::*;

use super::avp::padding;
use super::dict::{self, VENDOR_3GPP};
use super::validate::{self, APP_GX};
use super::*;
use crate::diameter::app::known_spec;

/// The spec of a base protocol or known application request.
fn spec_for(id: u32, code: u32) -> Option<&'static validate::CommandSpec> {
    validate::BASE_SPECS
        .iter()
        .find(|s| s.application_id == id && s.code == code)
        .or_else(|| known_spec(id, code))
}
use crate::imei::Imei;

/// One vector message: file name, 1-based line, bytes.
pub(crate) struct Vector {
    pub file: String,
    pub line: usize,
    pub bytes: Vec<u8>,
}

fn hex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// The vector directory: `$IMEI_LOCKD_VECTORS`, else `$CARGO_MANIFEST_DIR/../shared/vectors`.
fn vectors_dir() -> PathBuf {
    std::env::var_os("IMEI_LOCKD_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors")))
}

/// Every line of every `*.hex` vector file, or `None` (with a message) when the directory is
/// absent.
pub(crate) fn vectors() -> Option<Vec<Vector>> {
    let dir = vectors_dir();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        eprintln!("skipping: vectors not found at {}", dir.display());
        return None;
    };
    let mut files: Vec<PathBuf> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "hex"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        for (i, l) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            out.push(Vector {
                file: name.clone(),
                line: i + 1,
                bytes: hex(l),
            });
        }
    }
    assert!(!out.is_empty(), "no vectors in {}", dir.display());
    Some(out)
}

/// One vector by file and line.
pub(crate) fn vector(file: &str, line: usize) -> Option<Vec<u8>> {
    vectors()?
        .into_iter()
        .find(|v| v.file == file && v.line == line)
        .map(|v| v.bytes)
}

/// `orig` with the padding after each top-level AVP zeroed (what an encoder writes).
fn zero_padding(orig: &[u8], msg: &Message) -> Vec<u8> {
    let mut out = orig.to_vec();
    let mut pos = HEADER_LEN;
    for a in &msg.avps {
        let end = pos + a.len();
        for b in out.iter_mut().skip(end).take(padding(a.len())) {
            *b = 0;
        }
        pos = end + padding(a.len());
    }
    out
}

#[test]
fn every_vector_decodes_and_reencodes() {
    let Some(vs) = vectors() else { return };
    let d = Decoder::default();
    let mut nonzero_padding = 0;
    for v in &vs {
        let at = format!("{}:{}", v.file, v.line);
        assert_eq!(d.peek_length(&v.bytes), Ok(Some(v.bytes.len())), "{at}");
        let m = d.decode(&v.bytes).unwrap_or_else(|e| panic!("{at}: {e}"));
        let enc = m.encode().unwrap();
        let expect = zero_padding(&v.bytes, &m);
        if expect != v.bytes {
            nonzero_padding += 1;
        }
        assert_eq!(enc, expect, "{at}");
        assert_eq!(d.decode(&enc).unwrap(), m, "{at}");
        // Grouped AVPs decode on demand too.
        for a in &m.avps {
            if dict::lookup(a.code, a.vendor()).is_some_and(|x| x.ty == dict::AvpType::Grouped) {
                a.children().unwrap_or_else(|e| panic!("{at}: {e}"));
            }
        }
    }
    eprintln!(
        "{} vectors, {nonzero_padding} with non-zero padding",
        vs.len()
    );
}

#[test]
fn handled_requests_in_vectors_validate() {
    let Some(vs) = vectors() else { return };
    let d = Decoder::default();
    let mut checked = 0;
    for v in &vs {
        let m = d.decode(&v.bytes).unwrap();
        if !m.is_request() {
            continue;
        }
        if let Some(spec) = spec_for(m.header.application_id, m.header.code) {
            validate::validate(&m, spec)
                .unwrap_or_else(|e| panic!("{}:{} {}: {e}", v.file, v.line, spec.name));
            checked += 1;
        }
    }
    // 2 CER + DWRs + DPR + Gx CCRs.
    assert!(checked >= 10, "only {checked} handled requests");
}

#[test]
fn magma_gx_ccr_i_user_equipment_info() {
    let Some(b) = vector("magma-gx-gy-03.hex", 7) else {
        return;
    };
    let m = Decoder::default().decode(&b).unwrap();
    assert_eq!((m.header.code, m.header.application_id), (272, APP_GX));
    assert_eq!(m.avps.get_u32(dict::CC_REQUEST_TYPE, 0), Ok(Some(1)));
    let uei = m
        .avps
        .get_grouped(dict::USER_EQUIPMENT_INFO, 0)
        .unwrap()
        .unwrap();
    assert_eq!(uei.get_u32(dict::USER_EQUIPMENT_INFO_TYPE, 0), Ok(Some(0)));
    let val = uei.find(dict::USER_EQUIPMENT_INFO_VALUE, 0).unwrap();
    assert_eq!(val.data.len(), 16);
    let p = Imei::parse_wire(&val.data).unwrap();
    assert_eq!(p.imei.to_string(), "40941753377600");
    assert_eq!(m.avps.get_u32(dict::RAT_TYPE, VENDOR_3GPP), Ok(Some(1004)));
}

#[test]
fn open5gs_gx_ccr_subscription_id_imsi() {
    let Some(b) = vector("open5gs-testepc.hex", 7) else {
        return;
    };
    let m = Decoder::default().decode(&b).unwrap();
    let subs: Vec<_> = m.avps.find_all(dict::SUBSCRIPTION_ID, 0).collect();
    assert_eq!(subs.len(), 1);
    let c = subs[0].children().unwrap();
    assert_eq!(c.get_u32(dict::SUBSCRIPTION_ID_TYPE, 0), Ok(Some(1)));
    let imsi = c.get_utf8(dict::SUBSCRIPTION_ID_DATA, 0).unwrap().unwrap();
    assert!(
        crate::context::Imsi::parse(imsi.as_bytes()).is_ok(),
        "{imsi}"
    );
    assert_eq!(
        m.avps.get_utf8(dict::CALLED_STATION_ID, 0),
        Ok(Some("internet"))
    );
}

#[test]
fn every_prefix_is_incomplete_or_an_error() {
    let Some(vs) = vectors() else { return };
    let d = Decoder::default();
    for v in &vs {
        for k in 0..v.bytes.len() {
            let p = &v.bytes[..k];
            match d.peek_length(p) {
                Ok(None) => assert!(k < 4),
                Ok(Some(n)) => assert_eq!(n, v.bytes.len()),
                Err(e) => panic!("{}:{} prefix {k}: {e}", v.file, v.line),
            }
            assert!(d.decode(p).is_err(), "{}:{} prefix {k}", v.file, v.line);
        }
    }
}

/// Sets the 24-bit length of the AVP at `pos`.
fn set_avp_len(b: &mut [u8], pos: usize, len: usize) {
    b[pos + 5..pos + 8].copy_from_slice(&(len as u32).to_be_bytes()[1..]);
}

#[test]
fn altered_avp_lengths_are_refused() {
    let Some(vs) = vectors() else { return };
    let d = Decoder::default();
    for v in &vs {
        let m = d.decode(&v.bytes).unwrap();
        let mut pos = HEADER_LEN;
        for a in &m.avps {
            let at = format!("{}:{} AVP {} at {pos}", v.file, v.line, a.code);
            let overrun = v.bytes.len() - pos + 1;
            for (len, why) in [
                (overrun, "overrun"),
                (7, "below header"),
                (a.header_len() - 1, "below vendor header"),
            ] {
                let mut b = v.bytes.clone();
                set_avp_len(&mut b, pos, len);
                let e = d.decode(&b).expect_err(&format!("{at} {why}"));
                assert_eq!(
                    e.result_code(),
                    ResultCode::INVALID_AVP_LENGTH,
                    "{at} {why}"
                );
                let f = e.failed_avp().unwrap();
                assert_eq!(f.code, a.code, "{at} {why}");
            }
            pos += a.len() + padding(a.len());
        }
    }
}

#[test]
fn altered_inner_length_in_grouped_avp() {
    let Some(b) = vector("open5gs-testepc.hex", 7) else {
        return;
    };
    let d = Decoder::default();
    let m = d.decode(&b).unwrap();
    // Find Subscription-Id and make its first child overrun the group.
    let mut pos = HEADER_LEN;
    for a in &m.avps {
        if a.code == dict::SUBSCRIPTION_ID {
            break;
        }
        pos += a.len() + padding(a.len());
    }
    let mut bad = b.clone();
    set_avp_len(&mut bad, pos + 8, 100);
    let e = d.decode(&bad).unwrap_err();
    assert_eq!(e.result_code(), ResultCode::INVALID_AVP_LENGTH);
    let f = e.failed_avp().unwrap();
    assert_eq!(f.code, dict::SUBSCRIPTION_ID, "Failed-AVP names the group");
    let inner = f.children().unwrap();
    assert_eq!(inner[0].code, dict::SUBSCRIPTION_ID_TYPE);
    assert_eq!(inner[0].data, vec![0; 4], "zero-filled minimum payload");
}

#[test]
fn reserved_avp_bits_are_3009() {
    let m = Message::request(280, 0, false).with(Avp::utf8(dict::ORIGIN_HOST, 0, "a"));
    let mut b = m.encode().unwrap();
    b[HEADER_LEN + 4] |= 0x01;
    let e = Decoder::default().decode(&b).unwrap_err();
    assert_eq!(e.result_code(), ResultCode::INVALID_AVP_BITS);
    assert_eq!(e.failed_avp().unwrap().code, dict::ORIGIN_HOST);
    // Our answer carries the bad AVP in Failed-AVP and still decodes.
    let origin = Origin {
        host: "h".into(),
        realm: "r".into(),
        state_id: None,
    };
    let a = answer_for_error(&m.header, None, &origin, &e)
        .encode()
        .unwrap();
    assert!(Decoder::default().decode(&a).is_ok());
}

#[test]
fn nesting_depth_is_capped() {
    // Proxy-Info inside Proxy-Info inside ... 10 deep.
    let mut a = Avp::utf8(dict::ORIGIN_HOST, 0, "x");
    for _ in 0..10 {
        a = Avp::grouped(dict::PROXY_INFO, 0, &[a]).unwrap();
    }
    let b = Message::request(280, 0, false).with(a).encode().unwrap();
    let e = Decoder::default().decode(&b).unwrap_err();
    assert_eq!(e.result_code(), ResultCode::INVALID_AVP_VALUE);
    assert!(Decoder::default().with_max_depth(16).decode(&b).is_ok());
}

#[test]
fn validation_errors() {
    use crate::diameter::app::gx::CCR as GX_CCR;
    use validate::{validate, DWR};
    let base = || {
        Message::request(280, 0, false)
            .with(Avp::utf8(dict::ORIGIN_HOST, 0, "pgw"))
            .with(Avp::utf8(dict::ORIGIN_REALM, 0, "realm"))
    };
    assert_eq!(validate(&base(), &DWR), Ok(()));
    // Unknown M-bit AVP → 5001 with the AVP.
    let unk = Avp::new(4242, 0, [1, 2]).mandatory(true);
    let e = validate(&base().with(unk.clone()), &DWR).unwrap_err();
    assert_eq!(e.result_code(), ResultCode::AVP_UNSUPPORTED);
    assert_eq!(e.failed_avp(), Some(&unk));
    // Unknown without M → ignored.
    assert_eq!(validate(&base().with(unk.mandatory(false)), &DWR), Ok(()));
    // A Gx-only AVP with M in a base command → 5001; in a Gx CCR it is understood.
    let cc = Avp::u32(dict::CC_REQUEST_TYPE, 0, 1);
    assert_eq!(
        validate(&base().with(cc), &DWR).unwrap_err().result_code(),
        ResultCode::AVP_UNSUPPORTED
    );
    // Unsigned32 with 5 bytes → 5014 with the AVP.
    let bad = Avp::new(dict::ORIGIN_STATE_ID, 0, [0, 0, 0, 0, 1]);
    let e = validate(&base().with(bad.clone()), &DWR).unwrap_err();
    assert_eq!(e.result_code(), ResultCode::INVALID_AVP_LENGTH);
    assert_eq!(e.failed_avp(), Some(&bad));
    // Bad UTF-8 → 5004.
    let e = validate(&base().with(Avp::new(dict::ERROR_MESSAGE, 0, [0xff])), &DWR).unwrap_err();
    assert_eq!(e.result_code(), ResultCode::INVALID_AVP_VALUE);
    // Missing → 5005 with a zero-filled placeholder.
    let e = validate(&base(), &GX_CCR).unwrap_err();
    assert_eq!(e.result_code(), ResultCode::MISSING_AVP);
    assert_eq!(e.failed_avp().unwrap().code, dict::SESSION_ID);
    let mut m = base();
    m.header.code = 272;
    m.header.application_id = APP_GX;
    for a in [
        Avp::utf8(dict::SESSION_ID, 0, "s"),
        Avp::u32(dict::AUTH_APPLICATION_ID, 0, APP_GX),
        Avp::utf8(dict::DESTINATION_REALM, 0, "r"),
        Avp::u32(dict::CC_REQUEST_TYPE, 0, 1),
    ] {
        m.push(a);
    }
    let e = validate(&m, &GX_CCR).unwrap_err();
    assert_eq!(e.failed_avp().unwrap().code, dict::CC_REQUEST_NUMBER);
    assert_eq!(e.failed_avp().unwrap().data, vec![0; 4]);
}

#[test]
fn error_answer_shape() {
    let req = Message::request(272, APP_GX, true);
    let origin = Origin {
        host: "aaa".into(),
        realm: "realm".into(),
        state_id: Some(9),
    };
    let err = super::avp_read::missing(dict::CC_REQUEST_NUMBER, 0);
    let a = answer_for_error(&req.header, Some("s;1"), &origin, &err);
    assert!(!a.is_request() && a.header.flags.is_proxiable() && !a.header.flags.is_error());
    let codes: Vec<u32> = a.avps.iter().map(|x| x.code).collect();
    assert_eq!(codes, [263, 264, 296, 268, 278, 281, 279]);
    assert_eq!(a.result_code(), Some(ResultCode::MISSING_AVP));
    let f = a.avps.get_grouped(dict::FAILED_AVP, 0).unwrap().unwrap();
    assert_eq!(f[0].code, dict::CC_REQUEST_NUMBER);
    let p = error_answer(
        &req.header,
        None,
        &origin,
        ResultCode::COMMAND_UNSUPPORTED,
        None,
        None,
    );
    assert!(p.header.flags.is_error());
}

/// (value, bytes): one table drives both directions.
#[test]
fn encode_decode_table() {
    let hdr = |code, app, flags| Header {
        length: 0,
        flags: CommandFlags(flags),
        code,
        application_id: app,
        hop_by_hop: 1,
        end_to_end: 2,
    };
    let table: Vec<(Message, &str)> = vec![
        (
            Message {
                header: hdr(280, 0, 0x80),
                avps: vec![
                    Avp::utf8(dict::ORIGIN_HOST, 0, "a"),
                    Avp::utf8(dict::ORIGIN_REALM, 0, "b"),
                    Avp::u32(dict::ORIGIN_STATE_ID, 0, 7),
                ],
            },
            "01000038 80000118 00000000 00000001 00000002 \
             00000108 40000009 61000000 \
             00000128 40000009 62000000 \
             00000116 4000000c 00000007",
        ),
        (
            Message {
                header: hdr(272, APP_GX, 0x40),
                avps: vec![
                    Avp::u32(dict::RAT_TYPE, VENDOR_3GPP, 1004),
                    Avp::grouped(
                        dict::SUBSCRIPTION_ID,
                        0,
                        &[
                            Avp::u32(dict::SUBSCRIPTION_ID_TYPE, 0, 1),
                            Avp::utf8(dict::SUBSCRIPTION_ID_DATA, 0, "00101"),
                        ],
                    )
                    .unwrap(),
                ],
            },
            "01000048 40000110 01000016 00000001 00000002 \
             00000408 c0000010 000028af 000003ec \
             000001bb 40000024 \
               000001c2 4000000c 00000001 \
               000001bc 4000000d 30303130 31000000",
        ),
    ];
    for (value, text) in table {
        let bytes = hex(&text.replace(' ', ""));
        assert_eq!(value.encode().unwrap(), bytes, "{text}");
        let mut decoded = Decoder::default().decode(&bytes).unwrap();
        decoded.header.length = 0;
        assert_eq!(decoded, value, "{text}");
    }
}

fn arb_avp() -> impl Strategy<Value = Avp> {
    let leaf = (
        prop_oneof![1u32..600, Just(4242u32)],
        prop_oneof![Just(0u32), Just(VENDOR_3GPP), any::<u32>()],
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..24),
    )
        // Leaves never take the code of a grouped AVP the dictionary knows (random data there
        // is rightly refused).
        .prop_filter("grouped code", |(code, vendor, _, _)| {
            dict::lookup(*code, *vendor).is_none_or(|d| d.ty != dict::AvpType::Grouped)
        })
        .prop_map(|(code, vendor, m, data)| Avp::new(code, vendor, data).mandatory(m));
    leaf.prop_recursive(3, 24, 4, |inner| {
        (
            prop_oneof![
                Just(dict::SUBSCRIPTION_ID),
                Just(dict::FAILED_AVP),
                Just(5555u32)
            ],
            proptest::collection::vec(inner, 0..4),
        )
            .prop_map(|(code, kids)| Avp::grouped(code, 0, &kids).unwrap())
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
        let d = Decoder::default();
        let _ = d.peek_length(&raw);
        let _ = d.decode(&raw);
        let _ = d.decode_avps(&raw);
    }

    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..50)
            .prop_map(|mut b| { b.truncate(b.len() / 4 * 4); b })) {
        let mut raw = vec![1, 0, 0, (20 + body.len()) as u8, 0x80, 0, 1, 0x18];
        raw.extend_from_slice(&[0; 12]);
        raw.extend_from_slice(&body);
        if let Ok(m) = Decoder::default().decode(&raw) {
            for a in &m.avps {
                let _ = a.children();
                let _ = a.as_ip();
            }
        }
    }

    #[test]
    fn decode_encode_decode_is_stable(avps in proptest::collection::vec(arb_avp(), 0..8),
                                      code in 0u32..0x100_0000, app: u32, hbh: u32, e2e: u32,
                                      flags in prop_oneof![Just(0u8), Just(0x80), Just(0xc0), Just(0x40), Just(0x60)]) {
        let m = Message {
            header: Header { length: 0, flags: CommandFlags(flags), code, application_id: app,
                             hop_by_hop: hbh, end_to_end: e2e },
            avps,
        };
        let b = m.encode().unwrap();
        let d = Decoder::default().with_max_depth(16);
        let m2 = d.decode(&b).unwrap();
        prop_assert_eq!(&m2.avps, &m.avps);
        prop_assert_eq!(m2.encode().unwrap(), b);
    }
}
