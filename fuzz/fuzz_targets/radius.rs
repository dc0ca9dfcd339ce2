//! `cargo fuzz run radius`: see [`imei_lockd::fuzzing::radius`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| imei_lockd::fuzzing::radius(data));
