//! A raw Diameter client over TCP for the integration tests: the CER/CEA exchange, requests with
//! identifiers stamped per connection, answers matched by Hop-by-Hop (the daemon's DWRs are
//! skipped on the way), and exact bytes where a test needs them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use imei_lockd::diameter::codec::dict::{self, VENDOR_3GPP};
use imei_lockd::diameter::codec::{Avp, Decoder, Message, ResultCode, APP_GX, APP_S6B};

use super::Daemon;

/// A raw Diameter connection.
pub struct Raw {
    pub s: TcpStream,
    pub hbh: u32,
    pub buf: Vec<u8>,
}

/// A CER from `origin_host` advertising `apps` (as Vendor-Specific-Application-Id, 3GPP).
pub fn cer(origin_host: &str, product: &str, apps: &[u32]) -> Message {
    let mut m = Message::request(257, 0, false)
        .with(Avp::utf8(dict::ORIGIN_HOST, 0, origin_host))
        .with(Avp::utf8(dict::ORIGIN_REALM, 0, "localdomain"))
        .with(Avp::address(
            dict::HOST_IP_ADDRESS,
            0,
            "127.0.0.1".parse().unwrap(),
        ))
        .with(Avp::u32(dict::VENDOR_ID, 0, 0))
        .with(Avp::utf8(dict::PRODUCT_NAME, 0, product));
    for &app in apps {
        m.push(
            Avp::grouped(
                dict::VENDOR_SPECIFIC_APPLICATION_ID,
                0,
                &[
                    Avp::u32(dict::VENDOR_ID, 0, VENDOR_3GPP),
                    Avp::u32(dict::AUTH_APPLICATION_ID, 0, app),
                ],
            )
            .unwrap(),
        );
    }
    m
}

/// A DWR from `origin_host`.
pub fn dwr(origin_host: &str) -> Message {
    Message::request(280, 0, false)
        .with(Avp::utf8(dict::ORIGIN_HOST, 0, origin_host))
        .with(Avp::utf8(dict::ORIGIN_REALM, 0, "localdomain"))
}

/// A Gx CCR (`cc_type` 1 = Initial) for `imsi` from `origin_host`, presenting `imei` (IMEISV as
/// ASCII) when given. Called-Station-Id "iot.apn" is the last AVP.
pub fn ccr(
    session_id: &str,
    origin_host: &str,
    cc_type: u32,
    imsi: &str,
    imei: Option<&str>,
) -> Message {
    let mut m = Message::request(272, APP_GX, true)
        .with(Avp::utf8(dict::SESSION_ID, 0, session_id))
        .with(Avp::u32(dict::AUTH_APPLICATION_ID, 0, APP_GX))
        .with(Avp::utf8(dict::ORIGIN_HOST, 0, origin_host))
        .with(Avp::utf8(dict::ORIGIN_REALM, 0, "localdomain"))
        .with(Avp::utf8(dict::DESTINATION_REALM, 0, "localdomain"))
        .with(Avp::u32(dict::CC_REQUEST_TYPE, 0, cc_type))
        .with(Avp::u32(dict::CC_REQUEST_NUMBER, 0, 0))
        .with(
            Avp::grouped(
                dict::SUBSCRIPTION_ID,
                0,
                &[
                    Avp::u32(dict::SUBSCRIPTION_ID_TYPE, 0, 1),
                    Avp::utf8(dict::SUBSCRIPTION_ID_DATA, 0, imsi),
                ],
            )
            .unwrap(),
        );
    if let Some(i) = imei {
        m.push(
            Avp::grouped(
                dict::USER_EQUIPMENT_INFO,
                0,
                &[
                    Avp::u32(dict::USER_EQUIPMENT_INFO_TYPE, 0, 0),
                    Avp::new(dict::USER_EQUIPMENT_INFO_VALUE, 0, i.as_bytes()),
                ],
            )
            .unwrap(),
        );
    }
    // Last, so tests can find it at the end of the encoded message.
    m.push(Avp::utf8(dict::CALLED_STATION_ID, 0, "iot.apn"));
    m
}

impl Raw {
    /// A TCP connection to `port` on 127.0.0.1, no CER sent yet.
    pub fn open(port: u16) -> Self {
        Self::try_open(port).expect("connect to the daemon's Diameter port")
    }

    /// As [`Self::open`], None when the connection is refused.
    pub fn try_open(port: u16) -> Option<Self> {
        let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        s.set_nodelay(true).ok()?;
        // Identifiers unique across the connections of a test process (duplicate detection is
        // daemon-wide).
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let base = NEXT.fetch_add(1, Ordering::Relaxed) * 1_000_000;
        Some(Self {
            s,
            hbh: base,
            buf: Vec::new(),
        })
    }

