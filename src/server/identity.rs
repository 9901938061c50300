//! What the server proves and what it trusts: its TLS certificate chain and key, and the
//! token keys it verifies logins with; from the configuration, or the development ones.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::config::{ConfigError, ServerConfig};
use super::error::ServerError;
use crate::auth::KeySet;
use crate::certs;

/// Token keys from the configuration, or the development key (created on first start).
pub fn load_keys(config: &ServerConfig) -> Result<KeySet, ServerError> {
    let mut keys = KeySet::new();
    if config.token_keys.is_empty() {
        let secret = certs::ensure_token_secret(&config.certs_dir)?;
        keys.insert(certs::DEV_KEY_ID, &secret);
    }
    for k in &config.token_keys {
        let secret = hex::decode(&k.secret_hex)
            .map_err(|source| ConfigError::TokenKeyNotHex { id: k.id.clone(), source })?;
        if secret.len() < 16 {
            return Err(ConfigError::TokenKeyTooShort { id: k.id.clone() }.into());
        }
        if !keys.insert(&k.id, &secret) {
            return Err(ConfigError::TokenKeyId { id: k.id.clone() }.into());
        }
    }
    Ok(keys)
}

/// The certificate chain and key from the configuration, or the development ones (created on
/// first start).
pub fn load_tls(
    config: &ServerConfig,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ServerError> {
    match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => Ok((certs::load_certs(cert)?, certs::load_key(key)?)),
        (None, None) => {
            if certs::ensure_dev_certs(&config.certs_dir)? {
                tracing::info!(dir = %config.certs_dir.display(), "made development certificates");
            }
            let (cert, key) = certs::dev_paths(&config.certs_dir);
            Ok((certs::load_certs(&cert)?, certs::load_key(&key)?))
        }
        _ => Err(ConfigError::CertWithoutKey.into()),
    }
}
