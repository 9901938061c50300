//! The development certificate for browsers. A browser accepts a certificate no CA it trusts
//! has signed, for WebTransport only, through `serverCertificateHashes`: an ECDSA P-256
//! certificate valid for at most 14 days, named by its SHA-256. With the development CA the
//! server makes such a certificate, presents it on connections that offer only the `h3` ALPN
//! (rustls picks the certificate from the ClientHello), rotates it before it expires and tells
//! the demo page its hash (`GET /config.json` on the web listener).

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::web::WEB_ALPN;
use crate::wire::ALPN;

/// The certificate's whole validity (`notAfter - notBefore`): under the browsers' 14 days.
pub const WEB_CERT_VALIDITY: Duration = Duration::from_secs(13 * 24 * 3600);

/// A certificate is replaced once it is this old, so that a page always gets a hash with at
/// least a week left.
pub const WEB_CERT_ROTATE_AFTER: Duration = Duration::from_secs(6 * 24 * 3600);

/// How far `notBefore` lies before the moment the certificate is made (clock skew).
const BACKDATE: Duration = Duration::from_secs(3600);

/// The browsers' certificate in use, replaced by [`WebCert::rotate`].
#[derive(Debug)]
pub struct WebCert {
    current: RwLock<Current>,
}

#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    hash: [u8; 32],
    made: SystemTime,
}

/// The certificate could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot make the WebTransport development certificate: {0}")]
pub struct WebCertError(String);

impl WebCert {
    /// Makes the first certificate, valid from `now`.
    pub fn new(now: SystemTime) -> Result<WebCert, WebCertError> {
        Ok(WebCert { current: RwLock::new(make(now)?) })
    }

    /// The SHA-256 of the DER certificate presented now.
    pub fn hash(&self) -> [u8; 32] {
        self.read().hash
    }

    /// When the certificate in use should be replaced.
    pub fn rotate_at(&self) -> SystemTime {
        self.read().made + WEB_CERT_ROTATE_AFTER
    }

    /// Replaces the certificate with one made at `now`; connections already up keep theirs.
    pub fn rotate(&self, now: SystemTime) -> Result<(), WebCertError> {
        let next = make(now)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }
}

fn make(now: SystemTime) -> Result<Current, WebCertError> {
    let fail = |e: &dyn std::fmt::Display| WebCertError(e.to_string());
    let key_pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| fail(&e))?;
    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .map_err(|e| fail(&e))?;
    params.distinguished_name.push(DnType::CommonName, "Huddle WebTransport development");
    let from = now.checked_sub(BACKDATE).unwrap_or(now);
    params.not_before = from.into();
    params.not_after = (from + WEB_CERT_VALIDITY).into();
    let cert = params.self_signed(&key_pair).map_err(|e| fail(&e))?;
    let der = CertificateDer::from(cert.der().to_vec());
    let hash: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, &der)
        .as_ref()
        .try_into()
        .map_err(|_| WebCertError("SHA-256 is 32 bytes".into()))?;
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let signer = rustls::crypto::ring::sign::any_supported_type(&private).map_err(|e| fail(&e))?;
    Ok(Current { key: Arc::new(CertifiedKey::new(vec![der], signer)), hash, made: now })
}

/// Chooses the server's certificate by the ALPN a ClientHello offers: the browsers' one for a
/// client that offers `h3` and not Huddle's own ALPN, the configured one otherwise.
#[derive(Debug)]
pub(crate) struct ByAlpn {
    pub(crate) main: Arc<CertifiedKey>,
    pub(crate) web: Option<Arc<WebCert>>,
}

impl ResolvesServerCert for ByAlpn {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(web) = &self.web {
            let offered: Vec<&[u8]> = hello.alpn().map(|a| a.collect()).unwrap_or_default();
            if offered.contains(&WEB_ALPN) && !offered.contains(&ALPN) {
                return Some(web.read().key.clone());
            }
        }
        Some(self.main.clone())
    }
}
