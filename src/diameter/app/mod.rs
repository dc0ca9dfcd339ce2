//! Diameter applications behind one trait, and the [`Catalog`] that routes requests to them by
//! Application-Id (after hickory-dns's `Catalog`, which routes queries to zone handlers).
//!
//! An [`Application`] says who it is (Application-Id, metric label, how it is advertised in
//! the CEA), which commands it serves ([`CommandSpec`]s: what each request must and may carry),
//! how it answers a valid request, and how it shapes an error answer in its own format (a Gx
//! CCA, an S6b AAA). It owns its dependencies (the engine, ...). Adding an application is one
//! file implementing the trait plus its dictionary entries (S13: [`crate::diameter::s13`]), and
//! one line in [`Catalog::from_config`] and [`KNOWN_COMMANDS`].
//!
//! The [`Catalog`] is built once at start from the configuration (which applications are
//! enabled). The peer machine asks it which applications to advertise and which are common
//! with a peer (CER/CEA), which spec a request is validated against (unknown application →
//! 3007, unknown command → 3001) and how to shape a validation error; the I/O shell asks it for
//! answers and for the `app` label of its metrics.
//!
//! # What this module does not do
//! No base protocol (CER, DWR, DPR: [`crate::diameter::peer`]), no sockets or tasks (the shell
//! runs [`Catalog::answer`] on its bounded blocking path and [`Catalog::answer_inline`] on the
//! connection task), and no mapping of AVPs to contexts ([`crate::diameter::gx`],
//! [`crate::diameter::s6b`] do that; the applications here glue the mapping to the engine).

pub mod gx;
pub mod s6b;

use std::fmt;
use std::sync::Arc;

pub use gx::Gx;
pub use s6b::S6b;

use crate::config::Config;
use crate::context::{AuthContext, Decision};
use crate::diameter::codec::{
    error_answer, CommandSpec, Message, MessageError, Origin, ResultCode,
};
use crate::diameter::s13::{self, S13};
use crate::eir::Eir;
use crate::engine::{Engine, EngineError};

/// One Diameter application this daemon serves.
///
/// `answer` is synchronous and may block (the engine's fsync, a disk read) unless `inline`:
/// then it must not block, and returns `None` when it cannot answer from memory (nothing
/// decided, nothing logged), leaving the request to the caller's bounded blocking path, where it
/// is called again with `inline` false and must return `Some`.
pub trait Application: Send + Sync {
    /// The Application-Id (RFC 6733 §2.4) in the header of its messages.
    fn id(&self) -> u32;

    /// The `app` label of the shell's metrics (`"gx"`, `"s6b"`, ...).
    fn name(&self) -> &'static str;

    /// The name in texts for operators (`"Gx"`, `"S6b"`, ...).
    fn title(&self) -> &'static str;

    /// True: advertised in the CEA as Vendor-Specific-Application-Id with Vendor-Id 10415
    /// (3GPP applications); false: as a bare Auth-Application-Id.
    fn vendor_specific(&self) -> bool {
        true
    }

    /// The request commands it serves, each with what it must and may carry.
    fn commands(&self) -> &'static [CommandSpec];

    /// The answer to a request that passed its [`CommandSpec`] validation; see the trait docs
    /// for `inline`.
    fn answer(&self, req: &Message, origin: &Origin, inline: bool) -> Option<Message>;

    /// The answer to a request that failed validation with a non-protocol error (5xxx), in the
    /// application's answer format (RFC 6733 §7.2 leaves 3xxx to the generic format).
    fn error_answer(&self, req: &Message, origin: &Origin, err: &MessageError) -> Message;
}

/// The applications served, keyed by Application-Id.
#[derive(Clone, Default)]
pub struct Catalog {
    /// A handful of entries: a linear scan beats a map.
    apps: Vec<Arc<dyn Application>>,
}

impl fmt::Debug for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.apps.iter().map(|a| (a.name(), a.id())))
            .finish()
    }
}

impl Catalog {
    /// A catalog of `apps`; a later entry with an Application-Id already listed is ignored.
    pub fn new(apps: Vec<Arc<dyn Application>>) -> Self {
        let mut c = Self::default();
        for a in apps {
            c.add(a);
        }
        c
    }

    /// Adds `app` unless its Application-Id is already served.
    pub fn add(&mut self, app: Arc<dyn Application>) {
        if self.get(app.id()).is_none() {
            self.apps.push(app);
        }
    }

    /// The applications every configuration serves: Gx and S6b, over `engine`.
    pub fn standard(engine: Arc<Engine>) -> Self {
        Self::new(vec![
            Arc::new(Gx::new(engine.clone())),
            Arc::new(S6b::new(engine)),
        ])
    }

    /// The applications `cfg` enables: Gx and S6b always, S13 (over `eir`) when
    /// `[eir.s13] enabled`. Read once at start (a changed `enabled` needs a restart).
    pub fn from_config(cfg: &Config, engine: Arc<Engine>, eir: Arc<Eir>) -> Self {
        let mut c = Self::standard(engine);
        if cfg.eir.s13.enabled {
            c.add(Arc::new(S13::new(eir)));
        }
        c
    }

    /// The application with this Application-Id.
    pub fn get(&self, id: u32) -> Option<&dyn Application> {
        self.apps.iter().find(|a| a.id() == id).map(|a| &**a)
    }

