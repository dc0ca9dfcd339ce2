//! `cargo fuzz run s6b_user_name`: see [`imei_lockd::fuzzing::s6b_user_name`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| imei_lockd::fuzzing::s6b_user_name(data));
