//! Arbitrary bytes through the length-prefix check, the stream frame reader and every message
//! decoder; see `huddle::fuzzing::frame_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huddle::fuzzing::frame_decode(data));
