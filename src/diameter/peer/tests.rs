//! The peer machine driven with a fake clock.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::diameter::codec::dict::VENDOR_3GPP;
use crate::diameter::codec::{APP_GX, APP_RELAY, APP_S6B};

const TW: Duration = Duration::from_secs(30);

fn config() -> Arc<PeerConfig> {
    let mut c = PeerConfig::new("aaa.localdomain", "localdomain");
    c.catalog = Arc::new(crate::diameter::app::tests::catalog());
    c.known_peers = vec!["pgw.localdomain".into()];
    c.host_ip_addresses = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    c.watchdog = TW;
    c.watchdog_jitter = Duration::ZERO;
    c.origin.state_id = Some(77);
    Arc::new(c)
}

struct Harness {
    peer: Peer,
    now: Instant,
    hbh: u32,
}

impl Harness {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            peer: Peer::new(
                config(),
                now,
                Seed {
                    unix_time_secs: 1_700_000_000,
                    random: 42,
                },
            ),
            now,
            hbh: 1000,
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.peer.handle_timeout(self.now);
    }

    fn send(&mut self, mut m: Message) {
        if m.is_request() {
            self.hbh += 1;
            m.header.hop_by_hop = self.hbh;
            m.header.end_to_end = self.hbh;
        }
        let b = m.encode().unwrap();
        self.peer.handle_frame(self.now, &b);
    }

    fn sent(&mut self) -> Vec<Message> {
        let mut v = Vec::new();
        while let Some(t) = self.peer.poll_transmit() {
            v.push(Decoder::default().decode(&t.bytes).unwrap());
        }
        v
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.peer.poll_event()).collect()
    }

    fn open(&mut self) {
        self.send(cer("pgw.localdomain", &[vsai(APP_GX)]));
        let s = self.sent();
        assert_eq!(s[0].result_code(), Some(ResultCode::SUCCESS));
        assert!(matches!(self.events()[..], [Event::Open(_)]));
    }
}

fn base(code: u32, app: u32, host: &str) -> Message {
    Message::request(code, app, false)
        .with(Avp::utf8(dict::ORIGIN_HOST, 0, host))
        .with(Avp::utf8(dict::ORIGIN_REALM, 0, "localdomain"))
}

fn vsai(app: u32) -> Avp {
    Avp::grouped(
        dict::VENDOR_SPECIFIC_APPLICATION_ID,
        0,
        &[
            Avp::u32(dict::VENDOR_ID, 0, VENDOR_3GPP),
            Avp::u32(dict::AUTH_APPLICATION_ID, 0, app),
        ],
    )
    .unwrap()
}

fn cer(host: &str, apps: &[Avp]) -> Message {
    let mut m = base(257, 0, host)
        .with(Avp::address(
            dict::HOST_IP_ADDRESS,
            0,
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        ))
        .with(Avp::u32(dict::VENDOR_ID, 0, 0))
        .with(Avp::utf8(dict::PRODUCT_NAME, 0, "pgw"));
    m.avps.extend(apps.iter().cloned());
    m
}

fn closed(events: &[Event]) -> Option<&CloseReason> {
    events.iter().find_map(|e| match e {
        Event::Closed(r) => Some(r),
        _ => None,
    })
}

#[test]
fn cer_ok_advertises_gx_and_s6b() {
    let mut h = Harness::new();
    h.send(cer("PGW.localdomain", &[vsai(APP_GX)]));
    let s = h.sent();
    assert_eq!(s.len(), 1);
    let cea = &s[0];
    assert_eq!((cea.header.code, cea.is_request()), (257, false));
    assert_eq!(cea.header.hop_by_hop, h.hbh);
    assert_eq!(cea.avps[0].code, dict::RESULT_CODE, "Result-Code first");
    assert_eq!(cea.result_code(), Some(ResultCode::SUCCESS));
    let apps: Vec<u32> = cea
        .avps
        .find_all(dict::VENDOR_SPECIFIC_APPLICATION_ID, 0)
        .map(|v| {
            v.children()
                .unwrap()
                .require_u32(dict::AUTH_APPLICATION_ID, 0)
                .unwrap()
        })
        .collect();
    assert_eq!(apps, [APP_GX, APP_S6B]);
    assert_eq!(
        cea.avps.get_u32(dict::SUPPORTED_VENDOR_ID, 0),
        Ok(Some(VENDOR_3GPP))
    );
    assert_eq!(
        cea.avps.get_utf8(dict::PRODUCT_NAME, 0),
        Ok(Some("imei-lockd"))
    );
    assert!(!cea
        .find(dict::PRODUCT_NAME, 0)
        .unwrap()
        .flags
        .is_mandatory());
    assert!(cea.find(dict::HOST_IP_ADDRESS, 0).is_some());
    assert_eq!(h.peer.state(), State::Open);
    let ev = h.events();
    let [Event::Open(info)] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert!(info.supports(APP_GX) && !info.supports(APP_S6B));
    assert_eq!(h.peer.poll_timeout(), Some(h.now + TW));
}

