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
    let allowed =
        ["src/framed.rs", "src/server/conn.rs", "src/server/outbox.rs", "src/client/mod.rs"];
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

/// The load runner knows nothing of a transport beyond `Link` and `Inbox`: the schedule,
/// stamps, checks and CPU accounting are one code path for every backend. Connecting members
/// (QUIC endpoints, Huddle's client, the network simulator, Redis, NATS) is the backends' part
/// (`src/load/huddle/`, `src/load/compare.rs`).
#[test]
fn load_runner_is_transport_free() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let load = root.join("src/load");
    let mut files = rust_files(&load.join("runner"));
    for name in ["link.rs", "schedule.rs", "stats.rs"] {
        files.push(load.join(name));
    }
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&load).unwrap().to_string_lossy().replace('\\', "/"))
        .collect();
    for want in
        ["runner/mod.rs", "runner/publish.rs", "runner/receive.rs", "link.rs", "schedule.rs"]
    {
        assert!(names.iter().any(|n| n == want), "expected src/load/{want}, found {names:?}");
    }
    let forbidden = [
        "quinn",
        "crate::client",
        "huddle::client",
        "Client",
        "crate::server",
        "crate::netsim",
        "Proxy",
        "crate::certs",
        "crate::auth",
        "std::net",
        "tokio::net",
        "UdpSocket",
        "redis",
        "async_nats",
    ];
    let mut code = String::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        assert!(text.lines().count() > 20, "{} is (nearly) empty", file.display());
        for (i, line) in text.lines().enumerate() {
            let line_code = line.split("//").next().unwrap_or("");
            for word in forbidden {
                assert!(
                    !line_code.contains(word),
                    "{}:{}: the load runner must not know the transport (`{word}`): {line}",
                    file.display(),
                    i + 1
                );
            }
            code.push_str(line_code);
            code.push('\n');
        }
    }
    // What it does know: the seam, and the workload's phases are its own.
    for word in ["trait Link", "trait Inbox", "fn fanout<L: Link>", "fn hold_connections<L: Link>"]
    {
        assert!(code.contains(word), "the generic load files no longer hold `{word}`");
    }
    // The check sees what it forbids: the backends name these words in code.
    let huddle = fs::read_to_string(load.join("huddle/mod.rs")).unwrap();
    let compare = fs::read_to_string(load.join("compare.rs")).unwrap();
    for (text, word) in [(&huddle, "quinn"), (&huddle, "Client"), (&compare, "redis")] {
        assert!(text.contains(word), "expected the backend to use `{word}`");
    }
}
