//! The Diameter fuzz target ([`diameter`]) and the helpers the S13 target shares: the input as
//! a peer's byte stream, each frame decoded, re-encoded, validated and mapped, every answer
//! built checked, then fed to a [`Peer`] machine. It asserts; it does not recover.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::context::{Decision, Reason};
use crate::diameter::app::{known_spec, Catalog, KNOWN_COMMANDS};
use crate::diameter::codec::dict::{self, AvpType, VENDOR_3GPP};
use crate::diameter::codec::validate::{
    self, validate, APP_GX, APP_S6B, CMD_AAR, CMD_CCR, CMD_STR,
};
use crate::diameter::codec::{answer_for_error, Avp, Decoder, Header, Message, Origin, HEADER_LEN};
use crate::diameter::peer::{Event, Peer, PeerConfig, Seed};
use crate::diameter::{gx, s6b};

use super::DIAMETER_PEER_HOST;

/// Decoder for messages we built ourselves: an answer quoting a large Failed-AVP may exceed the
/// 64 KiB cap we impose on peers, never the 24-bit length field.
pub(super) fn own_decoder() -> Decoder {
    Decoder::new(0x00ff_ffff)
}

pub(super) fn origin() -> Origin {
    Origin {
        host: "aaa.localdomain".into(),
        realm: "localdomain".into(),
        state_id: Some(1),
    }
}

/// Diameter entry point: the input is a byte stream from one peer.
pub fn diameter(data: &[u8]) {
    let dec = Decoder::default();
    let mut rest = data;
    let mut frames = 0;
    while frames < 64 {
        match dec.peek_length(rest) {
            Ok(Some(len)) if len <= rest.len() => {
                let (frame, tail) = rest.split_at(len);
                diameter_frame(&dec, frame);
                rest = tail;
                frames += 1;
            }
            Ok(_) => break,
            Err(e) => {
                assert!(e.is_stream_fatal());
                if let Some((_, h)) = Header::parse_unchecked(rest) {
                    check_answer(&answer_for_error(&h, None, &origin(), &e));
                }
                break;
            }
        }
    }
    // The whole input as one frame (length mismatches, trailing bytes).
    if frames != 1 || !rest.is_empty() {
        diameter_frame(&dec, data);
    }
    diameter_peer(data, false);
    diameter_peer(data, true);
}

/// One frame: decode, round trip, grouped AVPs, validation, application mapping, answers.
fn diameter_frame(dec: &Decoder, frame: &[u8]) {
    let msg = match dec.decode(frame) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.result_code();
            if let Some((_, h)) = Header::parse_unchecked(frame) {
                check_answer(&answer_for_error(&h, None, &origin(), &e));
            }
            return;
        }
    };
    // Round trip: encode(decode(b)) has b's length and decodes to the same message.
    let enc = msg.encode().expect("a decoded message re-encodes");
    assert_eq!(enc.len(), frame.len(), "re-encoded length");
    let again = dec.decode(&enc).expect("a re-encoded message decodes");
    assert_eq!(again.avps, msg.avps);
    assert_eq!(again.header, msg.header);
    assert_eq!(again.encode().ok().as_deref(), Some(&enc[..]));
    for a in &msg.avps {
        walk_grouped(a, 1);
    }

    if !msg.is_request() {
        return;
    }
    let h = &msg.header;
    let session = msg.session_id();
    for spec in validate::BASE_SPECS
        .iter()
        .chain(KNOWN_COMMANDS.iter().flat_map(|c| c.iter()))
    {
        let _ = validate(&msg, spec);
    }
    let Some(spec) = spec_for(h.application_id, h.code) else {
        return;
    };
    if let Err(e) = validate(&msg, spec) {
        check_answer(&answer_for_error(h, session, &origin(), &e));
        return;
    }
    let accept = Decision {
        reason: Reason::Match,
        bound: None,
    };
    let reject = Decision {
        reason: Reason::Mismatch,
        bound: None,
    };
    let o = origin();
    match (h.application_id, h.code) {
        (APP_GX, CMD_CCR) => match gx::ccr_to_context(&msg) {
            Ok(_) => {
                check_answer(&gx::cca(&msg, &o, &accept));
                check_answer(&gx::cca(&msg, &o, &reject));
            }
            Err(e) => check_answer(&gx::error_answer(&msg, &o, &e)),
        },
        (APP_S6B, CMD_AAR) => match s6b::aar_to_context(&msg) {
            Ok(_) => {
                check_answer(&s6b::aaa(&msg, &o, &accept));
                check_answer(&s6b::aaa(&msg, &o, &reject));
            }
            Err(e) => check_answer(&s6b::refusal_answer(&msg, &o, &e)),
        },
        (APP_S6B, CMD_STR) => match s6b::str_to_context(&msg) {
            Ok(_) => check_answer(&s6b::sta(&msg, &o)),
            Err(e) => check_answer(&s6b::error_answer(&msg, &o, &e)),
        },
        _ => {}
    }
}

