//! The Equipment Identity Register: the lock as an MME (S13) or an AMF (N5g-eir) asks for it.
//!
//! An EIR check carries a device (its IMEI) and, from a well-configured MME or AMF, the SIM (its
//! IMSI). [`Eir::check`] turns a check the lock can judge into an [`AuthContext`] of interface
//! S13 or N5g-eir and asks the same [`Engine`] the session front-ends ask, so one lock binds,
//! matches and rejects on every interface:
//!
//! | the lock says | the EIR answers |
//! |---|---|
//! | disabled; lock and bound now (first wins); lock and the bound device (any SVN); pairing (rebinds) | WHITELISTED |
//! | lock and another device (an `imei_mismatch` event and alert) | BLACKLISTED |
//! | unknown SIM | `[eir] unknown_sim` (default WHITELISTED: roamers, SIMs of other offers) |
//!
//! and where the lock cannot judge: no IMSI → `[eir] missing_imsi` (default WHITELISTED), an
//! IMEI that is not one → `[eir] malformed_imei` (default GREYLISTED). Each policy may also say
//! `unknown`: the front-end then answers "equipment unknown" (S13 5422, N5g-eir 404).
//!
//! Every answer is counted (`imei_lockd_eir_answers_total{interface,status,cause}`) and logged;
//! the engine counts and logs its own decision as for any session.
//!
//! This module knows no protocol: it neither decodes an ECR or a query nor encodes an answer,
//! and it reads no store but through the engine.

use std::sync::Arc;

use metrics::Counter;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::context::{AuthContext, Imsi, Interface, Phase, PresentedImei, Reason, SessionId};
use crate::engine::{Engine, EngineError, UnknownSimPolicy};
use crate::telemetry::Handles;

/// Equipment-Status (TS 29.272 §7.3.51; TS 29.511 `EquipmentStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EquipmentStatus {
    Whitelisted,
    Blacklisted,
    Greylisted,
}

impl EquipmentStatus {
    /// The Equipment-Status AVP's value.
    pub fn code(self) -> u32 {
        match self {
            Self::Whitelisted => 0,
            Self::Blacklisted => 1,
            Self::Greylisted => 2,
        }
    }

    /// The N5g-eir JSON value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Whitelisted => "WHITELISTED",
            Self::Blacklisted => "BLACKLISTED",
            Self::Greylisted => "GREYLISTED",
        }
    }
}

/// What the EIR answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EirAnswer {
    Status(EquipmentStatus),
    /// "Equipment unknown": S13 DIAMETER_ERROR_EQUIPMENT_UNKNOWN (5422), N5g-eir 404
    /// `ERROR_EQUIPMENT_UNKNOWN`.
    Unknown,
}

impl EirAnswer {
    /// Label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Status(EquipmentStatus::Whitelisted) => "whitelisted",
            Self::Status(EquipmentStatus::Blacklisted) => "blacklisted",
            Self::Status(EquipmentStatus::Greylisted) => "greylisted",
            Self::Unknown => "unknown",
        }
    }

    const ALL: [Self; 4] = [
        Self::Status(EquipmentStatus::Whitelisted),
        Self::Status(EquipmentStatus::Blacklisted),
        Self::Status(EquipmentStatus::Greylisted),
        Self::Unknown,
    ];
}

/// A configured answer (`[eir] unknown_sim`, `missing_imsi`, `malformed_imei`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyAnswer {
    Whitelisted,
    Greylisted,
    Blacklisted,
    Unknown,
}

impl PolicyAnswer {
    pub fn answer(self) -> EirAnswer {
        match self {
            Self::Whitelisted => EirAnswer::Status(EquipmentStatus::Whitelisted),
            Self::Greylisted => EirAnswer::Status(EquipmentStatus::Greylisted),
            Self::Blacklisted => EirAnswer::Status(EquipmentStatus::Blacklisted),
            Self::Unknown => EirAnswer::Unknown,
        }
    }

