//! The protocol-neutral request every front-end builds ([`AuthContext`]) and the engine's answer
//! ([`Decision`]).
//!
//! Front-ends (RADIUS, Diameter Gx/S6b; the EIR's S13 and N5g-eir through [`crate::eir`]) decode their wire format into an [`AuthContext`]; the engine
//! never sees a packet, and the front-end never sees the store.

use std::fmt;

use crate::imei::{Imei, ImeiError, ParsedImei};

/// The interface a request came in on; each has its own `missing_imei` policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interface {
    Radius,
    Gx,
    S6b,
    /// Provisioning (events caused by the API, not by a session).
    Api,
    /// Diameter S13: an MME's ME-Identity-Check at attach (the EIR; [`crate::eir`]).
    S13,
    /// N5g-eir: an AMF's equipment-status check at registration (the EIR; [`crate::eir`]).
    #[serde(rename = "n5g_eir")]
    N5gEir,
}

impl Interface {
    /// The interfaces whose requests the engine decides (not [`Interface::Api`]): the
    /// `interface` label values of the decision metrics.
    pub const SESSIONS: [Self; 5] = [Self::Radius, Self::Gx, Self::S6b, Self::S13, Self::N5gEir];

    /// Label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Radius => "radius",
            Self::Gx => "gx",
            Self::S6b => "s6b",
            Self::Api => "api",
            Self::S13 => "s13",
            Self::N5gEir => "n5g_eir",
        }
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where in the data session's life a request sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Access-Request, CCR-I, AAR: judged.
    Start,
    /// Accounting Interim, CCR-U: answered with success unless it presents a different IMEI on a
    /// locked SIM, which is judged like a start.
    Update,
    /// Accounting Stop, CCR-T, STR: always success.
    End,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Update => "update",
            Self::End => "end",
        }
    }
}

/// An IMSI: 5 to 15 decimal digits, kept inline (leading zeros matter). Ordered like its text
/// (the store's key order).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Imsi {
    len: u8,
    digits: [u8; 15],
}

/// Why a value is not an IMSI.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("IMSI must be 5 to 15 decimal digits")]
pub struct ImsiError;

impl Imsi {
    /// Parses 5–15 ASCII digits.
    ///
    /// # Errors
    /// [`ImsiError`] for any other length or a non-digit.
    pub fn parse(raw: &[u8]) -> Result<Self, ImsiError> {
        if !(5..=15).contains(&raw.len()) || !raw.iter().all(u8::is_ascii_digit) {
            return Err(ImsiError);
        }
        let mut digits = [0u8; 15];
        digits
            .get_mut(..raw.len())
            .ok_or(ImsiError)?
            .copy_from_slice(raw);
        Ok(Self {
            len: raw.len() as u8,
            digits,
        })
    }

    /// The digits as text.
    pub fn as_str(&self) -> &str {
        let d = self.digits.get(..usize::from(self.len)).unwrap_or_default();
        // Only ASCII digits are ever stored.
        std::str::from_utf8(d).unwrap_or_default()
    }

    /// The digits as bytes (the store key).
    pub fn as_bytes(&self) -> &[u8] {
        self.as_str().as_bytes()
    }
}

impl Ord for Imsi {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl PartialOrd for Imsi {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::str::FromStr for Imsi {
    type Err = ImsiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s.as_bytes())
    }
}

impl fmt::Display for Imsi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Imsi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Imsi({})", self.as_str())
    }
}

impl serde::Serialize for Imsi {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Imsi {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The IMEI as the request presented it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PresentedImei {
    /// A well-formed IMEI in any wire form.
    Valid(ParsedImei),
    /// No IMEI in the request.
    None,
    /// Something was there but it is no IMEI: treated as none presented, logged and counted.
    Malformed(ImeiError),
}

impl PresentedImei {
    /// Parses a wire value.
    pub fn from_wire(raw: &[u8]) -> Self {
        match Imei::parse_wire(raw) {
            Ok(p) => Self::Valid(p),
            Err(e) => Self::Malformed(e),
        }
    }

    /// The lock key, when a valid IMEI was presented.
    pub fn imei(&self) -> Option<Imei> {
        match self {
            Self::Valid(p) => Some(p.imei),
            _ => None,
        }
    }
}

/// A protocol-neutral authorization request.
#[derive(Clone, Debug)]
pub struct AuthContext {
    pub interface: Interface,
    /// The client or peer (RADIUS client name or address, Diameter Origin-Host).
    pub peer: String,
    /// Session identifier (Diameter Session-Id, RADIUS Acct-Session-Id or a derived id).
    pub session_id: SessionId,
    pub phase: Phase,
    pub imsi: Imsi,
    pub msisdn: Option<String>,
    pub imei: PresentedImei,
    pub apn: Option<String>,
    pub rat_type: Option<u32>,
}

/// A session identifier: the peer's own (Diameter Session-Id, RADIUS Acct-Session-Id), or
/// for a RADIUS request without one, an id derived from the request, formatted only when shown
/// (a log line that is enabled, an event): most requests never show theirs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionId {
    Text(String),
    /// Shown as `radius:{src}:{identifier}:{the first 4 authenticator octets in hex}`.
    Radius {
        src: std::net::SocketAddr,
        identifier: u8,
        authenticator: [u8; 4],
    },
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(s) => f.write_str(s),
            Self::Radius {
                src,
                identifier,
                authenticator: [a, b, c, d],
            } => write!(f, "radius:{src}:{identifier}:{a:02x}{b:02x}{c:02x}{d:02x}"),
        }
    }
}

impl From<String> for SessionId {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}

impl From<&str> for SessionId {
    fn from(s: &str) -> Self {
        Self::Text(s.to_owned())
    }
}

