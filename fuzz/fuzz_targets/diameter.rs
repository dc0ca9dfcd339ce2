//! `cargo fuzz run diameter`: see [`imei_lockd::fuzzing::diameter`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| imei_lockd::fuzzing::diameter(data));
