//! The Diameter codec (RFC 6733 §3, §4): bytes to [`Message`] and back, the small
//! [`dict`]ionary, and per-command [validation](mod@validate) of requests.
//!
//! # Layout
//! - [`header`]: the 20-byte header, [`Decoder::peek_length`] for stream framing.
//! - [`avp`]: the AVP type and its encoding (the bottom layer: only the dictionary below it);
//!   [`avp_decode`]: AVPs decoded through a checked cursor (`reader`); [`avp_read`]: typed
//!   accessors. The import order is `dict` → `avp` → `error` → `header` → `avp_decode` /
//!   `avp_read` → `message` → `validate`, with no circle.
//! - [`message`]: [`Decoder::decode`], [`Message::encode`], answer builders.
//! - [`dict`], [`mod@validate`]: what we understand and what each handled request must carry.
//! - [`error`]: [`MessageError`], each variant carrying its Result-Code and Failed-AVP.
//!
//! # What this layer does not do
//! No I/O, no sockets, no tokio, no timers: it never reads a stream, it only says how long the
//! next message is. It keeps no state between messages (peer state, hop-by-hop tables and
//! duplicate detection live in [`crate::diameter::peer`]), and it does not interpret
//! applications (see [`crate::diameter::gx`] and [`crate::diameter::s6b`]).
//!
//! Decoding never panics and never allocates more than a checked length allows; unknown AVPs
//! are kept as raw bytes so that `encode(decode(m)) == m` (padding re-written as zeros).

pub mod avp;
pub mod avp_decode;
pub mod avp_read;
pub mod dict;
pub mod error;
pub mod header;
pub mod message;
mod reader;
pub mod validate;

#[cfg(test)]
pub(crate) mod tests;

pub use avp::{Avp, AvpFlags};
pub use avp_read::AvpList;
pub use dict::VENDOR_3GPP;
pub use error::{EncodeError, LengthProblem, MessageError, ResultCode};
pub use header::{CommandFlags, Decoder, Header, HEADER_LEN};
pub use message::{answer_for_error, error_answer, Message, Origin};
pub use validate::{validate, CommandSpec, APP_GX, APP_RELAY, APP_S6B};