    /// How the engine labels an unknown SIM under this answer: accepted when the equipment
    /// may attach (whitelisted, greylisted), rejected otherwise.
    pub fn as_unknown_sim_policy(self) -> UnknownSimPolicy {
        match self {
            Self::Whitelisted | Self::Greylisted => UnknownSimPolicy::Accept,
            Self::Blacklisted | Self::Unknown => UnknownSimPolicy::Reject,
        }
    }
}

/// The EIR's answers where the lock cannot judge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EirPolicy {
    pub unknown_sim: PolicyAnswer,
    pub missing_imsi: PolicyAnswer,
    pub malformed_imei: PolicyAnswer,
}

impl Default for EirPolicy {
    fn default() -> Self {
        Self {
            unknown_sim: PolicyAnswer::Whitelisted,
            missing_imsi: PolicyAnswer::Whitelisted,
            malformed_imei: PolicyAnswer::Greylisted,
        }
    }
}

/// Why the EIR answered as it did (the `cause` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cause {
    /// The lock judged the device.
    Lock,
    UnknownSim,
    MissingImsi,
    MalformedImei,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lock => "lock",
            Self::UnknownSim => "unknown_sim",
            Self::MissingImsi => "missing_imsi",
            Self::MalformedImei => "malformed_imei",
        }
    }

    const ALL: [Self; 4] = [
        Self::Lock,
        Self::UnknownSim,
        Self::MissingImsi,
        Self::MalformedImei,
    ];
}

/// One equipment check as a front-end decoded it.
#[derive(Clone, Debug)]
pub struct EirRequest {
    /// [`Interface::S13`] or [`Interface::N5gEir`].
    pub interface: Interface,
    /// The MME's Origin-Host, the AMF's address.
    pub peer: String,
    pub session_id: SessionId,
    /// `None`: the MME or AMF did not say which SIM.
    pub imsi: Option<Imsi>,
    /// A front-end answers a check without any IMEI with its protocol's error itself;
    /// [`PresentedImei::None`] is taken as malformed here.
    pub imei: PresentedImei,
    pub msisdn: Option<String>,
}

/// The EIR: policies around the engine.
pub struct Eir {
    engine: Arc<Engine>,
    policy: RwLock<EirPolicy>,
}

impl Eir {
    /// Registers `imei_lockd_eir_answers_total` for both interfaces at 0.
    pub fn new(engine: Arc<Engine>, policy: EirPolicy) -> Self {
        register_metrics();
        Self {
            engine,
            policy: RwLock::new(policy),
        }
    }

    /// Applies a reloaded `[eir]` (SIGHUP). The engine's `unknown_sim_eir` comes with the
    /// engine's own policy.
    pub fn set_policy(&self, policy: EirPolicy) {
        *self.policy.write() = policy;
    }

    /// Answers `req`; may block on the store (a bind is synced): run it on a bounded blocking
    /// path.
    ///
    /// # Errors
    /// [`EngineError`] as [`Engine::decide`]: the front-end answers a temporary failure
    /// ([`EngineError::NotServing`]: "too busy", so the MME or AMF asks another EIR).
    pub fn check(&self, req: &EirRequest) -> Result<EirAnswer, EngineError> {
        self.check_with(req, false)
            .unwrap_or(Err(EngineError::NotServing))
    }

    /// [`Eir::check`], when it needs no I/O (see [`Engine::decide_in_memory`]); `None` when
    /// it does: the caller then runs [`Eir::check`] on its bounded blocking path.
    pub fn check_in_memory(&self, req: &EirRequest) -> Option<Result<EirAnswer, EngineError>> {
        self.check_with(req, true)
    }

