//! `cargo fuzz run s13`: see [`imei_lockd::fuzzing::s13`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| imei_lockd::fuzzing::s13(data));
