//! The fuzz corpus as ordinary tests on stable Rust: every file under `fuzz/corpus/<target>/`
//! and `fuzz/regressions/<target>/` goes through the same function the cargo-fuzz target calls
//! (`huddle::fuzzing`), and the committed seeds match what `huddle::fuzzing::seeds` generates.
//!
//! To rewrite the seed files after changing the seeds: `HUDDLE_WRITE_SEEDS=1 cargo test --test
//! fuzz_corpus`.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use huddle::fuzzing::{
    frame_decode, request_handler, sample_events, sample_headers, sample_requests,
    sample_responses, seeds, TARGETS,
};
use huddle::wire::{decode_body, encode_body, Event, Request, Response, StreamHeader};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir/<target>/`, sorted (none when the folder does not exist).
fn files(dir: &str, target: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(fuzz_dir().join(dir).join(target)) else { return Vec::new() };
    let mut files: Vec<PathBuf> =
        entries.map(|e| e.expect("a directory entry").path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

#[test]
fn every_corpus_and_regression_file_passes_its_target() {
    let mut failures = Vec::new();
    for (target, body) in TARGETS {
        let corpus = files("corpus", target);
        assert!(!corpus.is_empty(), "fuzz/corpus/{target} holds no seed");
        for path in corpus.iter().chain(files("regressions", target).iter()) {
            let data = fs::read(path).expect("a readable corpus file");
            if catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
                failures.push(path.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "inputs that fail their target: {failures:#?}");
}

#[test]
fn committed_seeds_are_the_generated_ones() {
    let write = std::env::var_os("HUDDLE_WRITE_SEEDS").is_some();
    let mut stale = Vec::new();
    for seed in seeds() {
        let dir = fuzz_dir().join("corpus").join(seed.target);
        let path = dir.join(format!("seed-{}", seed.name));
        if write {
            fs::create_dir_all(&dir).expect("the corpus folder");
            fs::write(&path, &seed.data).expect("a written seed");
        } else if fs::read(&path).ok().as_ref() != Some(&seed.data) {
            stale.push(path.display().to_string());
        }
    }
    assert!(stale.is_empty(), "seeds missing or stale (HUDDLE_WRITE_SEEDS=1): {stale:#?}");
}

/// The variant index a message encodes with: its first varint (all indexes here are < 251).
fn variant_index(body: &[u8]) -> u8 {
    assert!(body[0] < 251, "a one-byte variant index");
    body[0]
}

/// The samples hold every variant once, in order: the index one past the last is no variant.
fn covers_every_variant<T: bincode::Encode + bincode::Decode<()>>(samples: &[T]) {
    let indexes: Vec<u8> = samples.iter().map(|s| variant_index(&encode_body(s))).collect();
    let expected: Vec<u8> = (0..samples.len() as u8).collect();
    assert_eq!(indexes, expected, "samples in variant order, one each");
    let past = [samples.len() as u8];
    assert!(decode_body::<T>(&past).is_err(), "variant {} exists but has no sample", past[0]);
}

#[test]
fn seeds_cover_every_message_variant() {
    covers_every_variant::<Request>(&sample_requests());
    covers_every_variant::<Response>(&sample_responses());
    covers_every_variant::<Event>(&sample_events());
    covers_every_variant::<StreamHeader>(&sample_headers());
}

#[test]
fn targets_accept_empty_and_tiny_inputs() {
    for data in [&[][..], &[0], &[0xff], &[0x40, 0, 0], &[1, 0x08, 0x17, 0x80]] {
        frame_decode(data);
        request_handler(data);
    }
}
