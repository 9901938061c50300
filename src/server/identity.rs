//! What the server proves and what it trusts: its TLS certificate chain and key, and the
//! token keys it verifies logins with; from the configuration, or the development ones.

use std::path::PathBuf;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::config::{ConfigError, ServerConfig};
use super::error::ServerError;
use super::transport::server_config;
use crate::auth::KeySet;
use crate::certs;

/// Token keys from the configuration, or the development key (created on first start).
pub fn load_keys(config: &ServerConfig) -> Result<KeySet, ServerError> {
    let mut keys = KeySet::new();
    if config.token_keys.is_empty() {
        let secret = certs::ensure_token_secret(&config.certs_dir)?;
        keys.insert(certs::DEV_KEY_ID, &secret);
    }
    add_configured_keys(config, &mut keys)?;
    Ok(keys)
}

/// Checks the identity and keys as [`load_tls`] and [`load_keys`] would load them, without
/// writing a file: development files that do not exist yet are not an error (the server makes
/// them on first start).
pub fn check_identity(config: &ServerConfig) -> Result<(), ServerError> {
    if config.token_keys.is_empty() {
        let path = config.certs_dir.join(certs::TOKEN_SECRET_FILE);
        if path.exists() {
            certs::read_token_secret(&path)?;
        }
    }
    add_configured_keys(config, &mut KeySet::new())?;
    let (cert, key) = tls_paths(config)?;
    if config.cert.is_some() || (cert.exists() && key.exists()) {
        let chain = certs::load_certs(&cert)?;
        let key_der = certs::load_key(&key)?;
        server_config(config, chain, key_der).map_err(|e| name_identity_files(config, e))?;
    }
    Ok(())
}

/// A TLS error with the certificate and key files it came from ([`ServerError::Identity`]).
pub(super) fn name_identity_files(config: &ServerConfig, e: ServerError) -> ServerError {
    match (e, tls_paths(config)) {
        (ServerError::Tls(reason), Ok((cert, key))) => ServerError::Identity { cert, key, reason },
        (e, _) => e,
    }
}

fn add_configured_keys(config: &ServerConfig, keys: &mut KeySet) -> Result<(), ServerError> {
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
    Ok(())
}

/// The files of the certificate chain and key the server uses: the configured ones, or the
/// development ones in `certs_dir`.
pub fn tls_paths(config: &ServerConfig) -> Result<(PathBuf, PathBuf), ConfigError> {
    match (&config.cert, &config.key) {
        (Some(cert), Some(key)) => Ok((cert.clone(), key.clone())),
        (None, None) => Ok(certs::dev_paths(&config.certs_dir)),
        _ => Err(ConfigError::CertWithoutKey),
    }
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
