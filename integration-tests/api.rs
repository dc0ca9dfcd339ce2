//! api integration tests (against the real binary).

mod common;
