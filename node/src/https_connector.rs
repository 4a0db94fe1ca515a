//! The connector of the node's outbound HTTP clients (the OIDC key fetcher, upstream MCP
//! servers): http and https, the system's root certificates.

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;

/// http and https with the system's root certificates. Without a CA bundle (a FROM-scratch
/// image) the root store is empty: https then fails with a certificate error until
/// `SSL_CERT_FILE` names one. `who` names the client in the warning that says so.
pub fn https_or_http(who: &str) -> HttpsConnector<HttpConnector> {
    match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(b) => b.https_or_http().enable_http1().build(),
        Err(e) => {
            tracing::warn!(error = %e, client = who, "no native root certificates found");
            let tls = rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .build()
        }
    }
}
