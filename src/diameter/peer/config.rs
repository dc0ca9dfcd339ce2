//! Peer configuration and what we learn of a peer from its CER.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::diameter::app::Catalog;
use crate::diameter::codec::{Origin, APP_RELAY};

/// Product-Name we advertise.
pub const PRODUCT_NAME: &str = "imei-lockd";

/// Our side of every connection.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// Origin-Host, Origin-Realm and Origin-State-Id.
    pub origin: Origin,
    /// Host-IP-Address values for CEA (RFC 6733 §5.3.5); at least one is required by the CEA
    /// grammar.
    pub host_ip_addresses: Vec<IpAddr>,
    /// Vendor-Id (0: none / IETF).
    pub vendor_id: u32,
    pub product_name: String,
    pub firmware_revision: u32,
    /// Origin-Hosts allowed to connect (compared ASCII case-insensitively).
    pub known_peers: Vec<String>,
    /// The applications we serve: advertised in the CEA, routed to and validated against.
    pub catalog: Arc<Catalog>,
    /// Tw (RFC 3539 §3.4.1; default 30 s, not below 6 s).
    pub watchdog: Duration,
    /// Largest |jitter| added to each Tw (RFC 3539: ±2 s). Zero makes timers exact.
    pub watchdog_jitter: Duration,
    /// How long a new connection may stay silent before its CER.
    pub cer_timeout: Duration,
    /// How long we wait for DPA after our DPR.
    pub dpa_timeout: Duration,
    /// Cap on a message's length.
    pub max_message_len: u32,
}

impl PeerConfig {
    /// Defaults: no application (set [`catalog`](Self::catalog)), Tw 30 s ± 2 s, CER timeout 10 s, DPA timeout 5 s, 64 KiB cap.
    pub fn new(origin_host: &str, origin_realm: &str) -> Self {
        Self {
            origin: Origin {
                host: origin_host.to_owned(),
                realm: origin_realm.to_owned(),
                state_id: None,
            },
            host_ip_addresses: Vec::new(),
            vendor_id: 0,
            product_name: PRODUCT_NAME.to_owned(),
            firmware_revision: 1,
            known_peers: Vec::new(),
            catalog: Arc::new(Catalog::default()),
            watchdog: Duration::from_secs(30),
            watchdog_jitter: Duration::from_secs(2),
            cer_timeout: Duration::from_secs(10),
            dpa_timeout: Duration::from_secs(5),
            max_message_len: crate::diameter::codec::header::DEFAULT_MAX_MESSAGE_LEN,
        }
    }

    /// Is `origin_host` a configured peer?
    pub fn is_known(&self, origin_host: &str) -> bool {
        self.known_peers
            .iter()
            .any(|p| p.eq_ignore_ascii_case(origin_host))
    }
}

/// What a peer told us in its CER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub origin_host: String,
    pub origin_realm: String,
    pub host_ip_addresses: Vec<IpAddr>,
    pub product_name: Option<String>,
    pub origin_state_id: Option<u32>,
    /// Auth-Application-Ids, top-level and inside Vendor-Specific-Application-Id.
    pub auth_applications: Vec<u32>,
    /// Acct-Application-Ids, likewise.
    pub acct_applications: Vec<u32>,
}

impl PeerInfo {
    /// Did the peer advertise `app` (or the relay application)?
    pub fn supports(&self, app: u32) -> bool {
        self.auth_applications
            .iter()
            .chain(&self.acct_applications)
            .any(|&a| a == app || a == APP_RELAY)
    }
}