#[test]
fn unknown_peer_gets_3010_and_close() {
    let mut h = Harness::new();
    h.send(cer("evil.example", &[vsai(APP_GX)]));
    let s = h.sent();
    assert_eq!(s[0].result_code(), Some(ResultCode::UNKNOWN_PEER));
    assert!(s[0].header.flags.is_error());
    assert_eq!(
        closed(&h.events()),
        Some(&CloseReason::CerRejected(ResultCode::UNKNOWN_PEER))
    );
    assert_eq!(h.peer.state(), State::Closed);
    assert_eq!(h.peer.poll_timeout(), None);
}

#[test]
fn no_common_application_gets_5010() {
    let mut h = Harness::new();
    h.send(cer(
        "pgw.localdomain",
        &[Avp::u32(dict::AUTH_APPLICATION_ID, 0, 4), vsai(16_777_251)],
    ));
    let s = h.sent();
    assert_eq!(s[0].result_code(), Some(ResultCode::NO_COMMON_APPLICATION));
    assert!(!s[0].header.flags.is_error());
    assert_eq!(
        closed(&h.events()),
        Some(&CloseReason::CerRejected(ResultCode::NO_COMMON_APPLICATION))
    );
}

#[test]
fn relay_only_and_plain_auth_app_are_accepted() {
    for apps in [
        vec![Avp::u32(dict::AUTH_APPLICATION_ID, 0, APP_RELAY)],
        vec![Avp::u32(dict::AUTH_APPLICATION_ID, 0, APP_S6B)],
    ] {
        let mut h = Harness::new();
        h.send(cer("pgw.localdomain", &apps));
        assert_eq!(h.sent()[0].result_code(), Some(ResultCode::SUCCESS));
        let ev = h.events();
        let [Event::Open(info)] = &ev[..] else {
            panic!()
        };
        assert!(info.supports(APP_S6B));
    }
}

#[test]
fn invalid_cer_gets_5005() {
    let mut h = Harness::new();
    let mut m = cer("pgw.localdomain", &[vsai(APP_GX)]);
    m.avps.retain(|a| a.code != dict::PRODUCT_NAME);
    h.send(m);
    let s = h.sent();
    assert_eq!(s[0].result_code(), Some(ResultCode::MISSING_AVP));
    let f = s[0].avps.get_grouped(dict::FAILED_AVP, 0).unwrap().unwrap();
    assert_eq!(f[0].code, dict::PRODUCT_NAME);
    assert_eq!(h.peer.state(), State::Closed);
}

#[test]
fn vector_cer_from_open5gs_pgw_is_accepted() {
    let Some(b) = crate::diameter::codec::tests::vector("open5gs-testepc.hex", 1) else {
        return;
    };
    let mut c = (*config()).clone();
    c.known_peers = vec!["pgw.localdomain".into()];
    let mut p = Peer::new(
        Arc::new(c),
        Instant::now(),
        Seed {
            unix_time_secs: 0,
            random: 1,
        },
    );
    p.handle_frame(Instant::now(), &b);
    let t = p.poll_transmit().unwrap();
    let cea = Decoder::default().decode(&t.bytes).unwrap();
    assert_eq!(cea.result_code(), Some(ResultCode::SUCCESS));
    assert_eq!(p.state(), State::Open);
}

#[test]
fn request_before_cer_closes_without_answer() {
    let mut h = Harness::new();
    h.send(base(280, 0, "pgw.localdomain"));
    assert!(h.sent().is_empty());
    assert_eq!(closed(&h.events()), Some(&CloseReason::NotCer));
    // Later input is ignored.
    h.send(cer("pgw.localdomain", &[vsai(APP_GX)]));
    assert!(h.sent().is_empty());
}

#[test]
fn cer_timeout_closes() {
    let mut h = Harness::new();
    h.advance(Duration::from_secs(9));
    assert!(h.events().is_empty());
    h.advance(Duration::from_secs(1));
    assert_eq!(closed(&h.events()), Some(&CloseReason::CerTimeout));
}

#[test]
fn dwr_gets_dwa_and_rearms_watchdog() {
    let mut h = Harness::new();
    h.open();
    h.now += Duration::from_secs(20);
    h.send(base(280, 0, "pgw.localdomain"));
    let s = h.sent();
    assert_eq!(s.len(), 1);
    assert_eq!(
        (s[0].header.code, s[0].result_code()),
        (280, Some(ResultCode::SUCCESS))
    );
    assert_eq!(s[0].avps.get_u32(dict::ORIGIN_STATE_ID, 0), Ok(Some(77)));
    assert_eq!(h.peer.poll_timeout(), Some(h.now + TW));
    assert_eq!(h.peer.stats().dwr_received, 1);
}

