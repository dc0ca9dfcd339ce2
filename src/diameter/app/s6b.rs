//! S6b (TS 29.273) as an [`Application`]: AAR → engine → AAA, STR → STA.
//!
//! The mapping of AVPs and identities is [`crate::diameter::s6b`]'s; this file glues it to the
//! engine and counts the identity forms seen. It does not validate the request (the peer
//! machine did, against [`COMMANDS`]) nor touch a socket.

use std::sync::Arc;

use metrics::Counter;

use super::{decide, not_serving, Application, ENGINE_FAILED};
use crate::diameter::codec::dict::{self, Apps};
use crate::diameter::codec::validate::{CMD_AAR, CMD_STR, ORIGIN};
use crate::diameter::codec::{
    AvpList, CommandSpec, Message, MessageError, Origin, ResultCode, APP_S6B,
};
use crate::diameter::s6b;
use crate::engine::{Engine, EngineError};
use crate::telemetry::Handles;

/// S6b AAR (TS 29.273 §9.2.2.1.1).
pub const AAR: CommandSpec = CommandSpec {
    name: "S6b AAR",
    code: CMD_AAR,
    application_id: APP_S6B,
    required: &[
        (dict::SESSION_ID, 0),
        (dict::AUTH_APPLICATION_ID, 0),
        ORIGIN[0],
        ORIGIN[1],
        (dict::DESTINATION_REALM, 0),
        (dict::AUTH_REQUEST_TYPE, 0),
        (dict::USER_NAME, 0),
    ],
    apps: Apps(Apps::BASE.0 | Apps::S6B.0),
};

/// S6b STR (TS 29.273 §9.2.2.3.1).
pub const STR: CommandSpec = CommandSpec {
    name: "S6b STR",
    code: CMD_STR,
    application_id: APP_S6B,
    required: &[
        (dict::SESSION_ID, 0),
        ORIGIN[0],
        ORIGIN[1],
        (dict::DESTINATION_REALM, 0),
        (dict::AUTH_APPLICATION_ID, 0),
        (dict::TERMINATION_CAUSE, 0),
    ],
    apps: Apps(Apps::BASE.0 | Apps::S6B.0),
};

/// The commands S6b serves.
pub static COMMANDS: &[CommandSpec] = &[AAR, STR];

/// The S6b application over an engine.
pub struct S6b {
    engine: Arc<Engine>,
}

impl S6b {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }

    fn aar(&self, aar: &Message, origin: &Origin, inline: bool) -> Option<Message> {
        let read = match s6b::read_aar(aar) {
            Ok(a) => a,
            // Logged and counted once: the inline attempt answers it (no engine needed).
            Err(e) => return Some(refused(aar, origin, &e)),
        };
        let ctx = read.ctx;
        let d = decide(&self.engine, &ctx, inline)?;
        count_identity(read.form, read.decorated);
        Some(match d {
            Ok(d) => s6b::aaa(aar, origin, &d),
            Err(EngineError::NotServing) => not_serving(aar, origin),
            Err(_) => s6b::aaa_with(
                aar,
                origin,
                ResultCode::UNABLE_TO_COMPLY,
                Some(ENGINE_FAILED),
                None,
            ),
        })
    }

    fn str(&self, req: &Message, origin: &Origin, inline: bool) -> Option<Message> {
        Some(match s6b::str_to_context(req) {
            Ok(Some(ctx)) => {
                // Always success; the engine only notes the session end (and logs its failures).
                let _ = decide(&self.engine, &ctx, inline)?;
                s6b::sta(req, origin)
            }
            Ok(None) => s6b::sta(req, origin),
            Err(e) => {
                tracing::info!(error = %e, session = ?req.session_id(), "S6b STR refused");
                s6b::error_answer(req, origin, &e)
            }
        })
    }
}

impl Application for S6b {
    fn id(&self) -> u32 {
        APP_S6B
    }

    fn name(&self) -> &'static str {
        "s6b"
    }

    fn title(&self) -> &'static str {
        "S6b"
    }

    fn commands(&self) -> &'static [CommandSpec] {
        COMMANDS
    }

    /// A failing engine gives 5012 DIAMETER_UNABLE_TO_COMPLY on an AAR, never an accept; an
    /// STR is always answered 2001.
    fn answer(&self, req: &Message, origin: &Origin, inline: bool) -> Option<Message> {
        match req.header.code {
            CMD_AAR => self.aar(req, origin, inline),
            CMD_STR => self.str(req, origin, inline),
            // The peer machine only passes commands listed in COMMANDS.
            _ => Some(crate::diameter::codec::error_answer(
                &req.header,
                req.session_id(),
                origin,
                ResultCode::COMMAND_UNSUPPORTED,
                None,
                None,
            )),
        }
    }

    fn error_answer(&self, req: &Message, origin: &Origin, err: &MessageError) -> Message {
        s6b::error_answer(req, origin, err)
    }
}

/// The answer to an AAR that cannot be judged, logged and counted.
fn refused(aar: &Message, origin: &Origin, e: &s6b::S6bError) -> Message {
    match e {
        s6b::S6bError::Message(m) => {
            count_identity("no_imsi", false);
            tracing::info!(error = %m, session = ?aar.session_id(), "S6b AAR refused");
        }
        s6b::S6bError::TemporaryIdentity { label, .. } => {
            let user_name = aar.avps.get_utf8(dict::USER_NAME, 0).ok().flatten();
            count_identity(label, user_name.is_some_and(|u| u.contains('!')));
            tracing::info!(session = ?aar.session_id(), peer = ?aar.origin_host(),
                user_name = ?user_name, form = label,
                "S6b AAR refused with DIAMETER_USER_UNKNOWN (5030): {e}; the P-GW must \
                 send the permanent identity (see docs/integration/s6b-identities.md)");
        }
    }
    s6b::refusal_answer(aar, origin, e)
}

/// `imei_lockd_s6b_identities_total{form, decorated}`.
fn count_identity(form: &'static str, decorated: bool) {
    static IDENTITIES: Handles<(&str, bool), Counter> = Handles::new();
    IDENTITIES.with(
        (form, decorated),
        |(form, decorated)| {
            metrics::counter!("imei_lockd_s6b_identities_total", "form" => form,
                "decorated" => if decorated { "true" } else { "false" })
        },
        |c| c.increment(1),
    );
}
