//! Peer certificates: PEM files (a mounted Secret in Kubernetes), or a CA and certificate
//! generated in memory when none is configured (dev mode), or written once to a directory for
//! a local multi-process cluster (`mcp-node --write-dev-certs DIR`).

use std::path::Path;

use mcp_cluster::transport::{LocalCa, PeerTls};
use mcpcluster_api::ClusterTlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::config_error::ConfigError;

const FIELD: &str = "cluster.tls";

/// The name generated certificates are issued for when `cluster.tls.serverName` is unset.
pub const DEFAULT_SERVER_NAME: &str = mcp_cluster::transport::LOCAL_SERVER_NAME;

fn bad(message: String) -> ConfigError {
    ConfigError::Field {
        field: FIELD,
        message,
    }
}

/// The configured certificates, or generated ones (`true`) when no file is named.
pub fn load(c: &ClusterTlsConfig) -> Result<(PeerTls, bool), ConfigError> {
    let files = [&c.ca_file, &c.cert_file, &c.key_file];
    if files.iter().all(|f| f.is_empty()) {
        let ca = LocalCa::generate().map_err(|e| bad(format!("generating a dev CA: {e}")))?;
        let tls = ca
            .issue(&[c.server_name.as_str()])
            .map_err(|e| bad(format!("generating a dev certificate: {e}")))?;
        return Ok((tls, true));
    }
    if files.iter().any(|f| f.is_empty()) {
        return Err(bad(
            "set caFile, certFile and keyFile together (or none for a generated dev CA)".into(),
        ));
    }
    let read = |p: &String| std::fs::read(p).map_err(|e| bad(format!("cannot read {p}: {e}")));
    let tls = PeerTls::from_pem(
        &read(&c.ca_file)?,
        &read(&c.cert_file)?,
        &read(&c.key_file)?,
    )
    .map_err(|e| bad(e.to_string()))?;
    Ok((tls, false))
}

/// Writes `ca.crt`, `tls.crt` and `tls.key` (one certificate every local node can share, for
/// `server_name`) into `dir`, creating it.
pub fn write_dev_certs(dir: &Path, server_name: &str) -> anyhow::Result<()> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "mcpcluster dev CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(vec![server_name.to_owned()])?;
    leaf.distinguished_name
        .push(DnType::CommonName, server_name);
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = leaf.signed_by(&key, &issuer)?;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("ca.crt"), ca_cert.pem())?;
    std::fs::write(dir.join("tls.crt"), cert.pem())?;
    std::fs::write(dir.join("tls.key"), key.serialize_pem())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_dev_certs_load_back() {
        let dir = std::env::temp_dir().join(format!("mcp-node-tls-{}", std::process::id()));
        write_dev_certs(&dir, "mcp-peer").expect("written");
        let path = |f: &str| dir.join(f).display().to_string();
        let c = ClusterTlsConfig {
            ca_file: path("ca.crt"),
            cert_file: path("tls.crt"),
            key_file: path("tls.key"),
            ..ClusterTlsConfig::default()
        };
        let (_, dev) = load(&c).expect("loads");
        assert!(!dev);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn partial_files_are_refused() {
        let c = ClusterTlsConfig {
            ca_file: "/x/ca.crt".into(),
            ..ClusterTlsConfig::default()
        };
        let err = load(&c).expect_err("partial");
        assert!(err.to_string().contains("cluster.tls"), "{err}");
    }
}
