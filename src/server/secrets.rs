//! The QUIC stateless-reset key, Retry token key and connection-id key, derived from a secret
//! that several servers can share (`quic_secret_file`, or `quic.secret` in the certs folder).

use std::time::Duration;

use quinn::{ConnectionId, ConnectionIdGenerator};
use quinn_proto::InvalidCid;
use ring::{hkdf, hmac};

use super::config::ServerConfig;
use super::error::ServerError;
use crate::certs;

/// The keys a server's QUIC endpoint needs to agree with the other servers of its secret.
pub struct QuicKeys {
    /// Makes the stateless-reset token of each connection id it issues.
    pub reset: hmac::Key,
    /// Seals and opens Retry (address validation) tokens.
    pub token: hkdf::Prk,
    /// Signs the connection ids the server issues ([`SignedCids`]).
    pub cid: hmac::Key,
}

impl QuicKeys {
    /// The keys derived from `secret`: the same secret gives the same keys.
    pub fn derive(secret: &[u8]) -> QuicKeys {
        let hmac_key = |label: &[u8]| -> hmac::Key {
            hkdf::Salt::new(hkdf::HKDF_SHA256, label)
                .extract(secret)
                .expand(&[], hmac::HMAC_SHA256)
                // 32 bytes, far under HKDF-SHA256's 8,160-byte output limit.
                .expect("an HMAC-SHA256 key is a valid HKDF output length")
                .into()
        };
        let token = hkdf::Salt::new(hkdf::HKDF_SHA256, b"huddle quic retry token").extract(secret);
        QuicKeys {
            reset: hmac_key(b"huddle quic stateless reset"),
            token,
            cid: hmac_key(b"huddle quic connection id"),
        }
    }
}

/// Bytes of a connection id chosen at random; the rest of its 8 bytes are a signature.
const CID_NONCE: usize = 3;

/// Issues 8-byte connection ids signed with a shared key: a random nonce and a truncated HMAC
/// of it. A server answers a packet for a connection it does not know with a stateless reset
/// only when the connection id carries a valid signature (quinn's default generator signs with
/// a key of its own process, so another node would drop the packet without a word).
pub struct SignedCids(pub hmac::Key);

impl ConnectionIdGenerator for SignedCids {
    fn generate_cid(&mut self) -> ConnectionId {
        let mut cid = [0u8; 8];
        cid[..CID_NONCE].copy_from_slice(&rand::random::<[u8; CID_NONCE]>());
        let tag = hmac::sign(&self.0, &cid[..CID_NONCE]);
        cid[CID_NONCE..].copy_from_slice(&tag.as_ref()[..8 - CID_NONCE]);
        ConnectionId::new(&cid)
    }

    fn validate(&self, cid: &ConnectionId) -> Result<(), InvalidCid> {
        let (nonce, tag) = cid.split_at(CID_NONCE.min(cid.len()));
        let expected = hmac::sign(&self.0, nonce);
        match cid.len() == 8 && expected.as_ref()[..8 - CID_NONCE] == *tag {
            true => Ok(()),
            false => Err(InvalidCid),
        }
    }

    fn cid_len(&self) -> usize {
        8
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// The QUIC keys of `config`'s `quic_secret_file`, when it sets one.
pub fn configured_quic_keys(config: &ServerConfig) -> Result<Option<QuicKeys>, ServerError> {
    let Some(path) = &config.quic_secret_file else { return Ok(None) };
    Ok(Some(QuicKeys::derive(&certs::read_token_secret(path)?)))
}

/// The QUIC keys for `config`: from `quic_secret_file`; else from `certs_dir/quic.secret` when
/// it exists, or made there with the development certificate (no `cert` configured); else
/// `None` (quinn's fresh random keys, this process only).
pub fn quic_keys(config: &ServerConfig) -> Result<Option<QuicKeys>, ServerError> {
    if config.quic_secret_file.is_some() {
        return configured_quic_keys(config);
    }
    let path = config.certs_dir.join(certs::QUIC_SECRET_FILE);
    let secret = if path.exists() {
        certs::read_token_secret(&path)?
    } else if config.cert.is_none() {
        certs::ensure_quic_secret(&config.certs_dir)?
    } else {
        return Ok(None);
    };
    Ok(Some(QuicKeys::derive(&secret)))
}

#[cfg(test)]
mod tests {
    use quinn::crypto::HandshakeTokenKey;

    use super::*;

    #[test]
    fn one_secret_gives_one_reset_key_and_one_retry_key() {
        let (a, b) = (QuicKeys::derive(&[7; 64]), QuicKeys::derive(&[7; 64]));
        let other = QuicKeys::derive(&[8; 64]);
        let tag = |k: &QuicKeys| hmac::sign(&k.reset, b"connection id").as_ref().to_vec();
        assert_eq!(tag(&a), tag(&b));
        assert_ne!(tag(&a), tag(&other));
        let mut sealed = b"retry token".to_vec();
        a.token.aead_from_hkdf(b"nonce").seal(&mut sealed, b"").unwrap();
        let mut copy = sealed.clone();
        assert_eq!(b.token.aead_from_hkdf(b"nonce").open(&mut copy, b"").unwrap(), b"retry token");
        assert!(other.token.aead_from_hkdf(b"nonce").open(&mut sealed, b"").is_err());
    }

    #[test]
    fn a_connection_id_is_valid_under_the_key_that_signed_it_only() {
        let mut ours = SignedCids(QuicKeys::derive(&[7; 64]).cid);
        let theirs = SignedCids(QuicKeys::derive(&[8; 64]).cid);
        let cid = ours.generate_cid();
        assert_eq!(cid.len(), 8);
        assert!(ours.validate(&cid).is_ok());
        assert!(SignedCids(QuicKeys::derive(&[7; 64]).cid).validate(&cid).is_ok());
        assert!(theirs.validate(&cid).is_err());
        assert!(ours.validate(&ConnectionId::new(&[1, 2])).is_err());
    }
}
