//! Login tokens: the server's own `hd1:` format and standard JWTs (HS256, ES256, RS256).
//!
//! An `hd1:` token is the ASCII string `hd1:{kid}:{user_id}:{iat}:{exp}:{sig}`, where `sig` is
//! the lowercase hex HMAC-SHA256 of `hd1:{kid}:{user_id}:{iat}:{exp}` under the key named `kid`.
//! A JWT (three base64url parts joined by `.`) is signed with HS256 under one of the same secrets
//! (its `kid` is the key id), or with ES256 or RS256 under a configured public key; its `sub` is
//! the user id, `exp` and `iat` are required. docs/PROTOCOL.md section 5 lists every check.
//! This module is pure: the current time is an argument, and keys arrive as bytes, not files.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use ring::hmac;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::wire::ErrorCode;

/// The longest token the server reads (room for an RS256 JWT under a 4096-bit key, with a kid
/// and a few claims).
pub const MAX_TOKEN_LEN: usize = 2048;

/// How far in the future an issued-at (or a JWT's not-before) may be: clock skew between the
/// minting host and the server.
pub const MAX_CLOCK_SKEW_S: u64 = 60;

const PREFIX: &str = "hd1";

/// The signature algorithms a JWT may name; any other `alg` (`none` included) is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtAlg {
    /// HMAC-SHA256 under a shared secret (the `token_keys`).
    HS256,
    /// ECDSA on P-256 with SHA-256 under a public key.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 under a public key (2048 bits or more).
    RS256,
}

impl JwtAlg {
    /// The JOSE name (`HS256`, `ES256`, `RS256`).
    pub fn name(self) -> &'static str {
        match self {
            JwtAlg::HS256 => "HS256",
            JwtAlg::ES256 => "ES256",
            JwtAlg::RS256 => "RS256",
        }
    }

    /// The algorithm of a JOSE name, exactly as spelled; `None` for any other.
    pub fn from_name(name: &str) -> Option<JwtAlg> {
        [JwtAlg::HS256, JwtAlg::ES256, JwtAlg::RS256].into_iter().find(|a| a.name() == name)
    }

    fn algorithm(self) -> Algorithm {
        match self {
            JwtAlg::HS256 => Algorithm::HS256,
            JwtAlg::ES256 => Algorithm::ES256,
            JwtAlg::RS256 => Algorithm::RS256,
        }
    }
}

