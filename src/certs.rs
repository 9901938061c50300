//! Development certificates and the token secret: made with rcgen on first use, loaded after.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// File names inside the certs folder.
pub const CA_FILE: &str = "ca.pem";
/// The CA's private key (kept so that the server certificate can be re-issued).
pub const CA_KEY_FILE: &str = "ca.key";
/// Server certificate chain.
pub const CERT_FILE: &str = "server.pem";
/// Server private key.
pub const KEY_FILE: &str = "server.key";
/// Token secret (hex), key id `dev`.
pub const TOKEN_SECRET_FILE: &str = "token.secret";
/// The QUIC secret (hex, 64 bytes): the stateless-reset key and the Retry token key derive from
/// it, so that servers sharing the folder reset and validate each other's connections.
pub const QUIC_SECRET_FILE: &str = "quic.secret";
/// The key id of the development token secret.
pub const DEV_KEY_ID: &str = "dev";

/// Why certificates, keys or the token secret could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen could not make a key or a certificate.
    #[error("making the development certificates")]
    Generate(#[from] rcgen::Error),
    /// A folder could not be created.
    #[error("creating {}", .path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file could not be read.
    #[error("reading {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file could not be written.
    #[error("writing {}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A token secret file does not hold hex.
    #[error("{}: not hex", .path.display())]
    SecretNotHex {
        /// The file.
        path: PathBuf,
        /// Why.
        source: hex::FromHexError,
    },
    /// A token secret is shorter than 16 bytes.
    #[error("{}: a token secret needs at least 16 bytes", .path.display())]
    SecretTooShort {
        /// The file.
        path: PathBuf,
    },
    /// A PEM document (in a file, when `path` is set) holds no certificate.
    #[error("{}no certificate found", in_file(.path))]
    NoCertificate {
        /// The file.
        path: Option<PathBuf>,
    },
    /// A PEM document (in a file, when `path` is set) holds no private key.
    #[error("{}no private key found", in_file(.path))]
    NoPrivateKey {
        /// The file.
        path: Option<PathBuf>,
    },
    /// A PEM document (in a file, when `path` is set) could not be parsed.
    #[error("{}not valid PEM", in_file(.path))]
    Pem {
        /// The file.
        path: Option<PathBuf>,
        /// Why.
        source: pem::Error,
    },
}

impl CertError {
    /// The same error, naming the file it is about (parse errors name none).
    fn in_file(self, file: &Path) -> CertError {
        let at = Some(file.to_path_buf());
        match self {
            CertError::NoCertificate { path: None } => CertError::NoCertificate { path: at },
            CertError::NoPrivateKey { path: None } => CertError::NoPrivateKey { path: at },
            CertError::Pem { path: None, source } => CertError::Pem { path: at, source },
            e => e,
        }
    }
}

/// `"PATH: "` before a message about a file, nothing when there is no file.
fn in_file(path: &Option<PathBuf>) -> String {
    path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default()
}

/// In-memory TLS material: a CA certificate and a server chain and key signed by it.
pub struct TlsMaterial {
    /// The CA certificate clients trust.
    pub ca: CertificateDer<'static>,
    /// The server certificate chain.
    pub chain: Vec<CertificateDer<'static>>,
    /// The server private key.
    pub key: PrivateKeyDer<'static>,
}