    /// Connects and sends a CER as `origin_host` (Gx and S6b); the CEA, None if the daemon
    /// closed or did not answer.
    pub fn connect_cea(d: &Daemon, origin_host: &str, product: &str) -> (Self, Option<Message>) {
        let mut r = Self::open(d.ports.diameter);
        let a = r.try_call(cer(origin_host, product, &[APP_GX, APP_S6B]));
        (r, a)
    }

    /// Connects and completes the CER/CEA exchange as `origin_host`; asserts 2001.
    pub fn connect(d: &Daemon, origin_host: &str) -> Self {
        let (r, a) = Self::connect_cea(d, origin_host, "raw-it");
        let a = a.expect("CEA");
        assert_eq!(a.result_code(), Some(ResultCode::SUCCESS), "CEA");
        r
    }

    pub fn send_bytes(&mut self, b: &[u8]) {
        self.s.write_all(b).unwrap();
    }

    /// Stamps identifiers (End-to-End = Hop-by-Hop) and encodes.
    pub fn stamp(&mut self, mut m: Message) -> (u32, Vec<u8>) {
        self.hbh += 1;
        m.header.hop_by_hop = self.hbh;
        m.header.end_to_end = self.hbh;
        (self.hbh, m.encode().unwrap())
    }

    /// Sends `msgs` pipelined (written from another thread: the daemon stops reading while its
    /// answers are not read) and returns every answer in arrival order, each with the index in
    /// `msgs` of the request it answers; the daemon's own requests (DWR) are skipped.
    pub fn pipeline(&mut self, msgs: Vec<Message>) -> Vec<(usize, Message)> {
        let mut blob = Vec::new();
        let mut index = std::collections::HashMap::new();
        for (i, m) in msgs.into_iter().enumerate() {
            let (hbh, b) = self.stamp(m);
            index.insert(hbh, i);
            blob.extend_from_slice(&b);
        }
        let mut w = self.s.try_clone().unwrap();
        let writer = std::thread::spawn(move || w.write_all(&blob).unwrap());
        let mut answers = Vec::new();
        while !index.is_empty() {
            let a = self.read();
            if a.is_request() {
                continue;
            }
            let i = index
                .remove(&a.header.hop_by_hop)
                .expect("unexpected answer");
            answers.push((i, a));
        }
        writer.join().unwrap();
        answers
    }

    pub fn call(&mut self, m: Message) -> Message {
        let (hbh, b) = self.stamp(m);
        self.send_bytes(&b);
        self.answer_to(hbh)
    }

    /// As [`Self::call`], None when the daemon closes the connection (or the read times out).
    pub fn try_call(&mut self, m: Message) -> Option<Message> {
        let (hbh, b) = self.stamp(m);
        self.s.write_all(&b).ok()?;
        loop {
            let m = self.try_read()?;
            if !m.is_request() && m.header.hop_by_hop == hbh {
                return Some(m);
            }
        }
    }

    pub fn call_bytes(&mut self, b: &[u8]) -> Message {
        let hbh = u32::from_be_bytes(b[12..16].try_into().unwrap());
        self.send_bytes(b);
        self.answer_to(hbh)
    }

    /// The next message, or None at end of stream, on a read error or timeout.
    pub fn try_read(&mut self) -> Option<Message> {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes([0, self.buf[1], self.buf[2], self.buf[3]]) as usize;
                if self.buf.len() >= len {
                    let frame: Vec<u8> = self.buf.drain(..len).collect();
                    return Some(Decoder::default().decode(&frame).unwrap());
                }
            }
            let mut chunk = [0u8; 65536];
            let n = self.s.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next message (requests included).
    pub fn read(&mut self) -> Message {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes([0, self.buf[1], self.buf[2], self.buf[3]]) as usize;
                if self.buf.len() >= len {
                    let frame: Vec<u8> = self.buf.drain(..len).collect();
                    return Decoder::default().decode(&frame).unwrap();
                }
            }
            let mut chunk = [0u8; 65536];
            let n = self.s.read(&mut chunk).expect("read (timeout?)");
            assert!(n > 0, "the daemon closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The answer with Hop-by-Hop `hbh`, skipping the daemon's requests (DWR) on the way.
    pub fn answer_to(&mut self, hbh: u32) -> Message {
        loop {
            let m = self.read();
            if m.is_request() {
                continue;
            }
            if m.header.hop_by_hop == hbh {
                return m;
            }
        }
    }

    /// True when the daemon closes the connection within the socket's read timeout (any bytes
    /// it sends first are read and ignored).
    pub fn closed_by_peer(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            match self.s.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => {
                    return matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                    )
                }
            }
        }
    }
}
