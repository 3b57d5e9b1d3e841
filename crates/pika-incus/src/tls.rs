//! TLS for the HTTPS transport: PEM parsing, and a rustls verifier that trusts exactly one pinned
//! server certificate.
//!
//! Incus servers use self-signed certificates whose names rarely match the address a client dials
//! (127.0.0.1, a cluster member's IP). Pinning therefore compares the certificate itself, byte for
//! byte, the way the `incus` CLI trusts a remote's certificate; the handshake signature is still
//! checked, so the peer must hold the pinned certificate's key.

use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::error::{Error, Result};

/// All certificates of a PEM text, in order; at least one.
pub(crate) fn certs_from_pem(what: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::config(what, format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(Error::config(
            what,
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in the text",
        ));
    }
    Ok(certs)
}

pub(crate) fn key_from_pem(what: &str, pem: &str) -> Result<PrivateKeyDer<'static>> {
    // The error text of pki-types names the PEM section, never key material.
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| Error::config(what, format!("not a PEM private key: {e}")))
}

/// The SHA-256 fingerprint (lowercase hex) of a DER certificate, as Incus names certificates.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}

/// Which server certificates a [`PinnedVerifier`] accepts.
#[derive(Debug, Clone)]
pub(crate) enum ServerTrust {
    /// Exactly this certificate.
    Pinned(CertificateDer<'static>),
    /// Any certificate (`insecure_tls`); the handshake signature is still checked.
    Any,
}

/// A rustls client config (TLS 1.2/1.3, aws-lc-rs) that trusts `trust` and presents the client
/// certificate chain `client`.
pub(crate) fn client_config(
    what: &str,
    trust: ServerTrust,
    client: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = PinnedVerifier {
        trust,
        algorithms: provider.signature_verification_algorithms,
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(what, format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(client.0, client.1)
        .map_err(|e| Error::config(what, format!("client certificate and key do not fit: {e}")))?;
    Ok(config)
}

#[derive(Debug)]
struct PinnedVerifier {
    trust: ServerTrust,
    algorithms: WebPkiSupportedAlgorithms,
}

/// Why a server certificate was refused; rustls carries it to the transport error message.
#[derive(thiserror::Error)]
#[error("the server certificate (sha256 {presented}) is not the pinned one (sha256 {pinned})")]
struct PinMismatch {
    presented: String,
    pinned: String,
}

/// rustls shows the cause with `{:?}`: make that the readable sentence too.
impl std::fmt::Debug for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.trust {
            ServerTrust::Any => Ok(ServerCertVerified::assertion()),
            ServerTrust::Pinned(pinned) if pinned.as_ref() == end_entity.as_ref() => {
                Ok(ServerCertVerified::assertion())
            }
            ServerTrust::Pinned(pinned) => {
                let mismatch = PinMismatch {
                    presented: fingerprint(end_entity),
                    pinned: fingerprint(pinned),
                };
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::Other(rustls::OtherError(Arc::new(mismatch))),
                ))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
