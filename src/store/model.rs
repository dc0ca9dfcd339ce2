//! The records the store keeps. Protocol-free; each is written with the versioned encoding of
//! [`super::encoding`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::context::{Imsi, Interface};
use crate::imei::Imei;

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// The customer-facing "IMEI Management" value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImeiManagement {
    Disabled,
    Lock,
    Pairing,
}

impl ImeiManagement {
    pub const ALL: [Self; 3] = [Self::Disabled, Self::Lock, Self::Pairing];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Lock => "lock",
            Self::Pairing => "pairing",
        }
    }

    /// The label the customer sees in the drop-down.
    pub fn label(self) -> &'static str {
        match self {
            Self::Disabled => "IMEI Lock is disabled",
            Self::Lock => "IMEI Lock is enabled (extra fees apply)",
            Self::Pairing => "IMEI Pairing",
        }
    }
}

impl fmt::Display for ImeiManagement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a text is not an IMEI-management value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown IMEI management value {0:?} (expected disabled, lock or pairing)")]
pub struct UnknownValue(pub String);

impl FromStr for ImeiManagement {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "disabled" => Ok(Self::Disabled),
            "lock" => Ok(Self::Lock),
            "pairing" => Ok(Self::Pairing),
            other => Err(UnknownValue(other.to_owned())),
        }
    }
}

/// A SIM (SPEC §1.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimRecord {
    pub imsi: Imsi,
    pub msisdn: Option<String>,
    pub profile: Option<String>,
    /// SIM-level value; overrides the profile's.
    pub value: Option<ImeiManagement>,
    pub bound: Option<Imei>,
    pub bound_at: Option<Millis>,
    pub last_seen: Option<Imei>,
    pub last_seen_at: Option<Millis>,
    /// Bumped on every write; the compare-and-swap token.
    pub rev: u64,
}

impl SimRecord {
    /// A new SIM with nothing bound.
    pub fn new(imsi: Imsi) -> Self {
        Self {
            imsi,
            msisdn: None,
            profile: None,
            value: None,
            bound: None,
            bound_at: None,
            last_seen: None,
            last_seen_at: None,
            rev: 0,
        }
    }
}

/// A service profile (SPEC §1.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileRecord {
    pub name: String,
    pub value: ImeiManagement,
    /// Overrides `[billing] lock_fee` for SIMs of this profile.
    pub lock_fee: Option<String>,
    pub rev: u64,
}

/// Event kinds (SPEC §1.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    ImeiBound,
    ImeiPaired,
    ImeiMismatch,
    ImeiMissing,
    ImeiReset,
    ValueChanged,
}

impl EventKind {
    pub const ALL: [Self; 6] = [
        Self::ImeiBound,
        Self::ImeiPaired,
        Self::ImeiMismatch,
        Self::ImeiMissing,
        Self::ImeiReset,
        Self::ValueChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ImeiBound => "imei_bound",
            Self::ImeiPaired => "imei_paired",
            Self::ImeiMismatch => "imei_mismatch",
            Self::ImeiMissing => "imei_missing",
            Self::ImeiReset => "imei_reset",
            Self::ValueChanged => "value_changed",
        }
    }
}

impl FromStr for EventKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown event {s:?}"))
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happened to a SIM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub imsi: Imsi,
    pub at: Millis,
    pub interface: Interface,
    pub peer: String,
    /// The IMEI presented by the session (or the new value for API events).
    pub imei: Option<Imei>,
    /// The IMEI bound before the event.
    pub bound: Option<Imei>,
    /// Free text: the value change, the session id, the request id.
    pub detail: Option<String>,
}

/// Status of a provisioning request (SPEC §1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    Pending,
    Processed,
    Failed,
}

/// What a provisioning request asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    /// Create or update a SIM; absent fields are left as they are (`Some(None)` clears).
    UpsertSim {
        imsi: Imsi,
        msisdn: Option<Option<String>>,
        profile: Option<Option<String>>,
        value: Option<Option<ImeiManagement>>,
    },
    /// Set or clear the SIM-level value.
    SetSimValue {
        imsi: Imsi,
        value: Option<ImeiManagement>,
    },
    /// Clear the bound IMEI.
    Reset { imsi: Imsi },
    /// Delete the SIM.
    DeleteSim { imsi: Imsi },
    /// Create or change a profile.
    UpsertProfile {
        name: String,
        value: ImeiManagement,
        lock_fee: Option<String>,
    },
    /// Many SIMs at once (CSV import), applied as one request.
    Import { rows: Vec<ImportRow> },
}

/// One row of a SIM import.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRow {
    pub imsi: Imsi,
    pub msisdn: Option<String>,
    pub profile: Option<String>,
    pub value: Option<ImeiManagement>,
}

impl Operation {
    /// The SIM this request is about, if it is about one.
    pub fn imsi(&self) -> Option<&Imsi> {
        match self {
            Self::UpsertSim { imsi, .. }
            | Self::SetSimValue { imsi, .. }
            | Self::Reset { imsi }
            | Self::DeleteSim { imsi } => Some(imsi),
            Self::UpsertProfile { .. } | Self::Import { .. } => None,
        }
    }
}

/// A provisioning request as stored: durable from the moment it is accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Position in the provisioning log; requests are applied in this order.
    pub seq: u64,
    pub op: Operation,
    pub status: RequestStatus,
    pub error: Option<String>,
    pub submitted_at: Millis,
    pub processed_at: Option<Millis>,
}

/// One billing row: a SIM owes the Lock fee for a month (SPEC §1.5).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub imsi: Imsi,
    /// `YYYY-MM`.
    pub month: String,
    pub amount: String,
    pub currency: String,
    /// First moment of `lock` in that month.
    pub first_lock_at: Millis,
}

/// An alert waiting for delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub event: Event,
    pub attempts: u32,
    pub next_attempt_at: Millis,
    /// Webhook URLs that already have it (or skipped it inside their window).
    pub done: Vec<String>,
}
