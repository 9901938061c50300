//! The `huddle serve` and `huddle netsim` commands as an operator meets them: the real binary,
//! its exit codes, its one-line errors, its configuration check and its start-up log.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_huddle");

/// Kills the child on drop, so that a failing test leaves no process behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `huddle serve` with the certificates in `certs`, a fixed log level and no admin token from
/// the test's environment.
fn serve(certs: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .arg("--certs-dir")
        .arg(certs)
        .env_remove("HUDDLE_ADMIN_TOKEN")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    command
}

/// Runs a command that must end by itself (it is killed after 30 s).
fn finish(mut command: Command) -> Output {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr).lines().map(str::to_string).collect()
}

/// Checks that a command failed as a user error: exit code 1 and one line on stderr, saying
/// `error: ...`, no backtrace.
fn one_line_error(out: &Output) -> String {
    let lines = stderr_lines(out);
    assert_eq!(out.status.code(), Some(1), "{lines:?}");
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
    assert!(lines[0].starts_with("error: "), "{lines:?}");
    lines[0].clone()
}

/// Reads a stream's lines on a thread, into a channel.
fn line_reader(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn a_port_in_use_is_one_line_and_exit_1_even_with_backtraces_on() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut command = serve(dir.path());
    command.args(["--listen", &addr.to_string()]).env("RUST_BACKTRACE", "1");
    let line = one_line_error(&finish(command));
    assert!(line.contains(&addr.to_string()) && line.contains("in use"), "{line}");
}

#[test]
fn cluster_needs_the_cluster_feature_and_a_reachable_nats() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for check in [false, true] {
        let mut command = serve(dir.path());
        command.args(["--listen", "127.0.0.1:0", "--cluster"]);
        command.arg(format!("nats://127.0.0.1:{closed}"));
        if check {
            command.arg("--check-config");
        }
        let out = finish(command);
        if cfg!(feature = "cluster") && check {
            assert!(out.status.success(), "{:?}", stderr_lines(&out));
            continue;
        }
        let line = one_line_error(&out);
        let want = if cfg!(feature = "cluster") { "NATS" } else { "--features cluster" };
        assert!(line.contains(want), "check {check}: {line}");
    }
}

#[test]
fn a_key_that_does_not_match_its_certificate_names_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    huddle::certs::ensure_dev_certs(&a).unwrap();
    huddle::certs::ensure_dev_certs(&b).unwrap();
    let cert = a.join(huddle::certs::CERT_FILE);
    let key = b.join(huddle::certs::KEY_FILE);
    for check in [false, true] {
        let mut command = serve(&a);
        command.args(["--listen", "127.0.0.1:0", "--cert"]).arg(&cert).arg("--key").arg(&key);
        if check {
            command.arg("--check-config");
        }
        let line = one_line_error(&finish(command));
        let (c, k) = (cert.display().to_string(), key.display().to_string());
        assert!(line.contains(&c) && line.contains(&k), "check {check}: {line}");
        assert!(line.contains("does not match"), "{line}");
    }
}

#[test]
fn check_config_exits_0_for_a_good_configuration_and_1_with_the_reason_for_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let path = dir.path().join("huddle.toml");
    std::fs::write(&path, "[transport]\nidle_timeout_s = 5\n").unwrap();
    let mut good = serve(&certs);
    good.arg("--check-config").arg("--config").arg(&path);
    let out = finish(good);
    assert_eq!(out.status.code(), Some(0), "{:?}", stderr_lines(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().next(), Some("configuration ok"), "{stdout}");
    assert!(!certs.exists(), "a check writes no certificate or secret");

    let bad = [
        ("[transport]\ncongestion = \"fast\"\n", "fast"),
        (
            "[transport]\nidle_timout_s = 5\n",
            "huddle.toml:2:1: not a valid configuration: unknown field `idle_timout_s`",
        ),
        ("[admin]\nlisten = \"127.0.0.1:0\"\n", "bearer token"),
        ("[[token_keys]]\nid = \"k1\"\nsecret_hex = \"zz\"\n", "k1"),
        ("[log]\nformat = \"xml\"\n", "xml"),
    ];
    for (text, says) in bad {
        std::fs::write(&path, text).unwrap();
        let mut command = serve(&certs);
        command.arg("--check-config").arg("--config").arg(&path);
        let line = one_line_error(&finish(command));
        assert!(line.contains(says), "{text:?}: {line}");
    }
}

#[test]
fn print_config_prints_the_effective_configuration_without_its_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huddle.toml");
    let secret = "00112233445566778899aabbccddeeff";
    let text = format!(
        "[[token_keys]]\nid = \"k1\"\nsecret_hex = \"{secret}\"\n\n[limits]\nrooms_per_user = 7\n"
    );
    std::fs::write(&path, text).unwrap();
    let admin_token = "admin-secret-0123456789";
    let mut command = serve(dir.path());
    command
        .arg("--print-config")
        .arg("--config")
        .arg(&path)
        .args(["--listen", "127.0.0.1:7999", "--admin-listen", "127.0.0.1:9999"])
        .env("HUDDLE_ADMIN_TOKEN", admin_token);
    let out = finish(command);
    assert_eq!(out.status.code(), Some(0), "{:?}", stderr_lines(&out));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(!printed.contains(secret) && !printed.contains(admin_token), "{printed}");
    // It reads back as a configuration: defaults, the file and the flags, secrets redacted.
    let back_path = dir.path().join("printed.toml");
    std::fs::write(&back_path, &printed).unwrap();
    let back = huddle::server::ServerConfig::from_file(&back_path).expect(&printed);
    assert_eq!(back.listen, "127.0.0.1:7999".parse::<SocketAddr>().unwrap());
    assert_eq!(back.admin.listen, Some("127.0.0.1:9999".parse().unwrap()));
    assert_eq!(back.limits.rooms_per_user, 7);
    assert_eq!(back.limits.members_per_room, huddle::core::Limits::default().members_per_room);
    assert_eq!(back.token_keys[0].secret_hex, huddle::server::config::REDACTED);
    assert_eq!(back.admin.token.as_deref(), Some(huddle::server::config::REDACTED));
}

