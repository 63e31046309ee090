//! TLS for the link to the master (rustls, ring provider).
//!
//! Owns building the client configuration from the `[source.tls]` settings: the CA to trust,
//! an optional client certificate, the name to verify. Verification is on unless the user
//! explicitly turned it off; without a CA file and with verification on, there is nothing
//! to trust, which is an error, never a silent downgrade.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The name to verify; default: the host part of the address.
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
    #[error("TLS: {0}")]
    Config(String),
}

fn file_err(p: &std::path::Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: p.display().to_string(),
        msg: e.to_string(),
    }
}

/// Accepts any certificate: only when the user set `insecure_skip_verify = true`.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub fn client_config(t: &TlsSettings) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = if t.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        let ca = t.ca_file.as_ref().ok_or_else(|| {
            TlsError::Config("ca_file is required unless insecure_skip_verify = true".into())
        })?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).map_err(|e| file_err(ca, e))? {
            roots
                .add(cert.map_err(|e| file_err(ca, e))?)
                .map_err(|e| file_err(ca, e))?;
        }
        if roots.is_empty() {
            return Err(file_err(ca, "no certificate in the file"));
        }
        builder.with_root_certificates(roots)
    };
    let cfg = match (&t.cert_file, &t.key_file) {
        (Some(c), Some(k)) => {
            let chain = CertificateDer::pem_file_iter(c)
                .map_err(|e| file_err(c, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| file_err(c, e))?;
            let key = PrivateKeyDer::from_pem_file(k).map_err(|e| file_err(k, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::Config(e.to_string()))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// The name to present and verify: the configured one, else the address's host.
pub fn server_name(t: &TlsSettings, address: &str) -> Result<ServerName<'static>, TlsError> {
    let host = match &t.server_name {
        Some(n) => n.clone(),
        None => address
            .rsplit_once(':')
            .map_or(address, |(h, _)| h)
            .trim_matches(['[', ']'])
            .to_string(),
    };
    ServerName::try_from(host.clone())
        .map_err(|e| TlsError::Config(format!("server name {host:?}: {e}")))
}
