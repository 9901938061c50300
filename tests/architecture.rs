//! Architecture invariants, kept as tests.

use std::collections::{HashMap, HashSet};
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

/// A source text without its `//` comments, line for line.
fn without_comments(text: &str) -> String {
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Fails at the first line of `files` whose code (comments aside) names one of `forbidden`;
/// returns the files' code, joined.
fn assert_none_named(files: &[PathBuf], forbidden: &[&str], rule: &str) -> String {
    let mut all = String::new();
    for file in files {
        let code = without_comments(&fs::read_to_string(file).unwrap());
        for (i, line) in code.lines().enumerate() {
            for word in forbidden {
                assert!(
                    !line.contains(word),
                    "{}:{}: {rule} (`{word}`): {line}",
                    file.display(),
                    i + 1
                );
            }
        }
        all.push_str(&code);
        all.push('\n');
    }
    all
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
    assert_none_named(&files, &forbidden, "the sans-IO core must not use it");
}

/// Only the connection modules read or write stream bytes.
#[test]
fn only_connection_modules_touch_streams() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let allowed = [
        "src/framed.rs",
        "src/server/conn.rs",
        "src/server/outbox.rs",
        "src/server/web.rs",
        "src/client/link.rs",
        "src/client/streams.rs",
        // The load harness's WebTransport members (a browser's stack's stand-in).
        "src/load/huddle/web.rs",
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

/// A module of `src/` by its path (`server::conn`), with its file and its text.
struct ModuleFile {
    path: String,
    file: PathBuf,
    code: String,
}

/// Every library module file with its comment-free text (`main.rs` is the binary, not a module).
fn module_files(root: &Path) -> Vec<ModuleFile> {
    let src = root.join("src");
    let mut out = Vec::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
        if rel == "main.rs" {
            continue;
        }
        let rel = rel.trim_end_matches(".rs");
        let rel = rel.strip_suffix("/mod").unwrap_or(rel);
        let path = if rel == "lib" { String::new() } else { rel.replace('/', "::") };
        let text = fs::read_to_string(&file).unwrap();
        let code: String = without_comments(&text);
        out.push(ModuleFile { path, file, code });
    }
    out
}

/// The module paths a file names: `crate::a::b`, `super::x`, and the names inside one level of
/// braces (`crate::a::{b, c::D}`), made absolute.
fn referenced_paths(module: &ModuleFile) -> Vec<String> {
    // `super` is the parent of the file's module (`a` for both `a/b.rs` and `a/b/mod.rs`, which
    // are `a::b`); `self` is the module itself.
    let parent = |p: &str| p.rsplit_once("::").map(|(a, _)| a.to_string()).unwrap_or_default();
    let mut out = Vec::new();
    let code = &module.code;
    let bytes = code.as_bytes();
    for (prefix, base) in [
        ("crate::", String::new()),
        ("super::", parent(&module.path)),
        ("self::", module.path.clone()),
    ] {
        let mut from = 0;
        while let Some(pos) = code[from..].find(prefix) {
            let start = from + pos;
            from = start + prefix.len();
            if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
                continue;
            }
            let rest = &code[from..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let head = rest[..end].trim_end_matches(':');
            let join = |tail: &str| {
                [base.as_str(), tail]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join("::")
            };
            if rest[end..].starts_with('{') && rest[..end].ends_with("::") {
                let close = rest[end..].find('}').map(|c| end + c).unwrap_or(rest.len());
                for item in rest[end + 1..close].split(',') {
                    let item = item.split_whitespace().next().unwrap_or("");
                    let item = item.trim_end_matches(['{', ':']);
                    if !item.is_empty() && item != "self" {
                        out.push(join(&format!("{head}::{item}")));
                    } else if item == "self" {
                        out.push(join(head));
                    }
                }
            } else {
                out.push(join(head));
            }
        }
    }
    out
}

/// The top-level modules from the bottom layer up: a module may use only modules of a lower
/// layer (its own submodules aside). Two modules of one layer know nothing of each other.
const LAYERS: &[&[&str]] = &[
    &["wire"],
    &["framed", "auth", "udp", "congestion"],
    &["core", "certs"],
    &["client", "netsim", "cluster"],
    &["server"],
    &["cli", "fuzzing"],
    &["load"],
];

/// Directory modules whose files must not reach back into their `mod.rs` for what it defines
/// (`core/` is exempt: its files extend `Core` with `impl Core` blocks, as quinn-proto's
/// `connection/` does).
const NO_REACHING_BACK: &[&str] = &["server", "client", "load", "cli", "netsim", "wire", "cluster"];

/// Imports run downward: the top-level modules form the layers of `LAYERS`, no file imports a
/// module that (through any chain) imports it back, and no file of a directory module uses what
/// that directory's `mod.rs` defines.
#[test]
fn imports_run_downward() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let modules = module_files(root);
    let known: HashSet<&str> = modules.iter().map(|m| m.path.as_str()).collect();
    let layer = |top: &str| LAYERS.iter().position(|l| l.contains(&top));
    let resolve = |path: &str| -> Option<String> {
        let mut p = path.to_string();
        loop {
            if known.contains(p.as_str()) {
                return if p.is_empty() { None } else { Some(p) };
            }
            p = p.rsplit_once("::").map(|(a, _)| a.to_string())?;
        }
    };
    let top = |p: &str| p.split("::").next().unwrap_or("").to_string();
    let mut edges: HashMap<String, HashSet<String>> = HashMap::new();
    let mut problems = Vec::new();
    for module in &modules {
        if module.path.is_empty() {
            continue;
        }
        let here_top = top(&module.path);
        if layer(&here_top).is_none() {
            problems.push(format!("top-level module `{here_top}` is in no layer of LAYERS"));
        }
        for path in referenced_paths(module) {
            let Some(target) = resolve(&path) else { continue };
            if target == module.path {
                continue;
            }
            let target_top = top(&target);
            if target_top != here_top {
                if let (Some(a), Some(b)) = (layer(&here_top), layer(&target_top)) {
                    if b >= a {
                        problems.push(format!(
                            "{}: `{}` uses `{path}`: `{target_top}` is not below `{here_top}`",
                            module.file.display(),
                            module.path
                        ));
                    }
                }
            }
            // A file reaching back into an enclosing module's root.
            if module.path.starts_with(&format!("{target}::")) {
                let item = path.strip_prefix(&format!("{target}::")).unwrap_or("");
                let item = item.split("::").next().unwrap_or("");
                let parent = modules.iter().find(|m| m.path == target).unwrap();
                let defines =
                    ["struct", "enum", "fn", "trait", "type", "const", "static"].iter().any(|kw| {
                        parent.code.contains(&format!("{kw} {item} "))
                            || parent.code.contains(&format!("{kw} {item}("))
                            || parent.code.contains(&format!("{kw} {item}<"))
                            || parent.code.contains(&format!("{kw} {item}:"))
                            || parent.code.contains(&format!("{kw} {item};"))
                    });
                if !item.is_empty() && defines && NO_REACHING_BACK.contains(&target.as_str()) {
                    problems.push(format!(
                        "{}: uses `{path}`, defined in its own module root `{target}`: move it to a file of its own",
                        module.file.display()
                    ));
                }
                continue;
            }
            edges.entry(module.path.clone()).or_default().insert(target);
        }
    }
    // Circles among files (edges into an enclosing module's root were handled above).
    fn visit(
        node: &str,
        edges: &HashMap<String, HashSet<String>>,
        state: &mut HashMap<String, u8>,
        stack: &mut Vec<String>,
        problems: &mut Vec<String>,
    ) {
        match state.get(node) {
            Some(1) => {
                let at = stack.iter().position(|n| n == node).unwrap_or(0);
                problems.push(format!("import circle: {} -> {node}", stack[at..].join(" -> ")));
                return;
            }
            Some(2) => return,
            _ => {}
        }
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        let mut next: Vec<&String> =
            edges.get(node).map(|s| s.iter().collect()).unwrap_or_default();
        next.sort();
        for n in next {
            visit(n, edges, state, stack, problems);
        }
        stack.pop();
        state.insert(node.to_string(), 2);
    }
    let mut state = HashMap::new();
    let mut nodes: Vec<&String> = edges.keys().collect();
    nodes.sort();
    for node in nodes {
        visit(node, &edges, &mut state, &mut Vec::new(), &mut problems);
    }
    assert!(modules.len() > 40, "expected the library's module files, found {}", modules.len());
    assert!(problems.is_empty(), "imports that do not run downward:\n{}", problems.join("\n"));
}