/// A key that cannot be used to verify tokens.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key id is not 1-128 printable ASCII characters.
    #[error("key id {0:?} is not 1-128 printable ASCII characters")]
    KeyId(String),
    /// Another key already has this id.
    #[error("two keys have the id {0:?}")]
    DuplicateKeyId(String),
    /// A public key for HS256 (which takes a secret, in `token_keys`).
    #[error("key {0}: HS256 takes a secret (token_keys), not a public key")]
    NotPublic(String),
    /// The PEM text is not a public key of the algorithm's type.
    #[error("key {kid}: not a {alg} public key (PEM, SubjectPublicKeyInfo{extra})")]
    Pem {
        /// The key id.
        kid: String,
        /// The algorithm it was given for.
        alg: &'static str,
        /// What else the algorithm needs.
        extra: &'static str,
    },
    /// The JWKS text is not a JSON Web Key Set.
    #[error("not a JSON Web Key Set: {0}")]
    Jwks(String),
    /// A key in the JWKS that this server cannot verify with.
    #[error("key {kid:?}: {reason}")]
    Jwk {
        /// The key's id (empty when it has none).
        kid: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// One verification key.
#[derive(Clone)]
enum Key {
    /// A shared secret: `hd1:` tokens and HS256 JWTs.
    Secret { hmac: hmac::Key, jwt: DecodingKey },
    /// A public key for ES256 or RS256 JWTs only.
    Public { alg: JwtAlg, key: DecodingKey },
}

impl Key {
    fn alg(&self) -> JwtAlg {
        match self {
            Key::Secret { .. } => JwtAlg::HS256,
            Key::Public { alg, .. } => *alg,
        }
    }

    fn decoding(&self) -> &DecodingKey {
        match self {
            Key::Secret { jwt, .. } => jwt,
            Key::Public { key, .. } => key,
        }
    }
}

/// The server's verification keys, by key id: secrets (for `hd1:` tokens and HS256 JWTs) and
/// public keys (for ES256 and RS256 JWTs). Several keys may be active during a rotation. It may
/// also require a JWT audience and issuer.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<(String, Key)>,
    audience: Option<String>,
    issuer: Option<String>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("keys", &self.describe())
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// The key id that signed it.
    pub kid: String,
    /// The user it was minted for.
    pub user_id: String,
    /// Issued-at, Unix seconds.
    pub iat: u64,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

/// Whether a key id is 1-32 characters of `[A-Za-z0-9_-]` (the rule for secrets, whose id
/// appears in `hd1:` tokens).
pub fn valid_key_id(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 32
        && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether a public key's id is 1-128 printable ASCII characters (identity providers' key ids
/// are often longer than a secret's, base64url thumbprints for example).
pub fn valid_public_key_id(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= 128 && kid.bytes().all(|b| b.is_ascii_graphic())
}

impl KeySet {
    /// An empty key set (every token is refused).
    pub fn new() -> KeySet {
        KeySet::default()
    }

    /// Adds (or replaces) a secret. Returns false when the key id is not valid.
    pub fn insert(&mut self, kid: &str, secret: &[u8]) -> bool {
        if !valid_key_id(kid) {
            return false;
        }
        self.keys.retain(|(id, _)| id != kid);
        let key = Key::Secret {
            hmac: hmac::Key::new(hmac::HMAC_SHA256, secret),
            jwt: DecodingKey::from_secret(secret),
        };
        self.keys.push((kid.to_string(), key));
        true
    }

    /// Adds a public key for `alg` (ES256: a P-256 key; RS256: an RSA key) from PEM text, a
    /// `PUBLIC KEY` (SubjectPublicKeyInfo) block or, for RSA, an `RSA PUBLIC KEY` block.
    pub fn insert_public_pem(
        &mut self,
        kid: &str,
        alg: JwtAlg,
        pem: &[u8],
    ) -> Result<(), KeyError> {
        let bad = |extra| KeyError::Pem { kid: kid.to_string(), alg: alg.name(), extra };
        let key = match alg {
            JwtAlg::HS256 => return Err(KeyError::NotPublic(kid.to_string())),
            JwtAlg::ES256 => {
                if !is_p256_spki_pem(pem) {
                    return Err(bad(", curve P-256"));
                }
                DecodingKey::from_ec_pem(pem).map_err(|_| bad(", curve P-256"))?
            }
            JwtAlg::RS256 => DecodingKey::from_rsa_pem(pem).map_err(|_| bad(" or PKCS#1"))?,
        };
        self.insert_public(kid, alg, key)
    }

    /// Adds every key of a JSON Web Key Set (RFC 7517): each needs a `kid`, and is an RSA key
    /// (RS256) or an EC key on P-256 (ES256); a key whose `alg` says otherwise, or of another
    /// type, is an error. Returns the ids added.
    pub fn insert_jwks(&mut self, json: &str) -> Result<Vec<String>, KeyError> {
        let set: JwkSet = serde_json::from_str(json).map_err(|e| KeyError::Jwks(e.to_string()))?;
        let mut added = Vec::new();
        for jwk in &set.keys {
            let kid = jwk.common.key_id.clone().unwrap_or_default();
            let bad = |reason| KeyError::Jwk { kid: kid.clone(), reason };
            if kid.is_empty() {
                return Err(bad("a key needs a kid"));
            }
            let alg = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => JwtAlg::RS256,
                AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                    JwtAlg::ES256
                }
                _ => return Err(bad("only RSA (RS256) and EC P-256 (ES256) keys are accepted")),
            };
            let named = jwk.common.key_algorithm;
            let fits = matches!(
                (named, alg),
                (None, _)
                    | (Some(KeyAlgorithm::RS256), JwtAlg::RS256)
                    | (Some(KeyAlgorithm::ES256), JwtAlg::ES256)
            );
            if !fits {
                return Err(bad("its alg does not match its key type (RS256 or ES256)"));
            }
            if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
                return Err(bad("an encryption key (use: enc) does not verify signatures"));
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|_| bad("not a valid public key"))?;
            self.insert_public(&kid, alg, key)?;
            added.push(kid);
        }
        Ok(added)
    }

    fn insert_public(&mut self, kid: &str, alg: JwtAlg, key: DecodingKey) -> Result<(), KeyError> {
        if !valid_public_key_id(kid) {
            return Err(KeyError::KeyId(kid.to_string()));
        }
        if self.keys.iter().any(|(id, _)| id == kid) {
            return Err(KeyError::DuplicateKeyId(kid.to_string()));
        }
        self.keys.push((kid.to_string(), Key::Public { alg, key }));
        Ok(())
    }

    /// Requires JWTs to carry this `aud` (a string, or an array holding it); `None`: `aud` is
    /// not checked. `hd1:` tokens have no audience.
    pub fn set_audience(&mut self, audience: Option<String>) {
        self.audience = audience;
    }

    /// Requires JWTs to carry this `iss`; `None`: `iss` is not checked.
    pub fn set_issuer(&mut self, issuer: Option<String>) {
        self.issuer = issuer;
    }

    /// Every key as (key id, what it verifies): `hd1+HS256` for a secret, `ES256` or `RS256`
    /// for a public key.
    pub fn describe(&self) -> Vec<(String, &'static str)> {
        let what = |k: &Key| match k {
            Key::Secret { .. } => "hd1+HS256",
            Key::Public { alg, .. } => alg.name(),
        };
        self.keys.iter().map(|(id, k)| (id.clone(), what(k))).collect()
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn find(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|(id, _)| id == kid).map(|(_, k)| k)
    }

    fn secret(&self, kid: &str) -> Option<&hmac::Key> {
        match self.find(kid)? {
            Key::Secret { hmac, .. } => Some(hmac),
            Key::Public { .. } => None,
        }
    }

    /// Mints an `hd1:` token with the secret `kid`, or `None` when there is no such secret.
    pub fn mint(&self, kid: &str, user_id: &str, iat: u64, exp: u64) -> Option<String> {
        let key = self.secret(kid)?;
        let signed = format!("{PREFIX}:{kid}:{user_id}:{iat}:{exp}");
        let tag = hmac::sign(key, signed.as_bytes());
        Some(format!("{signed}:{}", hex::encode(tag.as_ref())))
    }

    /// Mints an HS256 JWT (`kid` in its header; `sub`, `iat`, `exp` and, when set, the required
    /// `aud` and `iss`) with the secret `kid`, or `None` when there is no such secret.
    pub fn mint_jwt(&self, kid: &str, user_id: &str, iat: u64, exp: u64) -> Option<String> {
        let key = self.secret(kid)?;
        let header = serde_json::json!({ "alg": "HS256", "typ": "JWT", "kid": kid });
        let mut claims = serde_json::json!({ "sub": user_id, "iat": iat, "exp": exp });
        if let Some(aud) = &self.audience {
            claims["aud"] = aud.as_str().into();
        }
        if let Some(iss) = &self.issuer {
            claims["iss"] = iss.as_str().into();
        }
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let tag = hmac::sign(key, signed.as_bytes());
        Some(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref())))
    }

    /// Checks a token presented by `user_id` at `now_s` (Unix seconds): a JWT when it is three
    /// base64url parts joined by `.`, else an `hd1:` token.
    ///
    /// Each way a token can be wrong has its code: over [`MAX_TOKEN_LEN`] is `token_too_long`;
    /// not the shape of either format is `token_malformed`; an unknown key, an algorithm the key
    /// is not for, a signature that does not verify, a token of another user or a missing or
    /// wrong claim is `token_invalid`; an issued-at (or not-before) more than
    /// [`MAX_CLOCK_SKEW_S`] ahead is `token_not_yet_valid`; a passed expiry is `token_expired`.
    /// The signature is checked before anything it covers is believed.
    pub fn verify(&self, token: &str, user_id: &str, now_s: u64) -> Result<Claims, ErrorCode> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(ErrorCode::TokenTooLong);
        }
        if looks_like_jwt(token) {
            return self.verify_jwt(token, user_id, now_s);
        }
        let parsed = parse(token).ok_or(ErrorCode::TokenMalformed)?;
        let key = self.secret(parsed.kid).ok_or(ErrorCode::TokenInvalid)?;
        hmac::verify(key, parsed.signed.as_bytes(), &parsed.sig)
            .map_err(|_| ErrorCode::TokenInvalid)?;
        if parsed.uid != user_id {
            return Err(ErrorCode::TokenInvalid);
        }
        check_times(parsed.iat, parsed.exp, None, now_s)?;
        Ok(Claims {
            kid: parsed.kid.to_string(),
            user_id: parsed.uid.to_string(),
            iat: parsed.iat,
            exp: parsed.exp,
        })
    }

    fn verify_jwt(&self, token: &str, user_id: &str, now_s: u64) -> Result<Claims, ErrorCode> {
        let jwt = parse_jwt(token).ok_or(ErrorCode::TokenMalformed)?;
        if jwt.header.crit.is_some() {
            return Err(ErrorCode::TokenInvalid);
        }
        let alg = JwtAlg::from_name(&jwt.header.alg).ok_or(ErrorCode::TokenInvalid)?;
        // A kid names one key, which must be for the token's alg; without one, every key for
        // that alg is tried. Either way a key is only ever used with its own algorithm, so an
        // HS256 token can never be checked against a public key's bytes.
        let verifies = |key: &Key| {
            key.alg() == alg
                && jsonwebtoken::crypto::verify(
                    jwt.signature,
                    jwt.signed.as_bytes(),
                    key.decoding(),
                    alg.algorithm(),
                )
                .unwrap_or(false)
        };
        let kid = match &jwt.header.kid {
            Some(kid) => self.find(kid).filter(|k| verifies(k)).map(|_| kid.as_str()),
            None => self.keys.iter().find(|(_, k)| verifies(k)).map(|(id, _)| id.as_str()),
        }
        .ok_or(ErrorCode::TokenInvalid)?;

        let claims = &jwt.claims;
        if claims.get("sub").and_then(Value::as_str) != Some(user_id) {
            return Err(ErrorCode::TokenInvalid);
        }
        if let Some(aud) = &self.audience {
            let ok = match claims.get("aud") {
                Some(Value::String(s)) => s == aud,
                Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(aud)),
                _ => false,
            };
            if !ok {
                return Err(ErrorCode::TokenInvalid);
            }
        }
        if let Some(iss) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(iss.as_str()) {
                return Err(ErrorCode::TokenInvalid);
            }
        }
        let iat = numeric_date(claims.get("iat")).ok_or(ErrorCode::TokenInvalid)?;
        let exp = numeric_date(claims.get("exp")).ok_or(ErrorCode::TokenInvalid)?;
        let nbf = match claims.get("nbf") {
            None => None,
            v => Some(numeric_date(v).ok_or(ErrorCode::TokenInvalid)?),
        };
        check_times(iat, exp, nbf, now_s)?;
        Ok(Claims { kid: kid.to_string(), user_id: user_id.to_string(), iat, exp })
    }
}

