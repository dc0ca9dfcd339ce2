//! The WARN line of a refused peer (a CER answered with an error, the connection closed): why,
//! in words an operator can act on, at most one line per (source address, reason) per 10 s with
//! the count suppressed in between ([`crate::logging::limit`]).
//!
//! The refusal itself is the peer machine's ([`crate::diameter::peer`]); its count is
//! `imei_lockd_diameter_errors_total{reason="cer_rejected"}` (`conn`). This module only writes
//! the line.

use std::time::Instant;

use super::conn::ConnCtx;
use crate::diameter::codec::ResultCode;

/// Logs the refusal of a CER from `ctx.remote` with `code`; `origin_host` is the CER's,
/// `was_open` whether the connection was open (a refused re-CER).
pub(super) fn warn(ctx: &ConnCtx, origin_host: Option<&str>, was_open: bool, code: ResultCode) {
    let reason = match code {
        ResultCode::UNKNOWN_PEER if origin_host.is_some_and(|h| ctx.shared.is_configured(h)) => {
            "address_not_allowed"
        }
        ResultCode::UNKNOWN_PEER => "unknown_origin_host",
        ResultCode::NO_COMMON_APPLICATION => "no_common_application",
        ResultCode::UNABLE_TO_COMPLY if was_open => "origin_host_changed",
        _ => "invalid_cer",
    };
    let remote = ctx.remote;
    let Some(admit) = ctx
        .shared
        .refusals
        .admit((remote.ip(), reason), Instant::now())
    else {
        return;
    };
    let text = match (admit.overflow, reason) {
        (true, _) => {
            "diameter peers refused from more sources than the log tracks (a flood?): one line \
             per 10 s stands for all of them; see \
             imei_lockd_diameter_errors_total{reason=\"cer_rejected\"}"
        }
        (false, "address_not_allowed") => {
            "diameter peer refused (CEA 3010 DIAMETER_UNKNOWN_PEER): its Origin-Host is in \
             [[diameter.peers]], but not from this source address (see its address)"
        }
        (false, "unknown_origin_host") => {
            "diameter peer refused (CEA 3010 DIAMETER_UNKNOWN_PEER): its Origin-Host is not in \
             [[diameter.peers]]"
        }
        (false, "no_common_application") => {
            "diameter peer refused (CEA 5010 DIAMETER_NO_COMMON_APPLICATION): it advertises \
             neither Gx (16777238) nor S6b (16777272)"
        }
        (false, "origin_host_changed") => {
            "diameter peer refused: its re-CER changed the Origin-Host (CEA 5012)"
        }
        (false, _) => "diameter peer refused: its CER is invalid (see result_code)",
    };
    tracing::warn!(%remote, transport = %ctx.transport, origin_host = origin_host.unwrap_or("-"),
        result_code = %code, reason, suppressed = admit.suppressed,
        "{text} (at most one line per source and reason per 10 s; suppressed: the refusals not \
         logged since the previous line)");
}