/// The admin listener holds no state of its own and knows no room rule: each handler makes one
/// `Core::admin_*` call through `Shared::timed_core` (or, for the connection listing, through
/// `Shared::timed_connections` / `timed_connection`, which give the core read-only and add the
/// transport's figures), and the file keeps no lock, static or cell.
#[test]
fn admin_listener_only_calls_the_core() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = fs::read_to_string(root.join("src/server/admin.rs")).unwrap();
    let code: String = without_comments(&text);
    let calls = code.matches("timed_core(").count();
    assert!(calls >= 10, "expected a timed_core call per operator route, found {calls}");
    // The connection listing's two entry points: each a read-only core query.
    let listings = code.matches("timed_connections(").count();
    let single = code.matches("timed_connection(").count();
    assert_eq!((listings, single), (1, 1), "one call each for GET /v1/connections[/{{id}}]");
    let shared = without_comments(&fs::read_to_string(root.join("src/server/shared.rs")).unwrap());
    for entry in ["fn timed_connections(", "fn timed_connection("] {
        let at = shared.find(entry).unwrap_or_else(|| panic!("shared.rs lacks `{entry}`"));
        let signature = &shared[at..at + shared[at..].find('{').unwrap()];
        assert!(
            signature.contains("FnOnce(&Core)"),
            "`{entry}` must give its query the core read-only: {signature}"
        );
    }
    let calls = calls + listings + single;
    // The core is the closure's `c` in every handler (`|c, now| c.admin_create_room(..)`).
    let mut core_calls = 0;
    for (pos, _) in code.match_indices("c.") {
        let before = code[..pos].chars().next_back().unwrap_or(' ');
        if before.is_ascii_alphanumeric() || before == '_' || before == '.' {
            continue;
        }
        let name: String = code[pos + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !code[pos + 2 + name.len()..].starts_with('(') {
            continue;
        }
        assert!(
            name.starts_with("admin_"),
            "src/server/admin.rs calls Core::{name}: only admin_* operations"
        );
        core_calls += 1;
    }
    assert_eq!(core_calls, calls, "one core operation per timed_core call");
    for word in [
        "Mutex",
        "RwLock",
        "static mut",
        "thread_local",
        "OnceLock",
        "RefCell",
        "crate::core::room",
    ] {
        assert!(!code.contains(word), "src/server/admin.rs holds state or room rules: `{word}`");
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
    for file in &files {
        let lines = fs::read_to_string(file).unwrap().lines().count();
        assert!(lines > 20, "{} is (nearly) empty", file.display());
    }
    let code = assert_none_named(&files, &forbidden, "the load runner must not know the transport");
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
