//! `cargo fuzz run n5g_query`: see [`imei_lockd::fuzzing::n5g_query`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| imei_lockd::fuzzing::n5g_query(data));
