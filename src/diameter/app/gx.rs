//! Gx (TS 29.212) as an [`Application`]: CCR → engine → CCA.
//!
//! The mapping of AVPs is [`crate::diameter::gx`]'s; this file glues it to the engine. It does
//! not validate the request (the peer machine did, against [`COMMANDS`]) nor touch a socket.

use std::sync::Arc;

use super::{decide, not_serving, Application, ENGINE_FAILED};
use crate::context::Phase;
use crate::diameter::codec::dict::{self, Apps};
use crate::diameter::codec::validate::{CMD_CCR, ORIGIN};
use crate::diameter::codec::{CommandSpec, Message, MessageError, Origin, ResultCode, APP_GX};
use crate::diameter::gx;
use crate::engine::{Engine, EngineError};

/// Gx CCR (TS 29.212 §5.6.2).
pub const CCR: CommandSpec = CommandSpec {
    name: "Gx CCR",
    code: CMD_CCR,
    application_id: APP_GX,
    required: &[
        (dict::SESSION_ID, 0),
        (dict::AUTH_APPLICATION_ID, 0),
        ORIGIN[0],
        ORIGIN[1],
        (dict::DESTINATION_REALM, 0),
        (dict::CC_REQUEST_TYPE, 0),
        (dict::CC_REQUEST_NUMBER, 0),
    ],
    apps: Apps(Apps::BASE.0 | Apps::GX.0),
};

/// The commands Gx serves.
pub static COMMANDS: &[CommandSpec] = &[CCR];

/// The Gx application over an engine.
pub struct Gx {
    engine: Arc<Engine>,
}

impl Gx {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

impl Application for Gx {
    fn id(&self) -> u32 {
        APP_GX
    }

    fn name(&self) -> &'static str {
        "gx"
    }

    fn title(&self) -> &'static str {
        "Gx"
    }

    fn commands(&self) -> &'static [CommandSpec] {
        COMMANDS
    }

    /// Session ends (CCR-T) are answered 2001 whatever the engine says (SPEC §1.2); a failing
    /// engine otherwise gives 5012 DIAMETER_UNABLE_TO_COMPLY, never an accept.
    fn answer(&self, ccr: &Message, origin: &Origin, inline: bool) -> Option<Message> {
        let ctx = match gx::ccr_to_context(ccr) {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(error = %e, session = ?ccr.session_id(), "Gx CCR refused");
                return Some(gx::error_answer(ccr, origin, &e));
            }
        };
        Some(match decide(&self.engine, &ctx, inline)? {
            Ok(d) => gx::cca(ccr, origin, &d),
            Err(EngineError::NotServing) => not_serving(ccr, origin),
            Err(_) if ctx.phase == Phase::End => {
                gx::cca_with(ccr, origin, ResultCode::SUCCESS, None, None)
            }
            Err(_) => gx::cca_with(
                ccr,
                origin,
                ResultCode::UNABLE_TO_COMPLY,
                Some(ENGINE_FAILED),
                None,
            ),
        })
    }

    fn error_answer(&self, req: &Message, origin: &Origin, err: &MessageError) -> Message {
        gx::error_answer(req, origin, err)
    }
}
