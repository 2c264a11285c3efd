//! TLS for `https://` endpoints (feature `otlp-tls`): rustls with the ring provider, trusting
//! the system's root certificates and any extra CA the settings give.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::error::OtlpError;

/// The certificates in a PEM text; an error when there is none or one cannot be parsed.
pub(super) fn parse_ca_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate ({e})"))?;
    if certs.is_empty() {
        return Err("no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)".into());
    }
    let mut probe = RootCertStore::empty();
    for cert in &certs {
        probe
            .add(cert.clone())
            .map_err(|e| format!("a certificate that cannot be trusted as a CA ({e})"))?;
    }
    Ok(certs)
}

/// The system's roots (as rustls-native-certs finds them: the platform's store, or the files
/// `SSL_CERT_FILE` / `SSL_CERT_DIR` name) and the extra CA certificates in `extra_ca_pem`.
pub(super) fn root_store(extra_ca_pem: &[u8]) -> Result<RootCertStore, OtlpError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if !extra_ca_pem.is_empty() {
        for cert in parse_ca_pem(extra_ca_pem).map_err(OtlpError::Tls)? {
            roots
                .add(cert)
                .map_err(|e| OtlpError::Tls(format!("an extra CA certificate: {e}")))?;
        }
    }
    if roots.is_empty() {
        let why = native
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(OtlpError::Tls(format!(
            "no trusted root certificate: none found on this system{why} and no extra CA given \
             (install the system's CA bundle, such as the ca-certificates package, or give one \
             with tls_ca_pem, tls_ca_file or OTEL_EXPORTER_OTLP_CERTIFICATE)"
        )));
    }
    Ok(roots)
}

/// The rustls client settings: ring, TLS 1.2 and 1.3, `roots`.
pub(super) fn client_config(roots: RootCertStore) -> Result<rustls::ClientConfig, OtlpError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| OtlpError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The HTTPS connector of the OTLP/HTTP client (HTTP/1.1; plain `http://` still works).
pub(super) type HttpsConnector =
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

pub(super) fn https_connector(extra_ca_pem: &[u8]) -> Result<HttpsConnector, OtlpError> {
    let tls = client_config(root_store(extra_ca_pem)?)?;
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build())
}

/// tonic's TLS settings with the same roots (tonic adds the `h2` ALPN itself).
#[cfg(feature = "otlp-grpc")]
pub(super) fn tonic_tls(
    extra_ca_pem: &[u8],
) -> Result<tonic::transport::ClientTlsConfig, OtlpError> {
    let roots = root_store(extra_ca_pem)?;
    Ok(tonic::transport::ClientTlsConfig::new().trust_anchors(roots.roots))
}