/// The time checks both formats share, after the signature: `exp < iat` is invalid, an `iat`
/// (or `nbf`) beyond the clock skew is not yet valid, a passed `exp` is expired.
fn check_times(iat: u64, exp: u64, nbf: Option<u64>, now_s: u64) -> Result<(), ErrorCode> {
    if exp < iat {
        return Err(ErrorCode::TokenInvalid);
    }
    let latest = now_s.saturating_add(MAX_CLOCK_SKEW_S);
    if iat > latest || nbf.is_some_and(|nbf| nbf > latest) {
        return Err(ErrorCode::TokenNotYetValid);
    }
    if exp <= now_s {
        return Err(ErrorCode::TokenExpired);
    }
    Ok(())
}

/// A JWT NumericDate: a non-negative number of seconds, a fraction cut off.
fn numeric_date(v: Option<&Value>) -> Option<u64> {
    let v = v?;
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    (f.is_finite() && f >= 0.0 && f < u64::MAX as f64).then_some(f as u64)
}

/// Whether a token has a JWT's outline: three parts of base64url characters joined by `.`.
fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A JWT's header fields that matter here; the rest are ignored.
#[derive(Deserialize)]
struct JwtHeader {
    alg: String,
    kid: Option<String>,
    crit: Option<Value>,
}

