//! `cargo fuzz run csv_import`: see [`imei_lockd::fuzzing::csv_import`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| imei_lockd::fuzzing::csv_import(data));