    /// The applications, in advertising order.
    pub fn iter(&self) -> impl Iterator<Item = &dyn Application> {
        self.apps.iter().map(|a| &**a)
    }

    /// True when no application is served.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// The `app` metric label for an Application-Id: the application's name, `"base"` for 0,
    /// `"other"` for an application not served.
    pub fn label(&self, id: u32) -> &'static str {
        match self.get(id) {
            Some(a) => a.name(),
            None if id == 0 => "base",
            None => "other",
        }
    }

    /// The spec of a request's (application, command), when served.
    pub fn spec(&self, id: u32, code: u32) -> Option<&'static CommandSpec> {
        self.get(id)?.commands().iter().find(|s| s.code == code)
    }

    /// "Gx 16777238 or S6b 16777272", for texts naming what we serve.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self
            .iter()
            .map(|a| format!("{} {}", a.title(), a.id()))
            .collect();
        names.join(" or ")
    }

    /// The answer to a validated request, possibly blocking (run on the bounded blocking path).
    pub fn answer(&self, req: &Message, origin: &Origin) -> Message {
        self.respond(req, origin, false).unwrap_or_else(|| {
            // Not reached: only the inline mode leaves a request unanswered.
            error_answer(
                &req.header,
                req.session_id(),
                origin,
                ResultCode::UNABLE_TO_COMPLY,
                Some(ENGINE_FAILED),
                None,
            )
        })
    }

    /// [`answer`](Self::answer) when it can be given from memory; `None` (nothing decided,
    /// nothing logged) when it needs the store.
    pub fn answer_inline(&self, req: &Message, origin: &Origin) -> Option<Message> {
        self.respond(req, origin, true)
    }

    fn respond(&self, req: &Message, origin: &Origin, inline: bool) -> Option<Message> {
        match self.get(req.header.application_id) {
            Some(app) => app.answer(req, origin, inline),
            // The peer machine only passes requests of applications served.
            None => Some(error_answer(
                &req.header,
                req.session_id(),
                origin,
                ResultCode::APPLICATION_UNSUPPORTED,
                None,
                None,
            )),
        }
    }
}

/// The command specs of every application this daemon knows, enabled or not (fuzzing and
/// tests that have no catalog).
pub static KNOWN_COMMANDS: &[&[CommandSpec]] = &[gx::COMMANDS, s6b::COMMANDS, s13::COMMANDS];

/// The spec of (application, command) among [`KNOWN_COMMANDS`].
pub fn known_spec(id: u32, code: u32) -> Option<&'static CommandSpec> {
    KNOWN_COMMANDS
        .iter()
        .flat_map(|c| c.iter())
        .find(|s| s.application_id == id && s.code == code)
}

/// Text of the answer when the engine fails (store error, contention).
pub(crate) const ENGINE_FAILED: &str = "temporary failure deciding the request";

/// 3004 DIAMETER_TOO_BUSY (E bit): this node is not serving (cluster lease lost, or catching
/// up); the client sends the request to another peer (RFC 6733 §7.1.3).
pub(crate) fn not_serving(req: &Message, origin: &Origin) -> Message {
    error_answer(
        &req.header,
        req.session_id(),
        origin,
        ResultCode::TOO_BUSY,
        Some("this node is not serving sessions now"),
        None,
    )
}

/// The engine's decision: from memory only when `inline` (`None` if it needs the store).
pub(crate) fn decide(
    engine: &Engine,
    ctx: &AuthContext,
    inline: bool,
) -> Option<Result<Decision, EngineError>> {
    if inline {
        engine.decide_in_memory(ctx)
    } else {
        Some(engine.decide(ctx))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::diameter::codec::{APP_GX, APP_S6B};
    use crate::engine::{EnginePolicy, SystemClock};
    use crate::store::memory::MemStore;

    /// Gx and S6b over an in-memory engine (tests of the peer machine and the catalog).
    pub(crate) fn catalog() -> Catalog {
        let engine = Engine::new(
            Arc::new(MemStore::new()),
            EnginePolicy::default(),
            Arc::new(SystemClock::default()),
        );
        Catalog::standard(Arc::new(engine))
    }

    #[test]
    fn routes_by_application_id() {
        let c = catalog();
        assert_eq!(c.label(APP_GX), "gx");
        assert_eq!(c.label(APP_S6B), "s6b");
        assert_eq!(c.label(0), "base");
        assert_eq!(c.label(16_777_236), "other");
        assert_eq!(c.spec(APP_GX, 272).map(|s| s.name), Some("Gx CCR"));
        assert_eq!(c.spec(APP_S6B, 265).map(|s| s.name), Some("S6b AAR"));
        assert_eq!(c.spec(APP_S6B, 275).map(|s| s.name), Some("S6b STR"));
        assert!(c.spec(APP_GX, 265).is_none());
        assert!(c.spec(16_777_236, 265).is_none(), "Rx is not handled");
        assert_eq!(c.describe(), "Gx 16777238 or S6b 16777272");
    }

    #[test]
    fn a_second_application_with_the_same_id_is_ignored() {
        let mut c = catalog();
        let before = c.iter().count();
        let again = catalog();
        for a in again.apps {
            c.add(a);
        }
        assert_eq!(c.iter().count(), before);
    }
}
