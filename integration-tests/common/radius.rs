//! Raw RADIUS requests over UDP for the integration tests: Access-Request octets with
//! 3GPP-IMSI, User-Name and an optional 3GPP-IMEISV, sockets with a receive timeout, one
//! request/answer exchange.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

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

/// A UDP socket on `local` with a receive timeout and a receive buffer of `bytes`:
/// `SO_RCVBUFFORCE` where the process may (root, CAP_NET_ADMIN), else `SO_RCVBUF`, which
/// `net.core.rmem_max` caps. Returns the socket and the buffer size the kernel reports (on Linux
/// twice the value set: its bookkeeping overhead is charged to the buffer).
pub fn udp_with_recv_buffer(local: &str, timeout: Duration, bytes: usize) -> (UdpSocket, usize) {
    let addr: SocketAddr = local.parse().unwrap();
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).unwrap();
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let forced = imei_lockd::radius::mmsg::set_int_option(
        &sock,
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        libc::c_int::try_from(bytes).unwrap(),
    );
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let forced: std::io::Result<()> = Err(std::io::ErrorKind::Unsupported.into());
    if forced.is_err() {
        sock.set_recv_buffer_size(bytes).unwrap();
    }
    sock.bind(&addr.into()).unwrap();
    let granted = sock.recv_buffer_size().unwrap();
    let s = UdpSocket::from(sock);
    s.set_read_timeout(Some(timeout)).unwrap();
    (s, granted)
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

/// The kernel's drop count of the IPv4 UDP socket bound to `local` (the `drops` column of
/// /proc/net/udp, Linux): datagrams dropped because its receive buffer was full. None when there
/// is no such file or no such socket.
pub fn socket_drops(local: SocketAddr) -> Option<u64> {
    let SocketAddr::V4(v4) = local else {
        return None;
    };
    // The address as the kernel prints it: the in-memory (network order) octets as a native
    // u32 in hex, then the port in hex.
    let key = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(v4.ip().octets()),
        v4.port()
    );
    let text = std::fs::read_to_string("/proc/net/udp").ok()?;
    text.lines().skip(1).find_map(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        if *fields.get(1)? == key {
            fields.last()?.parse().ok()
        } else {
            None
        }
    })
}

/// The daemon's RADIUS socket on 127.0.0.1:`port`, for [`socket_drops`].
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
