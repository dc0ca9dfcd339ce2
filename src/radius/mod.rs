//! RADIUS codec layer (RFC 2865, 2866, 3579, 5080, 5997): bytes to a checked request, request to
//! [`crate::context::AuthContext`], engine answer to response bytes, and the duplicate cache.
//!
//! # Layout
//! - [`codec`]: header and attribute framing, a borrowed view of the datagram ([`codec::Packet`]).
//! - [`vsa`]: Vendor-Specific attributes; 3GPP (vendor 10415) sub-attributes.
//! - [`auth`]: Message-Authenticator (HMAC-MD5), Response and Accounting Request Authenticators.
//! - [`request`]: [`request::Request::decode`], the gate: framing, Code per port,
//!   Message-Authenticator, Accounting Request Authenticator, checks of the attributes read.
//! - [`mapping`]: Access-/Accounting-Request → `AuthContext`; decision → response octets.
//! - [`encode`]: response encoding (Message-Authenticator first) and request encoding for tests
//!   and a load generator.
//! - [`dedup`]: RFC 5080 response cache with in-progress markers.
//! - [`attr`]: attribute numbers.
//! - [`clients`]: the `[[radius.clients]]` table, longest-prefix lookup by source address.
//! - [`server`]: the UDP I/O shell (sockets, receive tasks, engine hand-off, metrics).
//! - [`series`]: the label values of the shell's metrics, registered at 0 at bind.
//!
//! # Calling contract (the UDP shell)
//! ```text
//! client  = clients.by_source(src.ip())            // unknown → drop, count "unknown_client"
//! req     = Request::decode(datagram, port, &ClientPolicy { secret, require_message_authenticator })?
//!                                                  // Err(e) → drop, count e.label()
//! key     = req.dedup_key(src)
//! match cache.begin(key, now) { Cached(b) => send(b), InProgress => drop, Started => … }
//! bytes   = match req.kind() {
//!   Access     => match access_context(&req, name, src) {
//!                   Ok(ctx) => encode_decision(&req, &engine.judge(ctx), secret),
//!                   Err(e)  => /* NoImsi */ encode_reject(&req, NO_IMSI_MESSAGE, secret) },
//!   Accounting => { if let Accounting::Session(ctx) = accounting_context(..)? { engine.judge(ctx) }
//!                   encode_accounting_response(&req, secret) }
//!   Status     => encode_status_response(&req, secret),
//! }
//! cache.insert(key, bytes.clone(), now); send(bytes)  // on any error: cache.abandon(&key)
//! ```
//! The receive buffer must hold 4096 octets (RFC 2865 §3 maximum); larger datagrams are read
//! truncated and then decoded by their Length field.
//!
//! # What this layer does not do
//! - No sockets, tasks, timers, clocks or locks (`now` is passed in; the shell shards
//!   [`dedup::ResponseCache`] behind mutexes), no client lookup by address, no metrics.
//! - No User-Password/CHAP/EAP checking: the lock authorizes the device, not a password.
//! - No Access-Challenge, CoA/Disconnect (RFC 5176), RADIUS/TLS, RFC 6929 extended attributes,
//!   or proxying (Proxy-State is only echoed).
//! - No decision: the engine decides; this layer only carries its answer.
//!
//! # Why not the `radius` crate's `Packet` on the hot path
//! `radius` 0.4 is used for User-Password hiding ([`encode::hide_user_password`]) and, in tests,
//! as an independent implementation to check ours against (Response and Accounting Request
//! Authenticators, decoding our responses, differential fuzzing of the framing). Its `Packet`
//! is not used to receive or answer because:
//! - `Packet::encode` hashes the Response Authenticator inside the call, with no step between
//!   laying out the attributes and hashing; the Message-Authenticator must be computed over the
//!   final layout with the Request Authenticator in place, *before* that hash (RFC 3579 §3.2).
//!   Using it would mean encoding twice and rebuilding the packet (it has no authenticator
//!   setter, and `delete` + `add` would move Message-Authenticator off the first position).
//! - `Packet::decode` keeps no attribute offsets (needed to zero the Message-Authenticator for
//!   the HMAC), accepts empty attributes, reports `String` errors that cannot be counted by
//!   reason, copies every value and the secret into each packet, and its `is_authentic_request`
//!   returns true for any Access-Request.
//! - `AVP`'s type and value are private, so its attribute types cannot be written by our own
//!   encoder either.
//!
//! Our framing is ~60 lines of checked reads (no indexing, no `unwrap`), tested with every
//! truncation, bad lengths and a proptest, and cross-checked against the crate's decoder.

pub mod attr;
pub mod auth;
pub mod clients;
pub mod codec;
pub mod dedup;
pub mod encode;
pub mod mapping;
pub mod mmsg;
pub mod recv_buffer;
pub mod request;
pub mod vsa;

pub use codec::{Authenticator, Code, DecodeError, Packet};
pub use dedup::{Begin, DedupKey, ResponseCache};
pub use encode::EncodeError;
pub use mapping::{
    access_context, accounting_context, encode_accounting_response, encode_decision, encode_reject,
    encode_status_response, Accounting, AnswerOnly, MappingError, NO_IMSI_MESSAGE,
};
pub use request::{ClientPolicy, Disposition, Port, Request, RequestError, RequestKind};
pub use vsa::VsaError;

pub mod series;
pub mod server;
#[cfg(test)]
pub(crate) mod tests;
