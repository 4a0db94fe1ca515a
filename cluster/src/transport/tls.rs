//! Mutual TLS between peers: every node presents a certificate signed by
//! the cluster CA and accepts only peers that do.
//!
//! In Kubernetes the CA and the node certificate come from a Secret in
//! cert-manager's layout (`ca.crt`, `tls.crt`, `tls.key`; the operator
//! generates one wildcard certificate for the peers' headless Service), read
//! with [`PeerTls::from_pem_files`]. For local runs and tests, [`LocalCa`]
//! generates a CA and issues node certificates in memory.

use std::path::Path;
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use super::TransportError;

/// ALPN of the peer protocol; a peer speaking anything else is refused.
pub const ALPN: &[u8] = b"mcpcluster-peer/1";

/// The name local certificates are issued for and peers verify by default.
pub const LOCAL_SERVER_NAME: &str = "mcp-peer";

/// This node's certificate chain and key, and the CA it trusts.
#[derive(Debug)]
pub struct PeerTls {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for PeerTls {
    fn clone(&self) -> Self {
        Self {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

fn bad(what: &'static str) -> impl Fn(rustls::pki_types::pem::Error) -> TransportError {
    move |e| TransportError::Pem(what, e.to_string())
}

impl PeerTls {
    /// From PEM text: the CA certificate, the node's chain, its private key.
    pub fn from_pem(ca: &[u8], chain: &[u8], key: &[u8]) -> Result<Self, TransportError> {
        let ca = CertificateDer::from_pem_slice(ca).map_err(bad("ca.crt"))?;
        let chain = CertificateDer::pem_slice_iter(chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad("tls.crt"))?;
        if chain.is_empty() {
            return Err(TransportError::Pem("tls.crt", "no certificate".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(bad("tls.key"))?;
        Ok(Self { ca, chain, key })
    }

    /// From a directory holding `ca.crt`, `tls.crt` and `tls.key` (a mounted Secret).
    pub fn from_pem_files(dir: &Path) -> Result<Self, TransportError> {
        let read = |name: &'static str| {
            std::fs::read(dir.join(name)).map_err(|e| TransportError::Io(name, e))
        };
        Self::from_pem(&read("ca.crt")?, &read("tls.crt")?, &read("tls.key")?)
    }

    /// The gossip key derived from this node's private key: the same on every node that
    /// shares the cluster Secret's key (the operator issues one certificate for all).
    pub fn gossip_key(&self) -> super::GossipKey {
        super::GossipKey::from_secret(self.key.secret_der())
    }

    fn roots(&self) -> Result<RootCertStore, TransportError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone())?;
        Ok(roots)
    }

    /// The server half: requires a client certificate from the cluster CA.
    pub(crate) fn server_crypto(&self) -> Result<QuicServerConfig, TransportError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider.clone())
                .build()
                .map_err(|e| TransportError::Tls(e.to_string()))?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        QuicServerConfig::try_from(tls).map_err(|e| TransportError::Tls(e.to_string()))
    }

    /// The client half: trusts only the cluster CA, presents our certificate.
    pub(crate) fn client_crypto(&self) -> Result<QuicClientConfig, TransportError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        QuicClientConfig::try_from(tls).map_err(|e| TransportError::Tls(e.to_string()))
    }
}

/// A cluster CA generated in memory, for local runs and tests.
pub struct LocalCa {
    cert: CertificateDer<'static>,
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa").finish_non_exhaustive()
    }
}

impl LocalCa {
    /// A fresh CA (new key each call).
    pub fn generate() -> Result<Self, TransportError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "mcpcluster local CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A node certificate for `names` (DNS names), signed by this CA, for
    /// both server and client use.
    pub fn issue(&self, names: &[&str]) -> Result<PeerTls, TransportError> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or(LOCAL_SERVER_NAME),
        );
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer)?;
        let key = PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| TransportError::Tls(e.to_owned()))?;
        Ok(PeerTls {
            ca: self.cert.clone(),
            chain: vec![cert.der().clone()],
            key,
        })
    }

    /// The CA certificate, PEM (to write `ca.crt` for a local cluster).
    pub fn ca_pem(&self) -> &str {
        &self.pem
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_pem_parses_back() {
        let ca = LocalCa::generate().expect("ca");
        let node = ca.issue(&[LOCAL_SERVER_NAME]).expect("node cert");
        let back = CertificateDer::from_pem_slice(ca.ca_pem().as_bytes()).expect("pem");
        assert_eq!(back, node.ca);
        assert!(node.server_crypto().is_ok());
        assert!(node.client_crypto().is_ok());
    }
}
