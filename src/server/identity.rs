//! What the server proves and what it trusts: its TLS certificate chain and key, and the
//! token keys it verifies logins with; from the configuration, or the development ones.

use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::config::{ConfigError, ServerConfig};
use super::error::ServerError;
use super::transport::server_config;
use crate::auth::{JwtAlg, KeySet};
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
/// them on first start). Returns the token keys (without the development key when its secret
/// does not exist yet).
pub fn check_identity(config: &ServerConfig) -> Result<KeySet, ServerError> {
    let mut keys = KeySet::new();
    if config.token_keys.is_empty() {
        let path = config.certs_dir.join(certs::TOKEN_SECRET_FILE);
        if path.exists() {
            keys.insert(certs::DEV_KEY_ID, &certs::read_token_secret(&path)?);
        }
    }
    add_configured_keys(config, &mut keys)?;
    let (cert, key) = tls_paths(config)?;
    if config.cert.is_some() || (cert.exists() && key.exists()) {
        let chain = certs::load_certs(&cert)?;
        let key_der = certs::load_key(&key)?;
        server_config(config, chain, key_der, None).map_err(|e| name_identity_files(config, e))?;
    }
    Ok(keys)
}

/// A TLS error with the certificate and key files it came from ([`ServerError::Identity`]).
pub(super) fn name_identity_files(config: &ServerConfig, e: ServerError) -> ServerError {
    match (e, tls_paths(config)) {
        (ServerError::Tls(reason), Ok((cert, key))) => ServerError::Identity { cert, key, reason },
        (e, _) => e,
    }
}

fn add_configured_keys(config: &ServerConfig, keys: &mut KeySet) -> Result<(), ServerError> {
    add_token_keys(config, keys)?;
    add_jwt_keys(config, keys)?;
    keys.set_audience(config.jwt_audience.clone());
    keys.set_issuer(config.jwt_issuer.clone());
    Ok(())
}

fn add_token_keys(config: &ServerConfig, keys: &mut KeySet) -> Result<(), ServerError> {
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

/// The ES256 and RS256 public keys: each `jwt_public_keys` PEM file, then the JWKS file. A file
/// that cannot be read or holds no usable key is an error naming it.
fn add_jwt_keys(config: &ServerConfig, keys: &mut KeySet) -> Result<(), ConfigError> {
    let file_error =
        |path: &Path, reason: String| ConfigError::JwtKeyFile { path: path.to_path_buf(), reason };
    for k in &config.jwt_public_keys {
        let alg = JwtAlg::from_name(&k.alg)
            .filter(|a| *a != JwtAlg::HS256)
            .ok_or_else(|| ConfigError::JwtAlg { kid: k.kid.clone(), alg: k.alg.clone() })?;
        let pem = std::fs::read(&k.pem_file).map_err(|e| file_error(&k.pem_file, e.to_string()))?;
        keys.insert_public_pem(&k.kid, alg, &pem)
            .map_err(|e| file_error(&k.pem_file, e.to_string()))?;
    }
    if let Some(path) = &config.jwks_file {
        let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e.to_string()))?;
        let added = keys.insert_jwks(&text).map_err(|e| file_error(path, e.to_string()))?;
        if added.is_empty() {
            return Err(file_error(path, "the key set has no keys".into()));
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
