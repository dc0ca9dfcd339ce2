//! `echo-radius`, `echo-diameter`: the benchmark ceilings.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};

use imei_lockd::diameter::codec::dict;
use imei_lockd::diameter::codec::{Avp, Decoder, Message};
use imei_lockd::radius::codec::Code;
use imei_lockd::radius::encode::encode_response;

use super::gx::{frame_len, raw_avps, APP_GX};
use super::pace::is_would_block;
use super::EchoArgs;

/// The ceiling of `bench-radius.sh`: answers every Access-Request (and Accounting-Request) with a
/// minimal valid answer — Message-Authenticator first, Response Authenticator — signed with the
/// project's encoder, from one thread doing blocking recv/send. No client table, no decoding of
/// attributes, no decision: what is left is the cost any RADIUS server pays per packet.
pub fn echo_radius(a: &EchoArgs) -> Result<(), String> {
    let sock = UdpSocket::bind(a.listen).map_err(|e| format!("bind {}: {e}", a.listen))?;
    // The same receive buffer the daemon asks for (radius.recv_buffer_bytes default).
    let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(8 << 20);
    eprintln!("echo-radius listening on {}", a.listen);
    let mut buf = [0u8; 4096];
    loop {
        let (n, src) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if is_would_block(&e) => continue,
            Err(e) => return Err(e.to_string()),
        };
        let Some(pkt) = buf.get(..n) else { continue };
        let (Some(&code), Some(&id), Some(auth)) = (pkt.first(), pkt.get(1), pkt.get(4..20)) else {
            continue;
        };
        let answer = match Code::from_u8(code) {
            Code::AccessRequest | Code::StatusServer => Code::AccessAccept,
            Code::AccountingRequest => Code::AccountingResponse,
            _ => continue,
        };
        let mut ra = [0u8; 16];
        ra.copy_from_slice(auth);
        if let Ok(resp) = encode_response(
            Code::from_u8(code),
            answer,
            id,
            &ra,
            &[],
            a.secret.as_bytes(),
        ) {
            let _ = sock.send_to(&resp, src);
        }
    }
}

/// The ceiling of `bench-diameter.sh`: CER → CEA 2001, DWR → DWA, CCR → CCA 2001 (Session-Id,
/// Result-Code, Origin-Host/Realm, Auth-Application-Id, CC-Request-Type/Number copied), one
/// thread per connection, every complete message of a read answered in one write. No peer
/// table, no validation, no decision.
pub fn echo_diameter(a: &EchoArgs) -> Result<(), String> {
    let l = std::net::TcpListener::bind(a.listen).map_err(|e| format!("bind {}: {e}", a.listen))?;
    eprintln!("echo-diameter listening on {}", a.listen);
    for s in l.incoming() {
        let Ok(s) = s else { continue };
        std::thread::spawn(move || {
            let _ = echo_diameter_conn(s);
        });
    }
    Ok(())
}

fn echo_diameter_conn(mut s: TcpStream) -> Result<(), String> {
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let local = s.local_addr().map_err(|e| e.to_string())?.ip();
    let decoder = Decoder::default();
    let mut rbuf: Vec<u8> = Vec::with_capacity(256 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(256 * 1024);
    let mut chunk = vec![0u8; 256 * 1024];
    let origin = |m: Message| {
        m.with(Avp::utf8(dict::ORIGIN_HOST, 0, "echo.localdomain"))
            .with(Avp::utf8(dict::ORIGIN_REALM, 0, "localdomain"))
    };
    loop {
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(());
        }
        rbuf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let mut at = 0;
        while let Some(len) = rbuf.get(at..).and_then(frame_len) {
            let frame = rbuf.get(at..at + len).unwrap_or_default();
            at += len;
            let Ok(hdr) = decoder.decode_header(frame) else {
                return Ok(());
            };
            if !hdr.flags.is_request() {
                continue;
            }
            let rc = Avp::u32(dict::RESULT_CODE, 0, 2001);
            let m = match hdr.code {
                257 => origin(Message::answer_to(&hdr).with(rc))
                    .with(Avp::address(dict::HOST_IP_ADDRESS, 0, local))
                    .with(Avp::u32(dict::VENDOR_ID, 0, 0))
                    .with(Avp::utf8(dict::PRODUCT_NAME, 0, "imei-lock-load echo"))
                    .with(Avp::u32(dict::AUTH_APPLICATION_ID, 0, APP_GX)),
                272 => {
                    let mut m = Message::answer_to(&hdr);
                    if let Some((_, sid)) = raw_avps(frame).find(|&(c, _)| c == dict::SESSION_ID) {
                        m.push(Avp::new(dict::SESSION_ID, 0, sid));
                    }
                    let mut m =
                        origin(m.with(rc)).with(Avp::u32(dict::AUTH_APPLICATION_ID, 0, APP_GX));
                    for (code, data) in raw_avps(frame) {
                        if code == dict::CC_REQUEST_TYPE || code == dict::CC_REQUEST_NUMBER {
                            m.push(Avp::new(code, 0, data));
                        }
                    }
                    m
                }
                _ => origin(Message::answer_to(&hdr).with(rc)),
            };
            out.extend_from_slice(&m.encode().map_err(|e| e.to_string())?);
        }
        rbuf.drain(..at);
        if !out.is_empty() {
            s.write_all(&out).map_err(|e| e.to_string())?;
            out.clear();
        }
    }
}
