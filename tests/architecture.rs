//! Architecture invariants, kept as tests.

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The room core is sans-IO: no tokio, no quinn, no sockets, no clock reads, no randomness.
#[test]
fn core_is_sans_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = rust_files(&root.join("src/core"));
    files.push(root.join("src/auth.rs"));
    files.extend(rust_files(&root.join("src/wire")));
    assert!(files.len() >= 6, "expected the core, auth and wire files, found {files:?}");
    let forbidden =
        ["tokio", "quinn", "::now(", "std::net", "std::thread", "rand::", "SystemTime", "Instant"];
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in forbidden {
                assert!(
                    !code.contains(word),
                    "{}:{}: the sans-IO core must not use `{word}`: {line}",
                    file.display(),
                    i + 1
                );
            }
        }
    }
}

/// Only the connection modules read or write stream bytes.
#[test]
fn only_connection_modules_touch_streams() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let allowed = [
        "src/framed.rs",
        "src/server/conn.rs",
        "src/server/outbox.rs",
        "src/client/link.rs",
        "src/client/streams.rs",
    ];
    // Files that name stream types or open/accept streams; everything else goes through these.
    for file in rust_files(&root.join("src")) {
        let rel = file.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        let text = fs::read_to_string(&file).unwrap();
        for word in
            ["RecvStream", "SendStream", "open_uni(", "accept_uni(", "open_bi(", "accept_bi("]
        {
            if text.contains(word) {
                assert!(
                    allowed.contains(&rel.as_str()),
                    "{rel} uses {word}: only the connection modules read and write stream bytes"
                );
            }
        }
    }
}