#[test]
fn watchdog_sends_dwr_then_suspect_then_close() {
    let mut h = Harness::new();
    h.open();
    h.advance(TW);
    let s = h.sent();
    assert_eq!(s.len(), 1);
    let dwr = &s[0];
    assert!(dwr.is_request() && dwr.header.code == 280 && !dwr.header.flags.is_proxiable());
    assert_eq!(dwr.origin_host(), Some("aaa.localdomain"));
    h.advance(TW);
    assert_eq!(h.events(), [Event::Suspect]);
    assert!(h.sent().is_empty());
    h.advance(TW);
    assert_eq!(closed(&h.events()), Some(&CloseReason::WatchdogExpired));
}

#[test]
fn dwa_clears_pending_and_traffic_recovers_suspect() {
    let mut h = Harness::new();
    h.open();
    h.advance(TW);
    let dwr = h.sent().remove(0);
    h.now += Duration::from_secs(1);
    h.send(
        Message::answer_to(&dwr.header)
            .with(Avp::u32(dict::RESULT_CODE, 0, 2001))
            .with(Avp::utf8(dict::ORIGIN_HOST, 0, "pgw.localdomain"))
            .with(Avp::utf8(dict::ORIGIN_REALM, 0, "localdomain")),
    );
    assert_eq!(h.peer.stats().dwa_received, 1);
    // Next expiry sends another DWR, not SUSPECT.
    h.advance(TW);
    assert_eq!(h.sent().len(), 1);
    assert!(h.events().is_empty());
    h.advance(TW);
    assert_eq!(h.events(), [Event::Suspect]);
    h.now += Duration::from_secs(1);
    h.send(base(280, 0, "pgw.localdomain"));
    assert_eq!(h.events(), [Event::Recovered]);
    assert_eq!(h.peer.state(), State::Open);
}

#[test]
fn unknown_answer_is_discarded_and_counted() {
    let mut h = Harness::new();
    h.open();
    let mut a = Message::answer_to(&base(280, 0, "x").header);
    a.header.hop_by_hop = 0xdead;
    a.push(Avp::u32(dict::RESULT_CODE, 0, 2001));
    h.send(a);
    assert!(h.sent().is_empty());
    assert_eq!(h.peer.stats().unmatched_answers, 1);
    assert_eq!(h.peer.state(), State::Open);
}

#[test]
fn peer_dpr_gets_dpa_then_close() {
    let mut h = Harness::new();
    h.open();
    h.send(base(282, 0, "pgw.localdomain").with(Avp::u32(dict::DISCONNECT_CAUSE, 0, 0)));
    let s = h.sent();
    assert_eq!(
        (s[0].header.code, s[0].result_code()),
        (282, Some(ResultCode::SUCCESS))
    );
    assert_eq!(closed(&h.events()), Some(&CloseReason::PeerDisconnect(0)));
}

#[test]
fn our_dpr_waits_for_dpa() {
    let mut h = Harness::new();
    h.open();
    h.peer.begin_disconnect(h.now, DisconnectCause::Rebooting);
    let dpr = h.sent().remove(0);
    assert_eq!(dpr.header.code, 282);
    assert_eq!(dpr.avps.get_u32(dict::DISCONNECT_CAUSE, 0), Ok(Some(0)));
    assert_eq!(h.peer.state(), State::Closing);
    // A DWR in Closing is still answered.
    h.send(base(280, 0, "pgw.localdomain"));
    assert_eq!(h.sent().len(), 1);
    h.send(
        Message::answer_to(&dpr.header)
            .with(Avp::u32(dict::RESULT_CODE, 0, 2001))
            .with(Avp::utf8(dict::ORIGIN_HOST, 0, "pgw.localdomain"))
            .with(Avp::utf8(dict::ORIGIN_REALM, 0, "localdomain")),
    );
    assert_eq!(closed(&h.events()), Some(&CloseReason::LocalDisconnect));
}

#[test]
fn our_dpr_times_out() {
    let mut h = Harness::new();
    h.open();
    h.peer.begin_disconnect(h.now, DisconnectCause::Busy);
    let _ = h.sent();
    h.advance(Duration::from_secs(5));
    assert_eq!(closed(&h.events()), Some(&CloseReason::DpaTimeout));
}

