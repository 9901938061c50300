//! Login JWTs minted by an independent library (PyJWT, keys made by Python's `cryptography`)
//! against a real server configured with a secret, a PEM public key and a JWKS file; and
//! `huddle token --jwt` checked by PyJWT.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use huddle::client::{Client, ClientConfig, ClientError};
use huddle::server::config::{JwtPublicKey, ServerConfig, TokenKey};
use huddle::wire::ErrorCode;

const BIN: &str = env!("CARGO_BIN_EXE_huddle");
const HS_SECRET_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Runs a Python script with the arguments; its stdout, trimmed. PyJWT missing is a failure.
fn python(script: &str, args: &[&str]) -> String {
    let out =
        Command::new("python3").arg("-c").arg(script).args(args).output().unwrap_or_else(|e| {
            panic!("python3 is needed for this test ({e}); then pip install 'PyJWT[crypto]'")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'jwt'") || stderr.contains("No module named 'cryptography'")
    {
        panic!("PyJWT is not installed: pip install 'PyJWT[crypto]'\n{stderr}");
    }
    assert!(out.status.success(), "python failed: {stderr}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Makes the keys: `ec_a` (configured as PEM, kid `ec1`), `ec_b` and `rsa` (in the JWKS file,
/// kids `ec2` and `rsa1`) and `ec_stranger` (configured nowhere); `NAME.pem` is the private key,
/// `NAME.pub.pem` the public one.
const MAKE_KEYS: &str = r#"
import json, sys, jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives import serialization as s
d = sys.argv[1]
keys = {"ec_a": ec.generate_private_key(ec.SECP256R1()),
        "ec_b": ec.generate_private_key(ec.SECP256R1()),
        "ec_stranger": ec.generate_private_key(ec.SECP256R1()),
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048)}
for name, k in keys.items():
    open(f"{d}/{name}.pem", "wb").write(k.private_bytes(
        s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
    open(f"{d}/{name}.pub.pem", "wb").write(k.public_key().public_bytes(
        s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))
ec2 = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(keys["ec_b"].public_key()))
rsa1 = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(keys["rsa"].public_key()))
ec2.update(kid="ec2", use="sig", alg="ES256")
rsa1.update(kid="rsa1")
open(f"{d}/jwks.json", "w").write(json.dumps({"keys": [ec2, rsa1]}))
"#;

/// Prints a token: `ALG KEY KID CLAIMS_JSON`. KEY is a private key file, or hex for HS256; KID
/// `-` for none. `HS256-PEM` signs with HMAC keyed by the text of a PEM file (the classic
/// confusion, which PyJWT itself refuses to produce, so it is built by hand); `none` is unsigned.
const MINT: &str = r#"
import base64, hashlib, hmac, json, sys, jwt
alg, key, kid, claims = sys.argv[1:5]
claims = json.loads(claims)
headers = {} if kid == "-" else {"kid": kid}
if alg == "HS256-PEM":
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    header = dict(alg="HS256", typ="JWT", **headers)
    signed = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    tag = hmac.new(open(key, "rb").read(), signed.encode(), hashlib.sha256).digest()
    print(signed + "." + b64(tag))
elif alg == "none":
    print(jwt.encode(claims, None, algorithm="none", headers=headers))
else:
    secret = bytes.fromhex(key) if alg == "HS256" else open(key).read()
    print(jwt.encode(claims, secret, algorithm=alg, headers=headers))
"#;

/// A folder of keys and a server configured with all of them.
struct Setup {
    dir: tempfile::TempDir,
    config: ServerConfig,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        python(MAKE_KEYS, &[dir.path().to_str().unwrap()]);
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            certs_dir: dir.path().join("certs"),
            token_keys: vec![TokenKey { id: "hs1".into(), secret_hex: HS_SECRET_HEX.into() }],
            jwt_public_keys: vec![JwtPublicKey {
                kid: "ec1".into(),
                alg: "ES256".into(),
                pem_file: dir.path().join("ec_a.pub.pem"),
            }],
            jwks_file: Some(dir.path().join("jwks.json")),
            ..Default::default()
        };
        Setup { dir, config }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A token minted by PyJWT (see [`MINT`]); `key` is a file in the folder, or hex for HS256.
    fn mint(&self, alg: &str, key: &str, kid: &str, claims: serde_json::Value) -> String {
        let key = if alg == "HS256" { key.to_string() } else { path_str(&self.path(key)) };
        python(MINT, &[alg, &key, kid, &claims.to_string()])
    }

    async fn server(&self) -> TestServer {
        let keys = huddle::server::load_keys(&self.config).unwrap();
        TestServer::start_config(self.config.clone(), keys).await
    }
}

fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// Claims for `user` issued now and valid for an hour.
fn claims(user: &str) -> serde_json::Value {
    let now = now_s();
    serde_json::json!({ "sub": user, "iat": now, "exp": now + 3600 })
}

async fn login(server: &TestServer, user: &str, token: &str) -> Result<Client, ClientError> {
    let mut cfg = ClientConfig::new(server.addr, user, token);
    cfg.roots = vec![server.ca.clone()];
    Client::connect(cfg).await
}

fn code(r: Result<Client, ClientError>) -> ErrorCode {
    match r {
        Ok(_) => panic!("login succeeded"),
        Err(e) => e.code().unwrap_or_else(|| panic!("not a server error: {e}")),
    }
}

#[tokio::test]
async fn pyjwt_tokens_of_every_algorithm_log_in() {
    let s = Setup::new();
    let server = s.server().await;
    let c = claims("alice");
    let exp = c["exp"].as_u64().unwrap();
    let tokens = [
        ("HS256 with kid", s.mint("HS256", HS_SECRET_HEX, "hs1", c.clone())),
        ("HS256 without kid", s.mint("HS256", HS_SECRET_HEX, "-", c.clone())),
        ("ES256 from a PEM file", s.mint("ES256", "ec_a.pem", "ec1", c.clone())),
        ("ES256 from the JWKS", s.mint("ES256", "ec_b.pem", "ec2", c.clone())),
        ("ES256 without kid", s.mint("ES256", "ec_b.pem", "-", c.clone())),
        ("RS256 from the JWKS", s.mint("RS256", "rsa.pem", "rsa1", c.clone())),
    ];
    for (what, token) in tokens {
        let client = login(&server, "alice", &token)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e} ({token})"));
        let expires = client.session().token_expires_at_s;
        assert_eq!(expires, exp, "{what}");
        client.shutdown().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn bad_pyjwt_tokens_are_refused_with_their_codes() {
    let s = Setup::new();
    let server = s.server().await;
    let now = now_s();
    let expired = serde_json::json!({ "sub": "alice", "iat": now - 7200, "exp": now - 3600 });
    let ahead = serde_json::json!({ "sub": "alice", "iat": now + 3600, "exp": now + 7200 });
    let no_exp = serde_json::json!({ "sub": "alice", "iat": now });
    let cases = [
        ("expired", s.mint("RS256", "rsa.pem", "rsa1", expired.clone()), ErrorCode::TokenExpired),
        ("expired HS256", s.mint("HS256", HS_SECRET_HEX, "hs1", expired), ErrorCode::TokenExpired),
        (
            "issued in the future",
            s.mint("ES256", "ec_a.pem", "ec1", ahead),
            ErrorCode::TokenNotYetValid,
        ),
        ("without exp", s.mint("ES256", "ec_a.pem", "ec1", no_exp), ErrorCode::TokenInvalid),
        (
            "for another user",
            s.mint("ES256", "ec_a.pem", "ec1", claims("bob")),
            ErrorCode::TokenInvalid,
        ),
        (
            "wrong key, its kid",
            s.mint("ES256", "ec_stranger.pem", "ec1", claims("alice")),
            ErrorCode::TokenInvalid,
        ),
        (
            "wrong key, no kid",
            s.mint("ES256", "ec_stranger.pem", "-", claims("alice")),
            ErrorCode::TokenInvalid,
        ),
        (
            "another key's kid",
            s.mint("ES256", "ec_b.pem", "ec1", claims("alice")),
            ErrorCode::TokenInvalid,
        ),
        (
            "wrong secret",
            s.mint("HS256", &"ab".repeat(32), "hs1", claims("alice")),
            ErrorCode::TokenInvalid,
        ),
        (
            "RS256 naming an EC key",
            s.mint("RS256", "rsa.pem", "ec1", claims("alice")),
            ErrorCode::TokenInvalid,
        ),
        ("alg none", s.mint("none", "-", "-", claims("alice")), ErrorCode::TokenInvalid),
        ("alg none with kid", s.mint("none", "-", "hs1", claims("alice")), ErrorCode::TokenInvalid),
        (
            "HS256 keyed by the RSA public PEM",
            s.mint("HS256-PEM", "rsa.pub.pem", "rsa1", claims("alice")),
            ErrorCode::TokenInvalid,
        ),
        (
            "HS256 keyed by the EC public PEM",
            s.mint("HS256-PEM", "ec_a.pub.pem", "ec1", claims("alice")),
            ErrorCode::TokenInvalid,
        ),
        (
            "the same without kid",
            s.mint("HS256-PEM", "rsa.pub.pem", "-", claims("alice")),
            ErrorCode::TokenInvalid,
        ),
    ];
    for (what, token, want) in cases {
        assert_eq!(code(login(&server, "alice", &token).await), want, "{what}: {token}");
    }
    let good = s.mint("RS256", "rsa.pem", "rsa1", claims("alice"));
    let (signed, _) = good.rsplit_once('.').unwrap();
    assert_eq!(code(login(&server, "alice", &format!("{signed}.")).await), ErrorCode::TokenInvalid);
    let cut = &good[..good.len() - 1];
    assert_eq!(code(login(&server, "alice", cut).await), ErrorCode::TokenMalformed);
    let long = format!("{good}{}", "A".repeat(huddle::auth::MAX_TOKEN_LEN));
    assert_eq!(code(login(&server, "alice", &long).await), ErrorCode::TokenTooLong);
    server.stop().await;
}

#[tokio::test]
async fn renew_token_takes_a_pyjwt_token() {
    let s = Setup::new();
    let server = s.server().await;
    let client = login(&server, "alice", &s.mint("HS256", HS_SECRET_HEX, "hs1", claims("alice")))
        .await
        .unwrap();
    let now = now_s();
    let later = serde_json::json!({ "sub": "alice", "iat": now, "exp": now + 7200 });
    let renewed = s.mint("RS256", "rsa.pem", "rsa1", later);
    assert_eq!(client.renew_token(&renewed).await.unwrap(), now + 7200);
    assert_eq!(client.session().token_expires_at_s, now + 7200);
    let bobs = s.mint("ES256", "ec_a.pem", "ec1", claims("bob"));
    let refused = client.renew_token(&bobs).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::TokenInvalid), "{refused}");
    assert_eq!(
        client.session().token_expires_at_s,
        now + 7200,
        "a refused renewal changes nothing"
    );
    client.shutdown().await;
    server.stop().await;
}

#[tokio::test]
async fn huddle_token_jwt_verifies_with_pyjwt_and_logs_in() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).arg("--dir").arg(&certs).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_string(), out.stderr)
    };
    let (ok, _, stderr) = run(&["token", "--user", "alice", "--jwt"]);
    assert!(!ok, "no secret yet: refused");
    assert!(String::from_utf8_lossy(&stderr).contains("no token secret"));
    assert!(run(&["certs"]).0);
    let (ok, _, _) = run(&["token", "--user", "bad user", "--jwt"]);
    assert!(!ok, "an invalid user id is refused");
    let (ok, token, _) = run(&["token", "--user", "alice", "--jwt", "--ttl", "600"]);
    assert!(ok);
    let secret = std::fs::read_to_string(certs.join(huddle::certs::TOKEN_SECRET_FILE)).unwrap();
    let checked = python(
        r#"
import json, sys, jwt
token, secret = sys.argv[1], bytes.fromhex(sys.argv[2].strip())
claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "iat", "sub"]})
print(json.dumps([jwt.get_unverified_header(token)["kid"], claims["sub"], claims["exp"] - claims["iat"]]))
"#,
        &[&token, &secret],
    );
    assert_eq!(checked, r#"["dev", "alice", 600]"#);

    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        certs_dir: certs.clone(),
        ..Default::default()
    };
    let server =
        TestServer::start_config(config.clone(), huddle::server::load_keys(&config).unwrap()).await;
    login(&server, "alice", &token).await.unwrap().shutdown().await;
    server.stop().await;
}

