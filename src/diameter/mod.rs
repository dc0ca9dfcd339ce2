//! Diameter (RFC 6733) front-end: the pure [`codec`], the sans-IO [`peer`] state machine (base
//! protocol only), the [`app`] trait and catalog that route requests to applications by
//! Application-Id, the [`gx`] and [`s6b`] mappings between requests and
//! [`crate::context::AuthContext`], [`nai`], the identities an S6b User-Name can carry, and
//! [`s13`], the EIR's ME-Identity-Check (application and mapping to [`crate::eir`]).
//!
//! Nothing here but [`server`] opens a socket or spawns a task: the I/O shell frames the stream
//! with [`codec::Decoder::peek_length`], feeds frames and time to a [`peer::Peer`], writes what
//! it polls out, and hands application requests to the [`app::Catalog`].

pub mod app;
pub mod codec;
pub mod gx;
pub mod nai;
pub mod peer;
pub mod s13;
pub mod s6b;
pub mod server;