impl PartialEq<&str> for SessionId {
    fn eq(&self, other: &&str) -> bool {
        match self {
            Self::Text(s) => s == other,
            Self::Radius { .. } => {
                // Compares as it formats, without building the string.
                struct Rest<'a>(&'a str);
                impl fmt::Write for Rest<'_> {
                    fn write_str(&mut self, s: &str) -> fmt::Result {
                        self.0 = self.0.strip_prefix(s).ok_or(fmt::Error)?;
                        Ok(())
                    }
                }
                let mut rest = Rest(other);
                fmt::write(&mut rest, format_args!("{self}")).is_ok() && rest.0.is_empty()
            }
        }
    }
}

/// Accept or reject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Reject,
}

/// Why the engine decided as it did: one label per row of the SPEC §1.2 table and per policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Effective value `disabled`.
    Disabled,
    /// `pairing` with an IMEI: bound := presented (changed or not).
    Paired,
    /// `pairing` without an IMEI.
    PairingNoImei,
    /// `lock`, none bound: this IMEI was bound now.
    Bound,
    /// `lock`, presented = bound.
    Match,
    /// `lock`, presented ≠ bound.
    Mismatch,
    /// `lock`, no (valid) IMEI, interface policy `accept`.
    MissingImeiAccepted,
    /// `lock`, no (valid) IMEI, interface policy `reject`.
    MissingImeiRejected,
    /// Unknown IMSI, policy `accept` (treated as disabled).
    UnknownSimAccepted,
    /// Unknown IMSI, policy `reject`.
    UnknownSimRejected,
    /// Session update or end that needed no judgement.
    SessionContinues,
}

impl Reason {
    /// Every reason, e.g. to register each decision series at 0.
    pub const ALL: [Self; 11] = [
        Self::Disabled,
        Self::Paired,
        Self::PairingNoImei,
        Self::Bound,
        Self::Match,
        Self::Mismatch,
        Self::MissingImeiAccepted,
        Self::MissingImeiRejected,
        Self::UnknownSimAccepted,
        Self::UnknownSimRejected,
        Self::SessionContinues,
    ];

    /// Stable label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Paired => "paired",
            Self::PairingNoImei => "pairing_no_imei",
            Self::Bound => "bound",
            Self::Match => "match",
            Self::Mismatch => "imei_mismatch",
            Self::MissingImeiAccepted => "missing_imei_accepted",
            Self::MissingImeiRejected => "missing_imei",
            Self::UnknownSimAccepted => "unknown_sim_accepted",
            Self::UnknownSimRejected => "unknown_sim",
            Self::SessionContinues => "session_continues",
        }
    }

    /// Human text for a reject (RADIUS Reply-Message, Diameter Error-Message).
    pub fn message(self) -> &'static str {
        match self {
            Self::Mismatch => "IMEI mismatch",
            Self::MissingImeiRejected => "IMEI missing",
            Self::UnknownSimRejected => "Unknown SIM",
            Self::Disabled => "IMEI lock disabled",
            Self::Paired => "IMEI paired",
            Self::PairingNoImei => "IMEI pairing, no IMEI presented",
            Self::Bound => "IMEI bound",
            Self::Match => "IMEI matches",
            Self::MissingImeiAccepted => "IMEI missing, accepted by policy",
            Self::UnknownSimAccepted => "Unknown SIM, accepted by policy",
            Self::SessionContinues => "Session continues",
        }
    }

    /// The verdict this reason implies.
    pub fn verdict(self) -> Verdict {
        match self {
            Self::Mismatch | Self::MissingImeiRejected | Self::UnknownSimRejected => {
                Verdict::Reject
            }
            _ => Verdict::Accept,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The engine's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub reason: Reason,
    /// The IMEI bound after this decision (for logs), if any.
    pub bound: Option<Imei>,
}

impl Decision {
    pub fn verdict(&self) -> Verdict {
        self.reason.verdict()
    }

    pub fn is_accept(&self) -> bool {
        self.verdict() == Verdict::Accept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`Reason::ALL`] lists every variant once: the match below stops compiling when a variant
    /// is added, and the length check then asks for it in `ALL`.
    #[test]
    fn reason_all_is_complete() {
        fn index(r: Reason) -> usize {
            match r {
                Reason::Disabled => 0,
                Reason::Paired => 1,
                Reason::PairingNoImei => 2,
                Reason::Bound => 3,
                Reason::Match => 4,
                Reason::Mismatch => 5,
                Reason::MissingImeiAccepted => 6,
                Reason::MissingImeiRejected => 7,
                Reason::UnknownSimAccepted => 8,
                Reason::UnknownSimRejected => 9,
                Reason::SessionContinues => 10,
            }
        }
        let mut seen = [false; Reason::ALL.len()];
        for r in Reason::ALL {
            assert!(!std::mem::replace(&mut seen[index(r)], true), "{r:?} twice");
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn imsi_bounds() {
        assert!(Imsi::parse(b"1234").is_err());
        assert!(Imsi::parse(b"1234567890123456").is_err());
        assert!(Imsi::parse(b"00101000000001x").is_err());
        let i = Imsi::parse(b"001010000000001").unwrap();
        assert_eq!(i.as_str(), "001010000000001");
        assert_eq!(Imsi::parse(b"12345").unwrap().as_str(), "12345");
    }

    #[test]
    fn only_three_reasons_reject() {
        let rejects = [
            Reason::Mismatch,
            Reason::MissingImeiRejected,
            Reason::UnknownSimRejected,
        ];
        for r in rejects {
            assert_eq!(r.verdict(), Verdict::Reject);
        }
        assert_eq!(Reason::Bound.verdict(), Verdict::Accept);
    }
}