#[test]
fn check_config_reports_the_jwt_keys_and_names_a_bad_key_file() {
    let s = Setup::new();
    let path = s.path("huddle.toml");
    let toml = |jwks: &Path| {
        format!(
            "certs_dir = {:?}\njwks_file = {:?}\njwt_audience = \"huddle\"\n\n[[token_keys]]\n\
             id = \"hs1\"\nsecret_hex = \"{HS_SECRET_HEX}\"\n\n[[jwt_public_keys]]\nkid = \"ec1\"\n\
             alg = \"ES256\"\npem_file = {:?}\n",
            path_str(&s.path("certs")),
            path_str(jwks),
            path_str(&s.path("ec_a.pub.pem")),
        )
    };
    let check = || {
        Command::new(BIN).args(["serve", "--check-config", "--config"]).arg(&path).output().unwrap()
    };
    std::fs::write(&path, toml(&s.path("jwks.json"))).unwrap();
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for line in [
        "configuration ok",
        "token key hs1: hd1+HS256",
        "token key ec1: ES256",
        "token key ec2: ES256",
        "token key rsa1: RS256",
        "jwt audience: huddle",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line:?} missing from {stdout}");
    }

    for (name, text, says) in [
        ("empty.json", "{\"keys\": []}", "no keys"),
        ("bad.json", "{\"keys\": 7}", "not a JSON Web Key Set"),
        ("missing.json", "", "No such file"),
    ] {
        let jwks = s.path(name);
        if !text.is_empty() {
            std::fs::write(&jwks, text).unwrap();
        }
        std::fs::write(&path, toml(&jwks)).unwrap();
        let out = check();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(&path_str(&jwks)) && stderr.contains(says), "{name}: {stderr}");
    }
    let text = toml(&s.path("jwks.json")).replace("ec_a.pub.pem", "rsa.pub.pem");
    std::fs::write(&path, text).unwrap();
    let stderr = String::from_utf8_lossy(&check().stderr).to_string();
    assert!(stderr.contains("rsa.pub.pem") && stderr.contains("P-256"), "{stderr}");
}
