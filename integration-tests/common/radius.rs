//! Raw RADIUS requests over UDP for the integration tests: Access-Request octets with
//! 3GPP-IMSI, User-Name and an optional 3GPP-IMEISV, sockets with a receive timeout, one
//! request/answer exchange.

use std::net::UdpSocket;
use std::time::Duration;

use imei_lockd::radius::attr;
use imei_lockd::radius::encode::encode_access_request;
use imei_lockd::radius::vsa::{encode_vsa, TGPP_IMEISV, TGPP_IMSI, VENDOR_3GPP};
use imei_lockd::radius::Code;

/// The secret of the test daemons' client `local` (127.0.0.1/32).
pub const SECRET: &str = "testing123";

/// Access-Request octets: User-Name and 3GPP-IMSI = `imsi`, 3GPP-IMEISV = `imei` when given,
/// signed with `secret`, with a Message-Authenticator when `with_ma`.
pub fn access_request(
    id: u8,
    auth: [u8; 16],
    imsi: &str,
    imei: Option<&str>,
    secret: &str,
    with_ma: bool,
) -> Vec<u8> {
    let imsi_vsa = encode_vsa(VENDOR_3GPP, &[(TGPP_IMSI, imsi.as_bytes())]).unwrap();
    let mut attrs: Vec<(u8, Vec<u8>)> = vec![
        (attr::USER_NAME, imsi.as_bytes().to_vec()),
        (attr::VENDOR_SPECIFIC, imsi_vsa),
    ];
    if let Some(i) = imei {
        attrs.push((
            attr::VENDOR_SPECIFIC,
            encode_vsa(VENDOR_3GPP, &[(TGPP_IMEISV, i.as_bytes())]).unwrap(),
        ));
    }
    let refs: Vec<(u8, &[u8])> = attrs.iter().map(|(t, v)| (*t, v.as_slice())).collect();
    encode_access_request(
        Code::AccessRequest,
        id,
        &auth,
        &refs,
        secret.as_bytes(),
        with_ma,
    )
    .unwrap()
}

/// A Request Authenticator derived from `seed`.
pub fn authenticator(seed: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    for (i, b) in a.iter_mut().enumerate() {
        *b = seed.wrapping_mul(31).wrapping_add(i as u8);
    }
    a
}

/// A UDP socket on `local` with a receive timeout.
pub fn udp(local: &str, timeout: Duration) -> UdpSocket {
    let s = UdpSocket::bind(local).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    s
}

/// Sends `pkt` to 127.0.0.1:`port` and returns the answer, or None after the socket's timeout.
pub fn exchange(s: &UdpSocket, port: u16, pkt: &[u8]) -> Option<Vec<u8>> {
    s.send_to(pkt, ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 4096];
    s.recv_from(&mut buf).ok().map(|(n, _)| buf[..n].to_vec())
}

/// `imei_lockd_radius_drops_total{reason}` summed over the ports, from a metrics text.
pub fn drops(metrics: &str, reason: &str) -> f64 {
    super::counter(
        metrics,
        "imei_lockd_radius_drops_total",
        &[&format!("reason=\"{reason}\"")],
    )
}

/// The kernel's drop count of the UDP socket bound to local `port` (the `drops` column of
/// /proc/net/udp, Linux; IPv4 sockets only).
pub fn socket_drops(port: u16) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/udp").ok()?;
    let port = format!(":{port:04X}");
    text.lines().skip(1).find_map(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        let local = fields.get(1)?;
        if local.ends_with(&port) {
            fields.last()?.parse().ok()
        } else {
            None
        }
    })
}

/// `RcvbufErrors` of the Udp line in /proc/net/snmp (Linux).
pub fn rcvbuf_errors() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = udp.next()?.split_whitespace().collect();
    let values: Vec<&str> = udp.next()?.split_whitespace().collect();
    let i = names.iter().position(|n| *n == "RcvbufErrors")?;
    values.get(i)?.parse().ok()
}
