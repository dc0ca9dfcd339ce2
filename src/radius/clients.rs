//! RADIUS clients by source address (`[[radius.clients]]`): the longest matching prefix wins.
//!
//! RFC 2865 §3: "The RADIUS server MUST use the source IP address of the RADIUS UDP packet to
//! decide which shared secret to use, so that RADIUS requests can be proxied." A packet whose
//! source matches no client is silently discarded by the shell (label `unknown_client`).
//!
//! IPv4-mapped IPv6 sources (`::ffff:a.b.c.d`, seen on a dual-stack `[::]` socket) are looked up
//! as their IPv4 address, so a `10.0.0.0/8` client matches either way.
//!
//! This module does not bind sockets or reload configuration; it is a plain lookup table.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::config::{parse_cidr, ConfigError, RadiusClientConfig};
use crate::radius::request::ClientPolicy;

/// One configured client.
pub struct Client {
    /// `name` from the configuration; the `peer` of every context built from its requests.
    pub name: Arc<str>,
    pub net: IpNet,
    secret: Box<[u8]>,
    pub require_message_authenticator: bool,
}

impl Client {
    /// The shared secret.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// What [`crate::radius::Request::decode`] needs to know of this client.
    pub fn policy(&self) -> ClientPolicy<'_> {
        ClientPolicy {
            secret: &self.secret,
            require_message_authenticator: self.require_message_authenticator,
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.name)
            .field("net", &self.net)
            .field("secret", &"*redacted*")
            .field(
                "require_message_authenticator",
                &self.require_message_authenticator,
            )
            .finish()
    }
}

/// The client table, ordered for longest-prefix lookup.
#[derive(Debug, Default)]
pub struct Clients {
    /// Sorted by prefix length, longest first; equal prefixes keep configuration order, so of
    /// two clients with the same CIDR the first configured wins.
    by_prefix: Vec<Arc<Client>>,
}

impl Clients {
    /// Builds the table from `[[radius.clients]]`.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `radius.clients[i].address` when an address is not a CIDR, or
    /// `radius.clients[i].secret` when a client has no secret (neither `secret` nor the content
    /// of `secret_file`); the configuration loader already refuses both.
    pub fn from_config(clients: &[RadiusClientConfig]) -> Result<Self, ConfigError> {
        let mut by_prefix = Vec::with_capacity(clients.len());
        for (i, c) in clients.iter().enumerate() {
            let net = parse_cidr(&format!("radius.clients[{i}].address"), &c.address)?;
            let secret = c.shared_secret().filter(|s| !s.is_empty()).ok_or_else(|| {
                ConfigError::Invalid {
                    key: format!("radius.clients[{i}].secret"),
                    message: "no secret: set secret, or secret_file (read by Config::load)".into(),
                }
            })?;
            by_prefix.push(Arc::new(Client {
                name: Arc::from(c.name.as_str()),
                net: canonical_net(net),
                secret: secret.as_bytes().into(),
                require_message_authenticator: c.require_message_authenticator,
            }));
        }
        // Stable: ties keep configuration order.
        by_prefix.sort_by_key(|c| std::cmp::Reverse(c.net.prefix_len()));
        Ok(Self { by_prefix })
    }

    /// The client whose network contains `ip` with the longest prefix.
    pub fn by_source(&self, ip: IpAddr) -> Option<&Arc<Client>> {
        let ip = ip.to_canonical();
        self.by_prefix.iter().find(|c| c.net.contains(&ip))
    }

    pub fn len(&self) -> usize {
        self.by_prefix.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_prefix.is_empty()
    }
}

/// `::ffff:a.b.c.d/n` (n ≥ 96) as `a.b.c.d/(n − 96)`, so it matches canonicalized sources.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let (Some(v4), Some(len)) = (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96))
        {
            if let Ok(n) = ipnet::Ipv4Net::new(v4, len) {
                return IpNet::V4(n.trunc());
            }
        }
    }
    net
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, address: &str) -> RadiusClientConfig {
        RadiusClientConfig {
            name: name.into(),
            address: address.into(),
            secret: Some(format!("secret-{name}")),
            secret_file: None,
            require_message_authenticator: true,
            secret_from_file: None,
        }
    }

    fn name(t: &Clients, ip: &str) -> Option<String> {
        t.by_source(ip.parse().unwrap()).map(|c| c.name.to_string())
    }

    #[test]
    fn longest_prefix_wins_whatever_the_order() {
        let t = Clients::from_config(&[
            cfg("wide", "10.0.0.0/8"),
            cfg("host", "10.1.2.3"),
            cfg("mid", "10.1.0.0/16"),
            cfg("all", "0.0.0.0/0"),
        ])
        .unwrap();
        assert_eq!(name(&t, "10.1.2.3").as_deref(), Some("host"));
        assert_eq!(name(&t, "10.1.2.4").as_deref(), Some("mid"));
        assert_eq!(name(&t, "10.2.0.1").as_deref(), Some("wide"));
        assert_eq!(name(&t, "192.0.2.1").as_deref(), Some("all"));
        assert_eq!(name(&t, "2001:db8::1"), None);
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn unknown_source_is_none() {
        let t = Clients::from_config(&[cfg("local", "127.0.0.1/32")]).unwrap();
        assert_eq!(name(&t, "127.0.0.1").as_deref(), Some("local"));
        assert_eq!(name(&t, "127.0.0.3"), None);
        assert_eq!(name(&t, "::1"), None);
        assert!(Clients::from_config(&[])
            .unwrap()
            .by_source("127.0.0.1".parse().unwrap())
            .is_none());
    }

    #[test]
    fn first_configured_wins_on_equal_prefix() {
        let t = Clients::from_config(&[cfg("first", "10.0.0.0/8"), cfg("second", "10.0.0.0/8")])
            .unwrap();
        assert_eq!(name(&t, "10.9.9.9").as_deref(), Some("first"));
        assert_eq!(
            t.by_source("10.9.9.9".parse().unwrap()).unwrap().secret(),
            b"secret-first"
        );
    }

    #[test]
    fn ipv4_mapped_sources_and_networks() {
        let t = Clients::from_config(&[
            cfg("v4", "192.0.2.0/24"),
            cfg("mapped", "::ffff:198.51.100.0/120"),
            cfg("v6", "2001:db8::/32"),
        ])
        .unwrap();
        assert_eq!(name(&t, "::ffff:192.0.2.7").as_deref(), Some("v4"));
        assert_eq!(name(&t, "198.51.100.9").as_deref(), Some("mapped"));
        assert_eq!(name(&t, "::ffff:198.51.100.9").as_deref(), Some("mapped"));
        assert_eq!(name(&t, "2001:db8:1::1").as_deref(), Some("v6"));
        assert_eq!(name(&t, "2001:db9::1"), None);
    }

    #[test]
    fn bad_address_names_the_key() {
        let e =
            Clients::from_config(&[cfg("a", "127.0.0.1/32"), cfg("b", "10.0.0.0/33")]).unwrap_err();
        assert!(e.to_string().contains("radius.clients[1].address"), "{e}");
    }

    #[test]
    fn debug_redacts_the_secret() {
        let t = Clients::from_config(&[cfg("local", "127.0.0.1")]).unwrap();
        let s = format!("{t:?}");
        assert!(!s.contains("secret-local"), "{s}");
    }
}
