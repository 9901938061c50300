//! Request sequences from several connections through the sans-IO core with advancing virtual
//! time; see `huddle::fuzzing::request_handler`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huddle::fuzzing::request_handler(data));