struct Generated {
    ca_pem: String,
    ca_key_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn generate() -> Result<Generated, CertError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "Huddle development CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])?;
    params.distinguished_name.push(DnType::CommonName, "Huddle development server");
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    Ok(Generated {
        ca_pem: ca.pem(),
        ca_key_pem: ca_key.serialize_pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Makes fresh TLS material in memory (for tests and embedded use).
pub fn generate_in_memory() -> Result<TlsMaterial, CertError> {
    let g = generate()?;
    Ok(TlsMaterial {
        ca: parse_certs(g.ca_pem.as_bytes())?.remove(0),
        chain: parse_certs(g.cert_pem.as_bytes())?,
        key: parse_key(g.key_pem.as_bytes())?,
    })
}

fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), CertError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let _ = secret;
    let failed = |source| CertError::Write { path: path.to_path_buf(), source };
    let mut f = opts.open(path).map_err(failed)?;
    f.write_all(contents).map_err(failed)
}

/// Makes the development CA and server certificate in `dir` unless they are all there already.
/// Returns true when it wrote new files.
pub fn ensure_dev_certs(dir: &Path) -> Result<bool, CertError> {
    let paths = [CA_FILE, CERT_FILE, KEY_FILE].map(|f| dir.join(f));
    if paths.iter().all(|p| p.exists()) {
        return Ok(false);
    }
    create_dir(dir)?;
    let g = generate()?;
    write_file(&dir.join(CA_FILE), g.ca_pem.as_bytes(), false)?;
    write_file(&dir.join(CA_KEY_FILE), g.ca_key_pem.as_bytes(), true)?;
    write_file(&dir.join(CERT_FILE), g.cert_pem.as_bytes(), false)?;
    write_file(&dir.join(KEY_FILE), g.key_pem.as_bytes(), true)?;
    Ok(true)
}

/// Reads the token secret in `dir`, creating a random one (mode 0600) when missing.
pub fn ensure_token_secret(dir: &Path) -> Result<Vec<u8>, CertError> {
    let path = dir.join(TOKEN_SECRET_FILE);
    if !path.exists() {
        create_dir(dir)?;
        let secret: [u8; 32] = rand::random();
        write_file(&path, format!("{}\n", hex::encode(secret)).as_bytes(), true)?;
    }
    read_token_secret(&path)
}

/// Reads the QUIC secret in `dir` ([`QUIC_SECRET_FILE`]), creating a random one (mode 0600)
/// when missing.
pub fn ensure_quic_secret(dir: &Path) -> Result<Vec<u8>, CertError> {
    let path = dir.join(QUIC_SECRET_FILE);
    if !path.exists() {
        create_dir(dir)?;
        let secret: [u8; 64] = std::array::from_fn(|_| rand::random());
        write_file(&path, format!("{}\n", hex::encode(secret)).as_bytes(), true)?;
    }
    read_token_secret(&path)
}

/// Reads a hex secret file (a token secret or the QUIC secret) of at least 16 bytes.
pub fn read_token_secret(path: &Path) -> Result<Vec<u8>, CertError> {
    let text = fs::read_to_string(path)
        .map_err(|source| CertError::Read { path: path.to_path_buf(), source })?;
    let secret = hex::decode(text.trim())
        .map_err(|source| CertError::SecretNotHex { path: path.to_path_buf(), source })?;
    if secret.len() < 16 {
        return Err(CertError::SecretTooShort { path: path.to_path_buf() });
    }
    Ok(secret)
}

fn create_dir(dir: &Path) -> Result<(), CertError> {
    fs::create_dir_all(dir).map_err(|source| CertError::CreateDir { path: dir.into(), source })
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    fs::read(path).map_err(|source| CertError::Read { path: path.to_path_buf(), source })
}

/// Parses every certificate in a PEM document.
pub fn parse_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|source| CertError::Pem { path: None, source })?;
    if certs.is_empty() {
        return Err(CertError::NoCertificate { path: None });
    }
    Ok(certs)
}

/// Parses the first private key in a PEM document.
pub fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, CertError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        pem::Error::NoItemsFound => CertError::NoPrivateKey { path: None },
        source => CertError::Pem { path: None, source },
    })
}

/// Reads certificates from a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    parse_certs(&read(path)?).map_err(|e| e.in_file(path))
}

/// Reads a private key from a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    parse_key(&read(path)?).map_err(|e| e.in_file(path))
}

/// The default paths of the server chain and key in `dir`.
pub fn dev_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join(CERT_FILE), dir.join(KEY_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_documents_parse_and_missing_items_are_named() {
        let g = generate().unwrap();
        let both = format!("{}{}", g.cert_pem, g.key_pem);
        assert_eq!(parse_certs(both.as_bytes()).unwrap().len(), 1);
        assert!(matches!(parse_key(both.as_bytes()).unwrap(), PrivateKeyDer::Pkcs8(_)));
        let no_key = parse_key(g.cert_pem.as_bytes()).unwrap_err();
        assert_eq!(no_key.to_string(), "no private key found");
        let no_cert = parse_certs(g.key_pem.as_bytes()).unwrap_err();
        assert_eq!(no_cert.to_string(), "no certificate found");
        let chain = format!("{}{}", g.cert_pem, g.ca_pem);
        assert_eq!(parse_certs(chain.as_bytes()).unwrap().len(), 2);
        let in_file = CertError::NoPrivateKey { path: None }.in_file(Path::new("x/server.key"));
        assert_eq!(in_file.to_string(), "x/server.key: no private key found");
    }
}
