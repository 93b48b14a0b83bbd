//! The server's side of TLS setup: PEM files in, one rustls `ServerConfig` out.
//!
//! Every `tls:` listener shares one [`ServerTls`], and every worker a copy of it (the config
//! and its cache of sessions to resume are shared: a client resumes whichever worker the
//! kernel hands it to). Each new client gets a session
//! made from its current config; SIGHUP makes a new config from the files ([`ServerTls::reload`])
//! and swaps it in, so clients that came before keep the certificate they were shown, and new
//! ones are shown the new one. A config that cannot be made (a missing file, a key that is not
//! the certificate's) leaves the old one in place: certificates rotate every 60 to 90 days today,
//! and a renewal that goes wrong must not take the service down.
//!
//! Only TLS 1.3 and 1.2 are offered, with the ring provider's cipher suites (all AEAD, all with
//! forward secrecy). With `--tls-client-ca`, a client must show a certificate signed by one of
//! those CAs, or its handshake fails.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{TlsFile, TlsFiles, TlsSession, TlsSetupError};

/// Sessions a reactor remembers for clients that resume (TLS 1.3 tickets, 1.2 session ids).
/// About 100 bytes each; the oldest are forgotten first.
const RESUMABLE_SESSIONS: usize = 4096;

/// The TLS setup of a reactor's `tls:` listeners, and the files it was made from.
#[derive(Debug, Clone)]
pub struct ServerTls {
    files: TlsFiles,
    config: Arc<ServerConfig>,
}

impl ServerTls {
    /// Reads `files` and makes the config; an error names the file and what is wrong with it.
    pub fn load(files: TlsFiles) -> Result<ServerTls, TlsSetupError> {
        let config = Arc::new(make_config(&files)?);
        Ok(ServerTls { files, config })
    }

    /// Reads the files again: new clients get the new config. On an error the old one stays.
    /// The sessions remembered for resumption are kept: they are shared by every worker (each
    /// reloads on its own, from the same config), and a client that resumes is not made to
    /// pay for a full handshake because a certificate was renewed. Not with `--tls-client-ca`:
    /// a resumed session is not checked against the CAs again, so a client whose CA was taken
    /// out of the file could go on resuming; there the sessions are forgotten.
    pub fn reload(&mut self) -> Result<(), TlsSetupError> {
        let mut config = make_config(&self.files)?;
        if self.files.client_ca.is_none() {
            config.session_storage = Arc::clone(&self.config.session_storage);
        }
        self.config = Arc::new(config);
        Ok(())
    }

    /// Where the certificate chain is read from (for logs).
    pub fn cert_path(&self) -> &Path {
        &self.files.cert
    }

    /// A session for a client that just connected, with the current config.
    pub fn session(&self) -> Result<TlsSession, rustls::Error> {
        TlsSession::new(Arc::clone(&self.config))
    }
}

/// The config `files` describe.
fn make_config(files: &TlsFiles) -> Result<ServerConfig, TlsSetupError> {
    let provider = super::crypto_provider();
    let chain = read_certificates(TlsFile::Cert, &files.cert)?;
    let key = read_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| failed(TlsFile::Cert, &files.cert, e))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let verifier = client_verifier(path, &provider)?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| match e {
        // The key is the one at fault when it is not the certificate's.
        rustls::Error::InconsistentKeys(_) => TlsSetupError {
            file: TlsFile::Key,
            path: files.key.clone(),
            why: format!("is not the key of {}", files.cert.display()),
        },
        other => failed(TlsFile::Key, &files.key, other),
    })?;
    config.session_storage = ServerSessionMemoryCache::new(RESUMABLE_SESSIONS);
    Ok(config)
}

/// Every certificate in the PEM file at `path`, in order; at least one.
fn read_certificates(
    file: TlsFile,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| failed(file, path, pem_why(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(file, path, pem_why(e)))?;
    if certificates.is_empty() {
        return Err(failed(file, path, "holds no PEM certificate"));
    }
    Ok(certificates)
}

/// The first private key in the PEM file at `path` (PKCS#8, PKCS#1 or SEC1).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            failed(TlsFile::Key, path, "holds no PEM private key")
        }
        other => failed(TlsFile::Key, path, pem_why(other)),
    })
}

/// A verifier that requires a client certificate signed by one of the CAs in `path`.
fn client_verifier(
    path: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(TlsFile::ClientCa, path)? {
        roots
            .add(certificate)
            .map_err(|e| failed(TlsFile::ClientCa, path, e))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|e| failed(TlsFile::ClientCa, path, e))
}

/// A PEM reading error in a few words: the OS error of a missing file, not its Debug form.
fn pem_why(error: rustls_pki_types::pem::Error) -> String {
    match error {
        rustls_pki_types::pem::Error::Io(e) => e.to_string(),
        other => format!("not valid PEM ({other:?})"),
    }
}

/// The error for `file` at `path`.
fn failed(file: TlsFile, path: &Path, why: impl ToString) -> TlsSetupError {
    TlsSetupError {
        file,
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn certs(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/certs")
            .join(name)
    }

    fn files(cert: &str, key: &str) -> TlsFiles {
        TlsFiles {
            cert: certs(cert),
            key: certs(key),
            client_ca: None,
        }
    }

    #[test]
    fn the_test_certificates_load() {
        ServerTls::load(files("server.pem", "server.key")).unwrap();
        ServerTls::load(TlsFiles {
            client_ca: Some(certs("client-ca.pem")),
            ..files("server.pem", "server.key")
        })
        .unwrap();
    }

    #[test]
    fn each_bad_file_is_named() {
        let error = ServerTls::load(files("nosuch.pem", "server.key")).unwrap_err();
        assert_eq!(error.file, TlsFile::Cert);
        assert!(error.to_string().contains("nosuch.pem"), "{error}");

        let error = ServerTls::load(files("server.key", "server.key")).unwrap_err();
        assert_eq!(error.file, TlsFile::Cert);
        assert!(error.why.contains("no PEM certificate"), "{error}");

        let error = ServerTls::load(files("server.pem", "server.pem")).unwrap_err();
        assert_eq!(error.file, TlsFile::Key);
        assert!(error.why.contains("no PEM private key"), "{error}");

        let error = ServerTls::load(files("server.pem", "renewed.key")).unwrap_err();
        assert_eq!(error.file, TlsFile::Key);
        assert!(error.why.contains("is not the key of"), "{error}");
        assert!(
            error.to_string().starts_with("--tls-key "),
            "names the flag: {error}"
        );
    }

    #[test]
    fn a_failed_reload_keeps_the_old_config() {
        let dir = std::env::temp_dir().join(format!("echoloop-tls-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::copy(certs("server.pem"), &cert).unwrap();
        std::fs::copy(certs("server.key"), &key).unwrap();
        let mut tls = ServerTls::load(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: None,
        })
        .unwrap();
        let before = Arc::clone(&tls.config);
        std::fs::write(&cert, b"garbage").unwrap();
        assert!(tls.reload().is_err());
        assert!(Arc::ptr_eq(&before, &tls.config), "the old config stays");
        std::fs::copy(certs("renewed.pem"), &cert).unwrap();
        std::fs::copy(certs("renewed.key"), &key).unwrap();
        tls.reload().unwrap();
        assert!(!Arc::ptr_eq(&before, &tls.config), "the new one is in use");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
