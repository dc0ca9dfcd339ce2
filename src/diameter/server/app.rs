//! Application requests (Gx CCR, S6b AAR/STR) to answers: map, ask the engine, build the answer.
//!
//! Synchronous: the engine may block a few milliseconds (an fsync when it binds, a disk read),
//! so the shell runs [`answer`] on its bounded blocking path. A request the engine can decide
//! from memory (a match, an update or end of a SIM held in memory: nearly all once SIMs are
//! bound) costs about a microsecond; [`answer_inline`] answers those on the connection task and
//! leaves the rest (`None`) to the bounded path (see [`Engine::decide_in_memory`]). Nothing here
//! touches a socket.

use metrics::Counter;

use crate::context::AuthContext;
use crate::context::Decision;
use crate::context::Phase;
use crate::diameter::codec::validate::{CMD_AAR, CMD_CCR, CMD_STR};
use crate::diameter::codec::{
    dict, error_answer, AvpList, Message, Origin, ResultCode, APP_GX, APP_S6B,
};
use crate::diameter::{gx, s6b};
use crate::engine::{Engine, EngineError};
use crate::telemetry::Handles;

/// Text of the answer when the engine fails (store error, contention).
const ENGINE_FAILED: &str = "temporary failure deciding the request";

/// The application an answer counts under in metrics.
pub fn app_label(application_id: u32) -> &'static str {
    match application_id {
        APP_GX => "gx",
        APP_S6B => "s6b",
        0 => "base",
        _ => "other",
    }
}

/// The answer to a validated Gx or S6b request.
///
/// Session ends (CCR-T, STR) are answered 2001 whatever the engine says (SPEC §1.2); a
/// failing engine otherwise gives 5012 DIAMETER_UNABLE_TO_COMPLY, never an accept.
pub fn answer(engine: &Engine, req: &Message, origin: &Origin) -> Message {
    respond(engine, req, origin, false).unwrap_or_else(|| {
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

/// [`answer`], when the engine can decide the request from memory; `None` (nothing decided,
/// nothing logged) when it needs the store: the caller then runs [`answer`] on its bounded
/// blocking path.
pub fn answer_inline(engine: &Engine, req: &Message, origin: &Origin) -> Option<Message> {
    respond(engine, req, origin, true)
}

fn respond(engine: &Engine, req: &Message, origin: &Origin, inline: bool) -> Option<Message> {
    match (req.header.application_id, req.header.code) {
        (APP_GX, CMD_CCR) => gx_ccr(engine, req, origin, inline),
        (APP_S6B, CMD_AAR) => s6b_aar(engine, req, origin, inline),
        (APP_S6B, CMD_STR) => s6b_str(engine, req, origin, inline),
        // The peer machine only passes commands it has a spec for.
        _ => Some(error_answer(
            &req.header,
            req.session_id(),
            origin,
            ResultCode::COMMAND_UNSUPPORTED,
            None,
            None,
        )),
    }
}

fn gx_ccr(engine: &Engine, ccr: &Message, origin: &Origin, inline: bool) -> Option<Message> {
    let ctx = match gx::ccr_to_context(ccr) {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(error = %e, session = ?ccr.session_id(), "Gx CCR refused");
            return Some(gx::error_answer(ccr, origin, &e));
        }
    };
    Some(match decide(engine, &ctx, inline)? {
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

fn s6b_aar(engine: &Engine, aar: &Message, origin: &Origin, inline: bool) -> Option<Message> {
    let read = match s6b::read_aar(aar) {
        Ok(a) => a,
        // Logged and counted once: the inline attempt answers it (no engine needed).
        Err(e) => return Some(s6b_refused(aar, origin, &e)),
    };
    let ctx = read.ctx;
    let d = decide(engine, &ctx, inline)?;
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

/// The answer to an AAR that cannot be judged, logged and counted.
fn s6b_refused(aar: &Message, origin: &Origin, e: &s6b::S6bError) -> Message {
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
                "S6b AAR refused with DIAMETER_ERROR_USER_UNKNOWN (5001): {e}; the P-GW must \
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

fn s6b_str(engine: &Engine, req: &Message, origin: &Origin, inline: bool) -> Option<Message> {
    Some(match s6b::str_to_context(req) {
        Ok(Some(ctx)) => {
            // Always success; the engine only notes the session end (and logs its failures).
            let _ = decide(engine, &ctx, inline)?;
            s6b::sta(req, origin)
        }
        Ok(None) => s6b::sta(req, origin),
        Err(e) => {
            tracing::info!(error = %e, session = ?req.session_id(), "S6b STR refused");
            s6b::error_answer(req, origin, &e)
        }
    })
}

/// 3004 DIAMETER_TOO_BUSY (E bit): this node is not serving (cluster lease lost, or catching
/// up); the client sends the request to another peer (RFC 6733 §7.1.3).
fn not_serving(req: &Message, origin: &Origin) -> Message {
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
fn decide(
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