/// A JWT split into its parts, before its signature is checked.
struct Jwt<'a> {
    signed: &'a str,
    signature: &'a str,
    header: JwtHeader,
    claims: Map<String, Value>,
}

/// Splits a JWT and decodes its header and claims; `None` when a part is not base64url, the
/// header not a JSON object with a string `alg`, or the claims not a JSON object.
fn parse_jwt(token: &str) -> Option<Jwt<'_>> {
    let (signed, signature) = token.rsplit_once('.')?;
    let (header, claims) = signed.split_once('.')?;
    URL_SAFE_NO_PAD.decode(signature).ok()?;
    let header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    let claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
    Some(Jwt { signed, signature, header, claims })
}

/// Whether PEM text holds a SubjectPublicKeyInfo of a P-256 key: 91 bytes of DER that name
/// the curve (prime256v1, 1.2.840.10045.3.1.7).
fn is_p256_spki_pem(pem: &[u8]) -> bool {
    const P256_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let Ok(text) = std::str::from_utf8(pem) else { return false };
    let body: String = text
        .lines()
        .skip_while(|l| l.trim() != "-----BEGIN PUBLIC KEY-----")
        .skip(1)
        .take_while(|l| l.trim() != "-----END PUBLIC KEY-----")
        .map(str::trim)
        .collect();
    let Ok(der) = STANDARD.decode(body) else { return false };
    der.len() == 91 && der.windows(P256_OID.len()).any(|w| w == P256_OID)
}

/// An `hd1:` token split into its parts, before its signature is checked.
struct Parsed<'a> {
    signed: &'a str,
    kid: &'a str,
    uid: &'a str,
    iat: u64,
    exp: u64,
    sig: Vec<u8>,
}

