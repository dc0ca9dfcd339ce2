//! imei-lockd: an AAA daemon that enforces an IMEI lock for IoT SIMs.
//!
//! # Layout
//! - [`imei`], [`context`]: the protocol-neutral types ([`imei::Imei`], [`context::AuthContext`],
//!   [`context::Decision`]).
//! - [`engine`]: SPEC §1.2 as code; knows no protocol and no storage technology.
//! - [`store`]: durable state behind the [`store::Store`] trait (RocksDB, and an in-memory twin).
//! - [`eir`], [`n5g_eir`]: the Equipment Identity Register and its N5g-eir (HTTP/2) front-end.
//! - [`config`], [`logging`]: the operator's side; [`backup`]: backups of the embedded store.
//!
//! Protocol front-ends decode requests into an [`context::AuthContext`], ask the engine, and
//! encode the answer; they never touch the store.

pub mod alerts;
pub mod api;
pub mod backup;
pub mod cli_docs;
pub mod config;
pub mod context;
pub mod diameter;
pub mod eir;
pub mod engine;
pub mod fuzzing;
pub mod imei;
pub mod logging;
pub mod n5g_eir;
pub mod provisioning;
pub mod radius;
pub mod retention;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod tls;
