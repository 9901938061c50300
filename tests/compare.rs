//! `huddle load --backend`: the flags in both builds, and (feature `compare`) short runs against
//! the Redis and NATS servers of `benches/compare/start.sh` when they are up.

use clap::Parser;
use huddle::load::{Backend, LoadArgs, LoadConfig};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    load: LoadArgs,
}

fn config(args: &[&str]) -> Result<LoadConfig, clap::Error> {
    let argv = std::iter::once("load").chain(args.iter().copied());
    Cli::try_parse_from(argv).map(|c| LoadConfig::from(c.load))
}

#[test]
fn backend_flags_parse_and_validate() {
    let huddle = config(&["--spawn-server"]).unwrap();
    assert_eq!(huddle.backend, Backend::Huddle);
    huddle.validate().unwrap();
    assert!(config(&["--backend", "kafka", "--server", "127.0.0.1:1"]).is_err());
    // Redis and NATS are external servers: no --spawn-server, no Huddle-only options.
    for bad in [
        &["--backend", "redis", "--spawn-server"][..],
        &["--backend", "nats"],
        &["--backend", "nats", "--server", "127.0.0.1:1", "--netsim", "loss=0.1"],
        &["--backend", "redis", "--server", "127.0.0.1:1", "--connections-only"],
        &["--spawn-server", "--plaintext"],
    ] {
        let err = config(bad).unwrap().validate().unwrap_err().to_string();
        assert!(!err.is_empty(), "{bad:?}");
    }
    let redis = config(&["--backend", "redis", "--plaintext", "--server", "127.0.0.1:1"]).unwrap();
    assert_eq!((redis.backend, redis.plaintext), (Backend::Redis, true));
    let nats = config(&["--backend", "nats", "--server", "127.0.0.1:1"]).unwrap();
    assert_eq!((nats.backend, nats.plaintext), (Backend::Nats, false));
    for cfg in [redis, nats] {
        let res = cfg.validate();
        if cfg!(feature = "compare") {
            res.unwrap();
        } else {
            let err = res.unwrap_err().to_string();
            assert!(err.contains("`compare` feature"), "{err}");
        }
    }
}

#[cfg(feature = "compare")]
mod live {
    use std::collections::HashMap;
    use std::io::Write;
    use std::net::{SocketAddr, TcpStream};
    use std::path::PathBuf;
    use std::time::Duration;

    use huddle::load::{run_with, Backend, LoadConfig};

    /// `start.sh`'s `env` file (STATE, default /tmp/huddle-compare), or `None` when the servers
    /// are not up (no file, or nothing listening where it says).
    fn servers() -> Option<HashMap<String, String>> {
        let state = std::env::var("STATE").unwrap_or_else(|_| "/tmp/huddle-compare".into());
        let text = std::fs::read_to_string(PathBuf::from(&state).join("env")).ok()?;
        let env: HashMap<String, String> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for key in ["REDIS_ADDR", "REDIS_TLS_ADDR", "NATS_ADDR", "NATS_TLS_ADDR"] {
            let addr: SocketAddr = env.get(key)?.parse().ok()?;
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        }
        Some(env)
    }

    /// Runs 2 rooms of 5 members, each member also in the other room when `rooms_per_member`
    /// is 2, and checks every count.
    async fn run(backend: Backend, tls: bool, rooms_per_member: usize) {
        let Some(env) = servers() else {
            // Straight to stderr, past the test harness's capture, so that a skip is seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {backend:?} tls={tls}: Redis and NATS are not running \
                 (benches/compare/start.sh starts them)"
            );
            return;
        };
        let (addr, pid) = match (backend, tls) {
            (Backend::Redis, false) => ("REDIS_ADDR", "REDIS_PID"),
            (Backend::Redis, true) => ("REDIS_TLS_ADDR", "REDIS_PID"),
            (Backend::Nats, false) => ("NATS_ADDR", "NATS_PID"),
            _ => ("NATS_TLS_ADDR", "NATS_TLS_PID"),
        };
        let cfg = LoadConfig {
            backend,
            plaintext: !tls,
            server: Some(env[addr].parse().unwrap()),
            server_pid: env[pid].parse().ok(),
            certs_dir: env["CERTS_DIR"].clone().into(),
            rooms: 2,
            members: 5,
            rooms_per_member,
            publishers_per_room: 2,
            rate: 40.0,
            warmup_s: 0.5,
            duration_s: 1.0,
            drain_s: 3.0,
            ..LoadConfig::default()
        };
        let s = run_with(cfg).await.unwrap();
        let ctx = s.table();
        assert_eq!((s.connections, s.connect_failures), (10, 0), "{ctx}");
        assert_eq!(s.sent, 120, "2 rooms x 40/s x 1.5 s: {ctx}");
        assert_eq!((s.acked, s.send_errors), (s.sent, 0), "{ctx}");
        // Each message reaches every other member of its room: its own 5 and, with 2 rooms per
        // member, the other room's 5.
        let receivers = 5 * rooms_per_member as u64 - 1;
        assert_eq!(s.expected_deliveries, s.acked * receivers, "{ctx}");
        assert_eq!(s.deliveries, s.expected_deliveries, "{ctx}");
        assert_eq!(
            (s.lost, s.duplicates, s.out_of_order, s.foreign_messages),
            (0, 0, 0, 0),
            "{ctx}"
        );
        // Redis sends a publisher its own messages back; NATS connections ask not to get them.
        let echoes = if backend == Backend::Redis { s.sent } else { 0 };
        assert_eq!(s.own_echoes, echoes, "{ctx}");
        assert!(s.measured_deliveries > 0 && s.server_cpu_s.is_some(), "{ctx}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_plaintext_and_tls() {
        run(Backend::Redis, false, 1).await;
        run(Backend::Redis, true, 1).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nats_plaintext_and_tls() {
        run(Backend::Nats, false, 1).await;
        run(Backend::Nats, true, 1).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_and_nats_members_in_two_rooms() {
        run(Backend::Redis, true, 2).await;
        run(Backend::Nats, true, 2).await;
    }
}