/// Splits an `hd1:` token into its parts; `None` when it does not have the token's shape.
fn parse(token: &str) -> Option<Parsed<'_>> {
    let (signed, sig_hex) = token.rsplit_once(':')?;
    let mut parts = signed.split(':');
    let (Some(PREFIX), Some(kid), Some(uid), Some(iat), Some(exp), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let decimal = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let lower_hex =
        sig_hex.len() == 64 && sig_hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !valid_key_id(kid) || uid.is_empty() || !lower_hex {
        return None;
    }
    Some(Parsed {
        signed,
        kid,
        uid,
        iat: decimal(iat)?,
        exp: decimal(exp)?,
        sig: hex::decode(sig_hex).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made once with PyJWT and the `cryptography` package: two public keys, and tokens for
    // alice with iat 1000 and exp 2000 signed by their private keys (which are not kept).
    const EC_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEhJbHk+Jyid+22NKQPwsaEKPwV4c6\nskNLgYbYkzMIHBx7xs5uifMRT56GDe6HpIKStVg7fvkOTmaPgUoS/+vZBw==\n-----END PUBLIC KEY-----\n";
    const RSA_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAvQ7kSJrIQqFjTt/8N/Po\nQDWHuOfXK1GXi9Ee8nHWJBP/odOQuxZF6tUVhaJoeyF6FVcPEDJZ6TGNJpaNk/Iu\n2SwIaYzzhm20TW9EUf/Vp0FHO4UcODwbbQ3oV1dtk+ZpDiWAdPmoFJ6KI9rvbfvN\n3MsAzhFtnty+FkO2WT27qUreBhBcxpeJYKWzLBUzRvyrFrb7MXgW/8jTlI63yM7X\n2bwB33UjVUU/juIpPYZ4sWzCNiRx9SD7KTeZ50+S8Zmi4OV2E236oByAVSr+LJSM\nOrAhnHUrrNAt4SG+zzEf5T6f4vgtNZcYIZEr/qRXDNq92eTqdh+P/xCI6gDQ2nYj\n+wIDAQAB\n-----END PUBLIC KEY-----\n";
    const ES256_TOKEN: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImVjMSIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImlhdCI6MTAwMCwiZXhwIjoyMDAwfQ.W7lSRMCJqCg3iPdTvzUHDuUnNikzUF937mcRJEJq4TFtiiAPi7ALGRGOZKGsze0WFDmqEKom6AMmtHBM7-ntiA";
    const RS256_TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTEiLCJ0eXAiOiJKV1QifQ.eyJzdWIiOiJhbGljZSIsImlhdCI6MTAwMCwiZXhwIjoyMDAwfQ.Bsgje4omkExK2xvFmzg7ID-Ou2M0pkcg6TGd1DeR1NKqcKItQa4_1xOHiO2L0eueU-abhp2SsDp7cGGWfMY3KUkYJyvrlNH9s-HrQcHSB5-ZEx_lrie4YYmGRryiOCetmlJyD2YyilaZszZSPUuveDRx-reqGDy0hB4nu-8HoMCow9-GFwRZr84BkE8n86fKCkmbRP5szAh8jn3HNqGewQD9hMBXhS7di8krNr3n0CUFfam2beNKmhFaWhvGr0K6JBxPxhI-bvOK39KSOu_FiwZdrxLb5g4zdrBLblsOIFKVmDC42PO1znUMRucxmPlwofNxrd8Zg_o23BN3VlRI0A";
    const RS256_NO_KID: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImlhdCI6MTAwMCwiZXhwIjoyMDAwfQ.G1uFDMkOL_TyQk5U06eN1b0IRkpyIFNcBoC8t8KUXxpFV9GT0CGZcAyRJ6jjiqz73DFgFBK05FBJLDqjSaBDbqL-U-05EXcfi1UnUC3bU-oqVyMOv0jFfIxhrQX00nGgTsHfYPK0uld_s_diEpOtxmLy2qEFCPUKvSJF9FKz4i-Ko82tkWFtZSJC9BYdQbP7iZV_FQU7GCZISu84oYyGptBMPZLWuwvpwk0N2nvWJ8lXQO1IV8q9sRu3O6XRwVl6ngvJPAhvTZmPu1bFtjlKJunx8HlHkOIsr0ldKAJJEBF3nph3QJzZQgq2acllZeqhPnOKegyl_5R_xfDngtoz4Q";
    const JWKS: &str = r#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "hJbHk-Jyid-22NKQPwsaEKPwV4c6skNLgYbYkzMIHBw", "y": "e8bObonzEU-ehg3uh6SCkrVYO375Dk5mj4FKEv_r2Qc", "kid": "ec1"}, {"kty": "RSA", "key_ops": ["verify"], "n": "vQ7kSJrIQqFjTt_8N_PoQDWHuOfXK1GXi9Ee8nHWJBP_odOQuxZF6tUVhaJoeyF6FVcPEDJZ6TGNJpaNk_Iu2SwIaYzzhm20TW9EUf_Vp0FHO4UcODwbbQ3oV1dtk-ZpDiWAdPmoFJ6KI9rvbfvN3MsAzhFtnty-FkO2WT27qUreBhBcxpeJYKWzLBUzRvyrFrb7MXgW_8jTlI63yM7X2bwB33UjVUU_juIpPYZ4sWzCNiRx9SD7KTeZ50-S8Zmi4OV2E236oByAVSr-LJSMOrAhnHUrrNAt4SG-zzEf5T6f4vgtNZcYIZEr_qRXDNq92eTqdh-P_xCI6gDQ2nYj-w", "e": "AQAB", "kid": "rsa1", "alg": "RS256", "use": "sig"}]}"#;

    fn keys() -> KeySet {
        let mut k = KeySet::new();
        assert!(k.insert("dev", b"secret-one"));
        assert!(k.insert("k2", b"secret-two"));
        k
    }

    fn public_keys() -> KeySet {
        let mut k = keys();
        k.insert_public_pem("ec1", JwtAlg::ES256, EC_PEM.as_bytes()).unwrap();
        k.insert_public_pem("rsa1", JwtAlg::RS256, RSA_PEM.as_bytes()).unwrap();
        k
    }

    /// An HS256 JWT with exactly this header and these claims, signed with `secret`.
    fn hs256(secret: &[u8], header: Value, claims: Value) -> String {
        let b64 = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let signed = format!("{}.{}", b64(header), b64(claims));
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    fn claims(exp: u64) -> Value {
        serde_json::json!({ "sub": "alice", "iat": 1000, "exp": exp })
    }

    fn dev_header() -> Value {
        serde_json::json!({ "alg": "HS256", "kid": "dev" })
    }

    #[test]
    fn minted_token_verifies() {
        let k = keys();
        let t = k.mint("dev", "alice", 1000, 2000).unwrap();
        let c = k.verify(&t, "alice", 1500).unwrap();
        assert_eq!((c.kid.as_str(), c.iat, c.exp), ("dev", 1000, 2000));
        let t2 = k.mint("k2", "alice", 1000, 2000).unwrap();
        assert!(k.verify(&t2, "alice", 1500).is_ok());
    }

    #[test]
    fn every_bad_token_has_its_code() {
        let k = keys();
        let t = k.mint("dev", "alice", 1000, 2000).unwrap();
        assert_eq!(k.verify(&t, "alice", 2000), Err(ErrorCode::TokenExpired));
        assert_eq!(k.verify(&t, "bob", 1500), Err(ErrorCode::TokenInvalid));
        assert_eq!(
            k.verify(&t, "alice", 1000 - MAX_CLOCK_SKEW_S - 1),
            Err(ErrorCode::TokenNotYetValid)
        );
        assert!(k.verify(&t, "alice", 1000 - MAX_CLOCK_SKEW_S).is_ok(), "skew is tolerated");
        let forged = t.replace("2000", "9999");
        assert_eq!(k.verify(&forged, "alice", 1500), Err(ErrorCode::TokenInvalid));
        for cut in 0..t.len() {
            assert_eq!(k.verify(&t[..cut], "alice", 1500), Err(ErrorCode::TokenMalformed), "{cut}");
        }
        assert_eq!(k.verify(&t.to_uppercase(), "alice", 1500), Err(ErrorCode::TokenMalformed));
        assert_eq!(k.verify(&format!("{t}0"), "alice", 1500), Err(ErrorCode::TokenMalformed));
        let plus = t.replace(":1000:", ":+1000:");
        assert_eq!(k.verify(&plus, "alice", 1500), Err(ErrorCode::TokenMalformed));
        let unknown_kid = t.replace("hd1:dev:", "hd1:old:");
        assert_eq!(k.verify(&unknown_kid, "alice", 1500), Err(ErrorCode::TokenInvalid));
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(k.verify(&long, "alice", 1500), Err(ErrorCode::TokenTooLong));
        let other = KeySet::new();
        assert_eq!(other.verify(&t, "alice", 1500), Err(ErrorCode::TokenInvalid));
    }

    #[test]
    fn an_hd1_token_naming_a_public_key_is_invalid() {
        let k = public_keys();
        let t = keys().mint("dev", "alice", 1000, 2000).unwrap().replace("hd1:dev:", "hd1:ec1:");
        assert_eq!(k.verify(&t, "alice", 1500), Err(ErrorCode::TokenInvalid));
    }

    #[test]
    fn hs256_jwts_verify_with_the_secrets() {
        let k = keys();
        let t = k.mint_jwt("k2", "alice", 1000, 2000).unwrap();
        assert!(looks_like_jwt(&t), "{t}");
        let c = k.verify(&t, "alice", 1500).unwrap();
        assert_eq!(c, Claims { kid: "k2".into(), user_id: "alice".into(), iat: 1000, exp: 2000 });
        let no_kid = hs256(b"secret-two", serde_json::json!({ "alg": "HS256" }), claims(2000));
        assert_eq!(k.verify(&no_kid, "alice", 1500).unwrap().kid, "k2", "found without a kid");
        let fractions = serde_json::json!({ "sub": "alice", "iat": 1000.5, "exp": 2000.9 });
        let c = k.verify(&hs256(b"secret-one", dev_header(), fractions), "alice", 1500).unwrap();
        assert_eq!((c.iat, c.exp), (1000, 2000));
    }

    #[test]
    fn every_bad_jwt_has_its_code() {
        let k = keys();
        let jwt = |claims: Value| hs256(b"secret-one", dev_header(), claims);
        let good = jwt(claims(2000));
        assert!(k.verify(&good, "alice", 1500).is_ok());
        let cases = [
            ("expired", good.clone(), 2000, ErrorCode::TokenExpired),
            ("another user's", good.clone(), 1500, ErrorCode::TokenInvalid),
            (
                "not yet valid",
                good.clone(),
                1000 - MAX_CLOCK_SKEW_S - 1,
                ErrorCode::TokenNotYetValid,
            ),
            (
                "no exp",
                jwt(serde_json::json!({ "sub": "alice", "iat": 1000 })),
                1500,
                ErrorCode::TokenInvalid,
            ),
            (
                "no iat",
                jwt(serde_json::json!({ "sub": "alice", "exp": 2000 })),
                1500,
                ErrorCode::TokenInvalid,
            ),
            (
                "no sub",
                jwt(serde_json::json!({ "iat": 1000, "exp": 2000 })),
                1500,
                ErrorCode::TokenInvalid,
            ),
            (
                "exp a string",
                jwt(serde_json::json!({ "sub": "alice", "iat": 1000, "exp": "2000" })),
                1500,
                ErrorCode::TokenInvalid,
            ),
            (
                "exp negative",
                jwt(serde_json::json!({ "sub": "alice", "iat": 1000, "exp": -1 })),
                1500,
                ErrorCode::TokenInvalid,
            ),
            (
                "exp before iat",
                jwt(serde_json::json!({ "sub": "alice", "iat": 1000, "exp": 999 })),
                1500,
                ErrorCode::TokenInvalid,
            ),
            (
                "nbf ahead",
                jwt(
                    serde_json::json!({ "sub": "alice", "iat": 1000, "exp": 9000, "nbf": 1500 + MAX_CLOCK_SKEW_S + 1 }),
                ),
                1500,
                ErrorCode::TokenNotYetValid,
            ),
            (
                "nbf not a number",
                jwt(serde_json::json!({ "sub": "alice", "iat": 1000, "exp": 9000, "nbf": "x" })),
                1500,
                ErrorCode::TokenInvalid,
            ),
            (
                "wrong secret",
                hs256(b"secret-three", dev_header(), claims(2000)),
                1500,
                ErrorCode::TokenInvalid,
            ),
            (
                "kid of the other secret",
                hs256(b"secret-two", dev_header(), claims(2000)),
                1500,
                ErrorCode::TokenInvalid,
            ),
            (
                "unknown kid",
                hs256(
                    b"secret-one",
                    serde_json::json!({ "alg": "HS256", "kid": "old" }),
                    claims(2000),
                ),
                1500,
                ErrorCode::TokenInvalid,
            ),
            (
                "HS512",
                hs256(
                    b"secret-one",
                    serde_json::json!({ "alg": "HS512", "kid": "dev" }),
                    claims(2000),
                ),
                1500,
                ErrorCode::TokenInvalid,
            ),
            (
                "alg lower case",
                hs256(
                    b"secret-one",
                    serde_json::json!({ "alg": "hs256", "kid": "dev" }),
                    claims(2000),
                ),
                1500,
                ErrorCode::TokenInvalid,
            ),
            (
                "crit",
                hs256(
                    b"secret-one",
                    serde_json::json!({ "alg": "HS256", "kid": "dev", "crit": ["exp"] }),
                    claims(2000),
                ),
                1500,
                ErrorCode::TokenInvalid,
            ),
            (
                "header without alg",
                hs256(b"secret-one", serde_json::json!({ "kid": "dev" }), claims(2000)),
                1500,
                ErrorCode::TokenMalformed,
            ),
            (
                "kid a number",
                hs256(b"secret-one", serde_json::json!({ "alg": "HS256", "kid": 7 }), claims(2000)),
                1500,
                ErrorCode::TokenMalformed,
            ),
            (
                "claims an array",
                hs256(b"secret-one", dev_header(), serde_json::json!([1])),
                1500,
                ErrorCode::TokenMalformed,
            ),
            (
                "two parts",
                good.rsplit_once('.').unwrap().0.to_string(),
                1500,
                ErrorCode::TokenMalformed,
            ),
            ("padded signature", format!("{good}="), 1500, ErrorCode::TokenMalformed),
            ("signature cut", good[..good.len() - 1].to_string(), 1500, ErrorCode::TokenMalformed),
            ("header not base64url", format!("!{good}"), 1500, ErrorCode::TokenMalformed),
            ("not json", "eA.eA.eA".to_string(), 1500, ErrorCode::TokenMalformed),
            (
                "too long",
                format!("{good}{}", "A".repeat(MAX_TOKEN_LEN)),
                1500,
                ErrorCode::TokenTooLong,
            ),
        ];
        for (what, token, now, code) in cases {
            let user = if what == "another user's" { "bob" } else { "alice" };
            assert_eq!(k.verify(&token, user, now), Err(code), "{what}: {token}");
        }
        let (signed, _) = good.rsplit_once('.').unwrap();
        let (header, _) = signed.split_once('.').unwrap();
        let forged_claims = URL_SAFE_NO_PAD.encode(claims(9999).to_string());
        let forged = format!("{header}.{forged_claims}.{}", good.rsplit_once('.').unwrap().1);
        assert_eq!(k.verify(&forged, "alice", 1500), Err(ErrorCode::TokenInvalid), "forged exp");
    }

    #[test]
    fn alg_none_is_refused() {
        let k = keys();
        let b64 = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        for alg in ["none", "None", "NONE"] {
            let header = b64(serde_json::json!({ "alg": alg, "kid": "dev" }));
            let t = format!("{header}.{}.", b64(claims(2000)));
            assert_eq!(k.verify(&t, "alice", 1500), Err(ErrorCode::TokenInvalid), "{alg}");
            let sig = hs256(b"secret-one", dev_header(), claims(2000));
            let with_sig =
                format!("{header}.{}.{}", b64(claims(2000)), sig.rsplit_once('.').unwrap().1);
            assert_eq!(k.verify(&with_sig, "alice", 1500), Err(ErrorCode::TokenInvalid), "{alg}");
        }
    }

    #[test]
    fn es256_and_rs256_verify_with_their_public_keys() {
        let k = public_keys();
        let c = k.verify(ES256_TOKEN, "alice", 1500).unwrap();
        assert_eq!(c, Claims { kid: "ec1".into(), user_id: "alice".into(), iat: 1000, exp: 2000 });
        assert_eq!(k.verify(RS256_TOKEN, "alice", 1500).unwrap().kid, "rsa1");
        assert_eq!(k.verify(RS256_NO_KID, "alice", 1500).unwrap().kid, "rsa1", "tried by alg");
        assert_eq!(k.verify(RS256_TOKEN, "alice", 2000), Err(ErrorCode::TokenExpired));
        assert_eq!(k.verify(ES256_TOKEN, "bob", 1500), Err(ErrorCode::TokenInvalid));
        assert!(RS256_TOKEN.len() < MAX_TOKEN_LEN / 3, "{}", RS256_TOKEN.len());
        assert_eq!(keys().verify(ES256_TOKEN, "alice", 1500), Err(ErrorCode::TokenInvalid));
    }

    #[test]
    fn alg_confusion_is_refused() {
        let k = public_keys();
        for (pem, kid) in [(RSA_PEM, "rsa1"), (EC_PEM, "ec1")] {
            for header in [
                serde_json::json!({ "alg": "HS256", "kid": kid }),
                serde_json::json!({ "alg": "HS256" }),
            ] {
                let t = hs256(pem.as_bytes(), header.clone(), claims(2000));
                assert_eq!(k.verify(&t, "alice", 1500), Err(ErrorCode::TokenInvalid), "{header}");
            }
        }
        // A token whose header names the other public algorithm for a key.
        let (_, rest) = ES256_TOKEN.split_once('.').unwrap();
        let swapped = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"ec1"}"#);
        assert_eq!(
            k.verify(&format!("{swapped}.{rest}"), "alice", 1500),
            Err(ErrorCode::TokenInvalid)
        );
        // An HS256 token naming a secret's kid is still checked against that secret only.
        let t =
            hs256(b"secret-one", serde_json::json!({ "alg": "ES256", "kid": "dev" }), claims(2000));
        assert_eq!(k.verify(&t, "alice", 1500), Err(ErrorCode::TokenInvalid));
    }

    #[test]
    fn key_rotation_by_kid() {
        let mut old = KeySet::new();
        old.insert_public_pem("2026-01", JwtAlg::RS256, RSA_PEM.as_bytes()).unwrap();
        let mut rotating = old.clone();
        rotating.insert_public_pem("2026-02", JwtAlg::ES256, EC_PEM.as_bytes()).unwrap();
        let renamed = |t: &str, kid: &str, alg: &str| {
            // Same signature, another kid in the header: the signature covers the header, so
            // this only verifies if the key it names is the key that signed.
            let (_, rest) = t.split_once('.').unwrap();
            let h = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","kid":"{kid}"}}"#));
            format!("{h}.{rest}")
        };
        assert_eq!(rotating.verify(RS256_NO_KID, "alice", 1500).unwrap().kid, "2026-01");
        let t = renamed(RS256_TOKEN, "2026-01", "RS256");
        assert_eq!(rotating.verify(&t, "alice", 1500), Err(ErrorCode::TokenInvalid));
        assert_eq!(old.verify(ES256_TOKEN, "alice", 1500), Err(ErrorCode::TokenInvalid));

        let mut k = KeySet::new();
        k.insert_jwks(JWKS).unwrap();
        assert_eq!(k.verify(ES256_TOKEN, "alice", 1500).unwrap().kid, "ec1");
        assert_eq!(k.verify(RS256_TOKEN, "alice", 1500).unwrap().kid, "rsa1");
        let mut only_ec: Value = serde_json::from_str(JWKS).unwrap();
        only_ec["keys"].as_array_mut().unwrap().pop();
        let mut k = KeySet::new();
        assert_eq!(k.insert_jwks(&only_ec.to_string()).unwrap(), ["ec1"]);
        assert_eq!(k.verify(RS256_TOKEN, "alice", 1500), Err(ErrorCode::TokenInvalid), "retired");
        assert_eq!(k.verify(RS256_NO_KID, "alice", 1500), Err(ErrorCode::TokenInvalid));
    }

    #[test]
    fn audience_and_issuer_when_configured() {
        let mut k = keys();
        let t = |extra: Value| {
            let mut c = claims(2000);
            c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            hs256(b"secret-one", dev_header(), c)
        };
        let plain = t(serde_json::json!({}));
        assert!(k.verify(&plain, "alice", 1500).is_ok(), "aud and iss unchecked by default");
        k.set_audience(Some("huddle".into()));
        k.set_issuer(Some("https://backend".into()));
        assert_eq!(k.verify(&plain, "alice", 1500), Err(ErrorCode::TokenInvalid));
        let both = serde_json::json!({ "aud": "huddle", "iss": "https://backend" });
        assert!(k.verify(&t(both), "alice", 1500).is_ok());
        let list = serde_json::json!({ "aud": ["x", "huddle"], "iss": "https://backend" });
        assert!(k.verify(&t(list), "alice", 1500).is_ok());
        let wrong_aud = serde_json::json!({ "aud": "other", "iss": "https://backend" });
        assert_eq!(k.verify(&t(wrong_aud), "alice", 1500), Err(ErrorCode::TokenInvalid));
        let wrong_iss = serde_json::json!({ "aud": "huddle", "iss": "https://evil" });
        assert_eq!(k.verify(&t(wrong_iss), "alice", 1500), Err(ErrorCode::TokenInvalid));
        let minted = k.mint_jwt("dev", "alice", 1000, 2000).unwrap();
        assert!(k.verify(&minted, "alice", 1500).is_ok(), "mint_jwt adds aud and iss");
    }

    #[test]
    fn bad_keys_are_refused_at_load() {
        let mut k = keys();
        let err = |r: Result<(), KeyError>| r.unwrap_err().to_string();
        assert!(err(k.insert_public_pem("e", JwtAlg::ES256, RSA_PEM.as_bytes())).contains("P-256"));
        assert!(err(k.insert_public_pem("r", JwtAlg::RS256, EC_PEM.as_bytes())).contains("RS256"));
        assert!(err(k.insert_public_pem("h", JwtAlg::HS256, EC_PEM.as_bytes())).contains("secret"));
        assert!(
            err(k.insert_public_pem("dev", JwtAlg::ES256, EC_PEM.as_bytes())).contains("two keys")
        );
        assert!(err(k.insert_public_pem("", JwtAlg::ES256, EC_PEM.as_bytes())).contains("key id"));
        assert!(err(k.insert_public_pem("x", JwtAlg::ES256, b"garbage")).contains("P-256"));
        let jwks = |s: &str| KeySet::new().insert_jwks(s).unwrap_err().to_string();
        assert!(jwks("{}").contains("JSON Web Key Set"));
        assert!(jwks(&JWKS.replace(r#""kid": "ec1""#, r#""kid": """#)).contains("needs a kid"));
        assert!(jwks(&JWKS.replace(r#""alg": "RS256""#, r#""alg": "ES256""#)).contains("alg"));
        assert!(jwks(&JWKS.replace(r#""use": "sig""#, r#""use": "enc""#)).contains("encryption"));
        assert!(jwks(&JWKS.replace("P-256", "P-384")).contains("P-256"));
        let oct = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"}]}"#;
        assert!(jwks(oct).contains("only RSA"));
    }
}