    fn check_with(
        &self,
        req: &EirRequest,
        in_memory: bool,
    ) -> Option<Result<EirAnswer, EngineError>> {
        let policy = *self.policy.read();
        let (answer, cause) = match (req.imsi, &req.imei) {
            (None, _) => (policy.missing_imsi.answer(), Cause::MissingImsi),
            (Some(_), PresentedImei::Malformed(_) | PresentedImei::None) => {
                (policy.malformed_imei.answer(), Cause::MalformedImei)
            }
            (Some(imsi), PresentedImei::Valid(_)) => {
                let ctx = AuthContext {
                    interface: req.interface,
                    peer: req.peer.clone(),
                    session_id: req.session_id.clone(),
                    phase: Phase::Start,
                    imsi,
                    msisdn: req.msisdn.clone(),
                    imei: req.imei.clone(),
                    apn: None,
                    rat_type: None,
                };
                let decided = if in_memory {
                    self.engine.decide_in_memory(&ctx)?
                } else {
                    self.engine.decide(&ctx)
                };
                match decided {
                    Ok(d) => from_reason(d.reason, &policy),
                    Err(e) => return Some(Err(e)),
                }
            }
        };
        record(req, answer, cause);
        Some(Ok(answer))
    }
}

/// The EIR's answer for the engine's decision on a check with a valid IMEI.
fn from_reason(reason: Reason, policy: &EirPolicy) -> (EirAnswer, Cause) {
    let status = |s| (EirAnswer::Status(s), Cause::Lock);
    match reason {
        Reason::Disabled
        | Reason::Paired
        | Reason::Bound
        | Reason::Match
        | Reason::SessionContinues => status(EquipmentStatus::Whitelisted),
        Reason::Mismatch => status(EquipmentStatus::Blacklisted),
        Reason::UnknownSimAccepted | Reason::UnknownSimRejected => {
            (policy.unknown_sim.answer(), Cause::UnknownSim)
        }
        // A valid IMEI was presented: the engine cannot say it is missing. Judged as a
        // malformed one should the engine ever do.
        Reason::PairingNoImei | Reason::MissingImeiAccepted | Reason::MissingImeiRejected => {
            (policy.malformed_imei.answer(), Cause::MalformedImei)
        }
    }
}

fn register_metrics() {
    for interface in [Interface::S13, Interface::N5gEir] {
        for answer in EirAnswer::ALL {
            for cause in Cause::ALL {
                metrics::counter!("imei_lockd_eir_answers_total",
                    "interface" => interface.as_str(), "status" => answer.label(),
                    "cause" => cause.as_str())
                .increment(0);
            }
        }
    }
}

/// Counts and logs one answer: anything but a whitelisting by the lock at info (the
/// engine's own line carries binds and mismatches), the rest at debug.
fn record(req: &EirRequest, answer: EirAnswer, cause: Cause) {
    static ANSWERS: Handles<(Interface, EirAnswer, Cause), Counter> = Handles::new();
    ANSWERS.with(
        (req.interface, answer, cause),
        |(interface, answer, cause)| {
            metrics::counter!("imei_lockd_eir_answers_total",
                "interface" => interface.as_str(), "status" => answer.label(),
                "cause" => cause.as_str())
        },
        |c| c.increment(1),
    );
    let imsi = req.imsi.as_ref().map(Imsi::as_str).unwrap_or_default();
    let imei = ShowImei(&req.imei);
    if answer == EirAnswer::Status(EquipmentStatus::Whitelisted) && cause == Cause::Lock {
        tracing::debug!(imsi, interface = %req.interface, peer = %req.peer,
            session = %req.session_id, imei = %imei, status = answer.label(),
            cause = cause.as_str(), "equipment check");
    } else {
        tracing::info!(imsi, interface = %req.interface, peer = %req.peer,
            session = %req.session_id, imei = %imei, status = answer.label(),
            cause = cause.as_str(), "equipment check");
    }
}

/// A presented IMEI for log fields, formatted only if the line is written.
struct ShowImei<'a>(&'a PresentedImei);

impl std::fmt::Display for ShowImei<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            PresentedImei::Valid(p) => write!(f, "{}", p.imei),
            PresentedImei::Malformed(e) => write!(f, "malformed ({e})"),
            PresentedImei::None => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
