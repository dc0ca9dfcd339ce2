//! `cargo fuzz run store_value`: see [`imei_lockd::fuzzing::store_value`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| imei_lockd::fuzzing::store_value(data));