/// Grouped AVPs the dictionary knows were walked at decode time: their children decode.
fn walk_grouped(a: &Avp, depth: usize) {
    let grouped = (a.code, a.vendor()) != (dict::FAILED_AVP, 0)
        && dict::lookup(a.code, a.vendor()).is_some_and(|d| d.ty == AvpType::Grouped);
    if !grouped || depth >= 8 {
        return;
    }
    let children = a
        .children()
        .expect("a walked grouped AVP's children decode");
    for c in &children {
        let mut out = Vec::new();
        c.encode_into(&mut out).expect("a decoded child re-encodes");
        walk_grouped(c, depth + 1);
    }
}

/// An answer we built encodes, and decodes to itself.
pub(super) fn check_answer(m: &Message) {
    let enc = m.encode().expect("our answer encodes");
    let back = own_decoder().decode(&enc).expect("our answer decodes");
    assert_eq!(back.avps, m.avps);
    assert!(!back.is_request());
}

/// The spec of a request among the base protocol's and every known application's.
fn spec_for(id: u32, code: u32) -> Option<&'static validate::CommandSpec> {
    validate::BASE_SPECS
        .iter()
        .find(|s| s.application_id == id && s.code == code)
        .or_else(|| known_spec(id, code))
}

/// Gx and S6b over an in-memory engine, built once (the machine only routes and validates
/// with it; nothing here asks the engine).
fn catalog() -> Arc<Catalog> {
    static CATALOG: std::sync::OnceLock<Arc<Catalog>> = std::sync::OnceLock::new();
    CATALOG
        .get_or_init(|| {
            let engine = crate::engine::Engine::new(
                Arc::new(crate::store::memory::MemStore::new()),
                crate::engine::EnginePolicy::default(),
                Arc::new(crate::engine::SystemClock::default()),
            );
            Arc::new(Catalog::standard(Arc::new(engine)))
        })
        .clone()
}

fn peer_config() -> Arc<PeerConfig> {
    let mut c = PeerConfig::new("aaa.localdomain", "localdomain");
    c.catalog = catalog();
    c.known_peers = vec![DIAMETER_PEER_HOST.into()];
    c.host_ip_addresses = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    c.watchdog_jitter = Duration::ZERO;
    c.origin.state_id = Some(1);
    Arc::new(c)
}

/// Our CER-equivalent from a known peer, to get the machine to Open.
fn opening_cer() -> Vec<u8> {
    let vsai = |app| {
        Avp::grouped(
            dict::VENDOR_SPECIFIC_APPLICATION_ID,
            0,
            &[
                Avp::u32(dict::VENDOR_ID, 0, VENDOR_3GPP),
                Avp::u32(dict::AUTH_APPLICATION_ID, 0, app),
            ],
        )
    };
    let mut m = Message::request(validate::CMD_CER, 0, false)
        .with(Avp::utf8(dict::ORIGIN_HOST, 0, DIAMETER_PEER_HOST))
        .with(Avp::utf8(dict::ORIGIN_REALM, 0, "localdomain"))
        .with(Avp::address(
            dict::HOST_IP_ADDRESS,
            0,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        ))
        .with(Avp::u32(dict::VENDOR_ID, 0, 0))
        .with(Avp::utf8(dict::PRODUCT_NAME, 0, "fuzz"));
    for app in [APP_GX, APP_S6B] {
        if let Ok(a) = vsai(app) {
            m.push(a);
        }
    }
    m.header.hop_by_hop = 1;
    m.header.end_to_end = 1;
    m.encode().unwrap_or_default()
}

/// Feeds the stream to a peer machine (opened by our CER first when `open`), framing it as the
/// connection shell does; every transmit must decode.
fn diameter_peer(data: &[u8], open: bool) {
    let now = Instant::now();
    let mut peer = Peer::new(
        peer_config(),
        now,
        Seed {
            unix_time_secs: 1_700_000_000,
            random: 7,
        },
    );
    if open {
        peer.handle_frame(now, &opening_cer());
        drain(&mut peer);
    }
    let mut rest = data;
    for _ in 0..64 {
        if peer.state() == crate::diameter::peer::State::Closed {
            break;
        }
        match peer.decoder().peek_length(rest) {
            Ok(Some(len)) if len <= rest.len() => {
                let (frame, tail) = rest.split_at(len);
                peer.handle_frame(now, frame);
                rest = tail;
                drain(&mut peer);
            }
            Ok(_) => break,
            Err(e) => {
                let head = &rest[..rest.len().min(HEADER_LEN)];
                peer.handle_stream_error(now, head, e);
                drain(&mut peer);
                break;
            }
        }
    }
    // Timers still run on whatever state it was left in.
    peer.handle_timeout(now + Duration::from_secs(60));
    drain(&mut peer);
}

fn drain(peer: &mut Peer) {
    while let Some(t) = peer.poll_transmit() {
        check_answer_or_request(&t.bytes);
    }
    while let Some(ev) = peer.poll_event() {
        if let Event::Request(m) = ev {
            assert!(m.is_request());
        }
    }
}

fn check_answer_or_request(bytes: &[u8]) {
    own_decoder()
        .decode(bytes)
        .expect("everything the peer machine sends decodes");
}
