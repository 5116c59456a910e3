//! TLS through rustls: libpq's `prefer`/`require` (encrypt, do not verify) and `verify-full`.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{PgConfig, SslMode};
use crate::error::PgError;

/// The connector for `config`, or `None` for `sslmode=disable`. Built once per writer: it reads
/// `sslrootcert` and the root store up front, so a bad certificate file fails `connect`, not
/// the first upsert.
pub(crate) fn connector(config: &PgConfig) -> Result<Option<MakeRustlsConnect>, PgError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| PgError::Config(format!("TLS setup failed: {e}")))?;
    let client = match config.sslmode() {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer | SslMode::Require => builder.dangerous().with_custom_certificate_verifier(Arc::new(EncryptOnly(provider))).with_no_client_auth(),
        SslMode::VerifyFull => {
            let mut roots = RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            if let Some(path) = config.sslrootcert() {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<_, _>>())
                    .map_err(|e| PgError::Config(format!("sslrootcert {}: cannot read PEM certificates: {e}", path.display())))?;
                if certs.is_empty() {
                    return Err(PgError::Config(format!("sslrootcert {} holds no PEM certificate", path.display())));
                }
                for cert in certs {
                    roots.add(cert).map_err(|e| PgError::Config(format!("sslrootcert {}: {e}", path.display())))?;
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Some(MakeRustlsConnect::new(client)))
}

/// libpq's `sslmode=require` without a root certificate: the channel is encrypted and the
/// handshake signatures are checked (so the peer holds the key of the certificate it shows),
/// but the certificate itself is not checked against any authority.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