/// Waits for a JSON log line that `matches`, up to 10 s.
fn wait_for_line(
    lines: &mpsc::Receiver<String>,
    seen: &mut Vec<Value>,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    if let Some(v) = seen.iter().find(|v| matches(v)) {
        return v.clone();
    }
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).unwrap_or_else(|_| panic!("no such line in {seen:#?}"));
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        seen.push(v.clone());
        if matches(&v) {
            return v;
        }
    }
}

#[tokio::test]
async fn serve_logs_its_memory_ceiling_and_one_line_per_login_with_user_address_and_result() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = serve(dir.path());
    command
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Guard(command.spawn().unwrap());
    let stdout = line_reader(child.0.stdout.take().unwrap());
    let stderr = line_reader(child.0.stderr.take().unwrap());
    let first = stdout.recv_timeout(Duration::from_secs(20)).expect("the listening line");
    let addr: SocketAddr = first
        .strip_prefix("huddle listening on ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{first}"));
    let mut seen = Vec::new();
    let ceiling = wait_for_line(&stderr, &mut seen, |v| {
        v["fields"]["message"] == "memory ceiling (SECURITY.md)"
    });
    let expected = huddle::server::ServerConfig::default().connection_memory_ceiling();
    assert_eq!(ceiling["level"], "INFO");
    assert_eq!(ceiling["fields"]["per_connection_bytes"], expected);

    let ca = std::fs::read(dir.path().join(huddle::certs::CA_FILE)).unwrap();
    let secret = huddle::certs::read_token_secret(&dir.path().join("token.secret")).unwrap();
    let mut keys = huddle::auth::KeySet::new();
    keys.insert(huddle::certs::DEV_KEY_ID, &secret);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let good = keys.mint(huddle::certs::DEV_KEY_ID, "alice", now, now + 600).unwrap();
    let login = |user: &str, token: &str| {
        let mut cfg = huddle::client::ClientConfig::new(addr, user, token);
        cfg.trust_pem(&ca).unwrap();
        cfg.reconnect_for = Duration::ZERO;
        huddle::client::Client::connect(cfg)
    };
    let alice = login("alice", &good).await.expect("a good login");
    // The right shape and key id, signed with another secret.
    let mut other = huddle::auth::KeySet::new();
    other.insert(huddle::certs::DEV_KEY_ID, &[7; 32]);
    let forged = other.mint(huddle::certs::DEV_KEY_ID, "bob", now, now + 600).unwrap();
    assert!(login("bob", &forged).await.is_err());
    assert!(login("not valid!", &good).await.is_err());

    let ok = wait_for_line(&stderr, &mut seen, |v| v["fields"]["message"] == "logged in");
    assert_eq!(
        (&ok["level"], &ok["fields"]["user"], &ok["fields"]["result"]),
        (&"INFO".into(), &"alice".into(), &"ok".into())
    );
    assert!(ok["fields"]["remote"].as_str().is_some_and(|r| r.starts_with("127.0.0.1:")), "{ok}");
    let refused: Vec<Value> = (0..2)
        .map(|i| {
            let v = wait_for_line(&stderr, &mut seen, |v| {
                v["fields"]["message"] == "login refused"
                    && (i == 0) == (v["fields"]["user"] == "bob")
            });
            assert_eq!(v["level"], "INFO", "{v}");
            assert!(v["fields"]["remote"].is_string(), "{v}");
            v
        })
        .collect();
    assert_eq!(refused[0]["fields"]["result"], "token_invalid", "{}", refused[0]);
    assert_eq!(refused[1]["fields"]["result"], "invalid_user_id", "{}", refused[1]);
    assert!(refused[1]["fields"]["user"].as_str().unwrap().contains("not valid!"));
    drop(alice);
    let _ = child.0.kill();
    let _ = child.0.wait();
    while let Ok(line) = stderr.recv_timeout(Duration::from_secs(2)) {
        seen.push(serde_json::from_str(&line).unwrap());
    }
    assert!(
        !seen.iter().any(|v| v["level"] == "WARN"),
        "no warning about an ordinary login failure: {seen:#?}"
    );
}

#[test]
fn netsim_with_duration_0_runs_until_interrupted() {
    let mut child = Guard(
        Command::new(BIN)
            .args(["netsim", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9"])
            .args(["--duration", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = line_reader(child.0.stdout.take().unwrap());
    let first = stdout.recv_timeout(Duration::from_secs(20)).expect("the listening line");
    assert!(first.starts_with("netsim listening on "), "{first}");
    thread::sleep(Duration::from_millis(1500));
    assert!(child.0.try_wait().unwrap().is_none(), "netsim --duration 0 stopped by itself");
    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let mut status = None;
    for _ in 0..100 {
        status = child.0.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

#[test]
fn version_names_the_commit_and_completions_cover_the_subcommands() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    let version = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    let commit = version.trim().rsplit("commit ").next().unwrap().trim_end_matches(')');
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "huddle --version: {version}"
    );
    assert!(version.starts_with(&format!("huddle {}", env!("CARGO_PKG_VERSION"))), "{version}");
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN).args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "completions {shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for sub in ["serve", "client", "token", "netsim", "load"] {
            assert!(script.contains(sub), "the {shell} completions lack {sub}");
        }
    }
}
