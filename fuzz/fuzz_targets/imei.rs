//! `cargo fuzz run imei`: see [`imei_lockd::fuzzing::imei`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| imei_lockd::fuzzing::imei(data));
