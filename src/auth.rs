//! Login tokens: HMAC-SHA256 over (key id, user id, issued-at, expiry).
//!
//! A token is the ASCII string `hd1:{kid}:{user_id}:{iat}:{exp}:{sig}`, where `sig` is the
//! lowercase hex HMAC-SHA256 of `hd1:{kid}:{user_id}:{iat}:{exp}` under the key named `kid`.
//! This module is pure: the current time is an argument.

use ring::hmac;

use crate::wire::ErrorCode;

/// The longest token the server reads.
pub const MAX_TOKEN_LEN: usize = 512;

/// How far in the future an issued-at may be (clock skew between minting host and server).
pub const MAX_CLOCK_SKEW_S: u64 = 60;

const PREFIX: &str = "hd1";

/// The server's signing keys, by key id. Several keys may be active during a rotation.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<(String, hmac::Key)>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("KeySet").field("key_ids", &ids).finish()
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

/// Whether a key id is 1-32 characters of `[A-Za-z0-9_-]`.
pub fn valid_key_id(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 32
        && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl KeySet {
    /// An empty key set (every token is refused).
    pub fn new() -> KeySet {
        KeySet::default()
    }

    /// Adds (or replaces) a key. Returns false when the key id is not valid.
    pub fn insert(&mut self, kid: &str, secret: &[u8]) -> bool {
        if !valid_key_id(kid) {
            return false;
        }
        self.keys.retain(|(id, _)| id != kid);
        self.keys.push((kid.to_string(), hmac::Key::new(hmac::HMAC_SHA256, secret)));
        true
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn key(&self, kid: &str) -> Option<&hmac::Key> {
        self.keys.iter().find(|(id, _)| id == kid).map(|(_, k)| k)
    }

    /// Mints a token with the key `kid`, or `None` when there is no such key.
    pub fn mint(&self, kid: &str, user_id: &str, iat: u64, exp: u64) -> Option<String> {
        let key = self.key(kid)?;
        let signed = format!("{PREFIX}:{kid}:{user_id}:{iat}:{exp}");
        let tag = hmac::sign(key, signed.as_bytes());
        Some(format!("{signed}:{}", hex::encode(tag.as_ref())))
    }

    /// Checks a token presented by `user_id` at `now_s` (Unix seconds).
    ///
    /// Each way a token can be wrong has its code: over [`MAX_TOKEN_LEN`] is `token_too_long`;
    /// not the `hd1:{kid}:{user_id}:{iat}:{exp}:{sig}` shape (a truncated token, a signature that
    /// is not 64 lowercase hex digits) is `token_malformed`; an unknown key, a signature that does
    /// not verify or a token of another user is `token_invalid`; an issued-at more than
    /// [`MAX_CLOCK_SKEW_S`] ahead is `token_not_yet_valid`; a passed expiry is `token_expired`.
    /// The signature is checked before anything it covers is believed.
    pub fn verify(&self, token: &str, user_id: &str, now_s: u64) -> Result<Claims, ErrorCode> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(ErrorCode::TokenTooLong);
        }
        let parsed = parse(token).ok_or(ErrorCode::TokenMalformed)?;
        let key = self.key(parsed.kid).ok_or(ErrorCode::TokenInvalid)?;
        hmac::verify(key, parsed.signed.as_bytes(), &parsed.sig)
            .map_err(|_| ErrorCode::TokenInvalid)?;
        if parsed.uid != user_id || parsed.exp < parsed.iat {
            return Err(ErrorCode::TokenInvalid);
        }
        if parsed.iat > now_s.saturating_add(MAX_CLOCK_SKEW_S) {
            return Err(ErrorCode::TokenNotYetValid);
        }
        if parsed.exp <= now_s {
            return Err(ErrorCode::TokenExpired);
        }
        Ok(Claims {
            kid: parsed.kid.to_string(),
            user_id: parsed.uid.to_string(),
            iat: parsed.iat,
            exp: parsed.exp,
        })
    }
}

/// A token split into its parts, before its signature is checked.
struct Parsed<'a> {
    signed: &'a str,
    kid: &'a str,
    uid: &'a str,
    iat: u64,
    exp: u64,
    sig: Vec<u8>,
}

/// Splits a token into its parts; `None` when it does not have the token's shape.
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

    fn keys() -> KeySet {
        let mut k = KeySet::new();
        assert!(k.insert("dev", b"secret-one"));
        assert!(k.insert("k2", b"secret-two"));
        k
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
        assert_eq!(k.verify(&"a".repeat(600), "alice", 1500), Err(ErrorCode::TokenTooLong));
        let other = KeySet::new();
        assert_eq!(other.verify(&t, "alice", 1500), Err(ErrorCode::TokenInvalid));
    }
}