#[test]
fn app_requests_are_routed_or_refused() {
    let mut h = Harness::new();
    h.open();
    // Gx CCR (advertised): passed out.
    let ccr = base(272, APP_GX, "pgw.localdomain")
        .with(Avp::utf8(dict::SESSION_ID, 0, "s;1"))
        .with(Avp::u32(dict::AUTH_APPLICATION_ID, 0, APP_GX))
        .with(Avp::utf8(dict::DESTINATION_REALM, 0, "localdomain"))
        .with(Avp::u32(dict::CC_REQUEST_TYPE, 0, 1))
        .with(Avp::u32(dict::CC_REQUEST_NUMBER, 0, 0));
    h.send(ccr.clone());
    assert!(h.sent().is_empty());
    assert!(matches!(&h.events()[..], [Event::Request(m)] if m.header.code == 272));
    // Missing CC-Request-Number: CCA 5005 in Gx format.
    let mut bad = ccr.clone();
    bad.avps.retain(|a| a.code != dict::CC_REQUEST_NUMBER);
    h.send(bad);
    let s = h.sent();
    assert_eq!(s[0].result_code(), Some(ResultCode::MISSING_AVP));
    assert_eq!(s[0].session_id(), Some("s;1"));
    // S6b not advertised by this peer: 3007.
    h.send(base(265, APP_S6B, "pgw.localdomain"));
    let s = h.sent();
    assert_eq!(
        s[0].result_code(),
        Some(ResultCode::APPLICATION_UNSUPPORTED)
    );
    assert!(s[0].header.flags.is_error());
    // Gx RAR from the peer: 3001.
    h.send(base(258, APP_GX, "pgw.localdomain"));
    assert_eq!(
        h.sent()[0].result_code(),
        Some(ResultCode::COMMAND_UNSUPPORTED)
    );
    // Unknown base command: 3001.
    h.send(base(999, 0, "pgw.localdomain"));
    assert_eq!(
        h.sent()[0].result_code(),
        Some(ResultCode::COMMAND_UNSUPPORTED)
    );
}

#[test]
fn bad_frames_are_answered() {
    let mut h = Harness::new();
    h.open();
    let mut b = base(272, APP_GX, "pgw.localdomain").encode().unwrap();
    b[HEADER_LEN_FOR_TEST + 4] |= 0x01; // reserved AVP bit
    h.peer.handle_frame(h.now, &b);
    let s = h.sent();
    assert_eq!(s[0].result_code(), Some(ResultCode::INVALID_AVP_BITS));
    assert_eq!(h.peer.state(), State::Open);
    // Stream-fatal: version 2.
    let mut v2 = base(280, 0, "pgw.localdomain").encode().unwrap();
    v2[0] = 2;
    let e = h.peer.decoder().peek_length(&v2).unwrap_err();
    h.peer.handle_stream_error(h.now, &v2, e);
    assert_eq!(
        h.sent()[0].result_code(),
        Some(ResultCode::UNSUPPORTED_VERSION)
    );
    assert!(matches!(
        closed(&h.events()),
        Some(CloseReason::Protocol(_))
    ));
}

const HEADER_LEN_FOR_TEST: usize = crate::diameter::codec::HEADER_LEN;

#[test]
fn re_cer_is_answered_and_host_change_refused() {
    let mut h = Harness::new();
    h.open();
    h.send(cer("pgw.localdomain", &[vsai(APP_GX), vsai(APP_S6B)]));
    assert_eq!(h.sent()[0].result_code(), Some(ResultCode::SUCCESS));
    assert!(h.events().is_empty());
    assert!(h.peer.remote().unwrap().supports(APP_S6B));
    let mut c = (*config()).clone();
    c.known_peers.push("pgw2.localdomain".into());
    let mut h2 = Harness::new();
    h2.peer = Peer::new(
        Arc::new(c),
        h2.now,
        Seed {
            unix_time_secs: 0,
            random: 3,
        },
    );
    h2.open();
    h2.send(cer("pgw2.localdomain", &[vsai(APP_GX)]));
    assert_eq!(
        h2.sent()[0].result_code(),
        Some(ResultCode::UNABLE_TO_COMPLY)
    );
    assert_eq!(h2.peer.state(), State::Closed);
}

#[test]
fn jitter_stays_within_bounds() {
    let mut c = (*config()).clone();
    c.watchdog_jitter = Duration::from_secs(2);
    let t0 = Instant::now();
    let mut p = Peer::new(
        Arc::new(c),
        t0,
        Seed {
            unix_time_secs: 0,
            random: 99,
        },
    );
    p.handle_message(t0, cer("pgw.localdomain", &[vsai(APP_GX)]));
    let mut now = t0;
    for _ in 0..50 {
        let t = p.poll_timeout().unwrap();
        let d = t - now;
        assert!(
            d >= TW - Duration::from_secs(2) && d <= TW + Duration::from_secs(2),
            "{d:?}"
        );
        now += Duration::from_secs(1);
        p.handle_message(now, base(280, 0, "pgw.localdomain"));
    }
}
