//! Value syntaxes of configuration keys: socket addresses, CIDRs, decimal amounts and the
//! `[diameter] listen` entries (grouped into TCP listeners and multi-homed SCTP endpoints).
//!
//! Parsers that name the key on error; they read no files and know nothing of sections.

use std::net::SocketAddr;

use ipnet::IpNet;

use super::{invalid, Config, ConfigError};

/// A Diameter listener made of `[diameter] listen` entries.
///
/// Every `tcp://` entry is a listener of its own. `sctp://` entries of one port and one address
/// family are one multi-homed SCTP endpoint bound to all their addresses (`sctp_bindx`), in the
/// order listed (the first is the one `bind` takes); a wildcard address (`0.0.0.0`, `[::]`)
/// already covers every address and stands alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiameterListen {
    Tcp(SocketAddr),
    /// One SCTP endpoint: at least one address, all with the same port and family.
    Sctp(Vec<SocketAddr>),
}

/// Parses a socket address, naming the key on error.
pub fn parse_addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        invalid(
            key,
            format!("{value:?} is not an ADDRESS:PORT socket address"),
        )
    })
}

/// Parses a CIDR or a bare address.
pub fn parse_cidr(key: &str, value: &str) -> Result<IpNet, ConfigError> {
    if let Ok(net) = value.parse::<IpNet>() {
        return Ok(net);
    }
    value
        .parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|_| {
            invalid(
                key,
                format!("{value:?} is not an address or CIDR (e.g. 10.0.0.0/8)"),
            )
        })
}

/// Checks a decimal amount such as `1.00` (up to 4 decimals, not negative).
pub fn parse_amount(key: &str, value: &str) -> Result<(), ConfigError> {
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    let ok = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= 4
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(value.contains('.') && frac.is_empty());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            key,
            format!("{value:?} is not a decimal amount such as \"1.00\""),
        ))
    }
}

impl Config {
    /// The Diameter listeners.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `diameter.listen`.
    pub fn diameter_listeners(&self) -> Result<Vec<DiameterListen>, ConfigError> {
        const KEY: &str = "diameter.listen";
        let mut out: Vec<DiameterListen> = Vec::new();
        for l in &self.diameter.listen {
            if let Some(a) = l.strip_prefix("tcp://") {
                out.push(DiameterListen::Tcp(parse_addr(KEY, a)?));
                continue;
            }
            let Some(a) = l.strip_prefix("sctp://") else {
                return Err(invalid(
                    KEY,
                    format!("{l:?} must start with tcp:// or sctp://"),
                ));
            };
            let addr = parse_addr(KEY, a)?;
            // The endpoint of this port and family, if an earlier entry opened it.
            let endpoint = out.iter_mut().find_map(|e| match e {
                DiameterListen::Sctp(v)
                    if v.first().is_some_and(|f| {
                        f.port() == addr.port() && f.is_ipv4() == addr.is_ipv4()
                    }) =>
                {
                    Some(v)
                }
                _ => None,
            });
            let Some(addrs) = endpoint else {
                out.push(DiameterListen::Sctp(vec![addr]));
                continue;
            };
            if addrs.contains(&addr) {
                return Err(invalid(KEY, format!("{l:?} is listed twice")));
            }
            if let Some(w) = addrs
                .iter()
                .chain(std::iter::once(&addr))
                .find(|a| a.ip().is_unspecified())
            {
                return Err(invalid(
                    KEY,
                    format!(
                        "sctp://{w} already binds every address of port {}; list either it or \
                         the addresses of a multi-homed endpoint",
                        addr.port()
                    ),
                ));
            }
            addrs.push(addr);
        }
        Ok(out)
    }
}
