//! The cluster CA and the node certificate for the peers' mutual TLS, generated once per
//! cluster (rcgen) and kept in a Secret in cert-manager's layout (`ca.crt`, `tls.crt`,
//! `tls.key`).
//!
//! One wildcard certificate covers every pod of the headless Service
//! (`*.<peers>.<ns>.svc[.cluster.local]`), so scaling needs no new certificate and the CA's
//! private key is never stored: it signs once and is dropped. Rotation is deleting the Secret
//! (the next reconcile generates a new pair; the pods pick it up on restart).

use k8s_openapi::jiff::{Timestamp, tz::TimeZone};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::names::Names;

/// Years a generated certificate stays valid.
pub const VALID_YEARS: i16 = 10;

/// A generated CA and node certificate, PEM-encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The cluster CA certificate (`ca.crt`).
    pub ca_crt: String,
    /// The node certificate, for server and client use (`tls.crt`).
    pub tls_crt: String,
    /// The node certificate's private key (`tls.key`).
    pub tls_key: String,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle").finish_non_exhaustive()
    }
}

/// DNS names the node certificate is valid for.
pub fn dns_names(names: &Names) -> Vec<String> {
    let (ns, peers, client) = (&names.namespace, &names.peers, &names.cluster);
    // `<peers>.<ns>.svc` is also the name the nodes verify each other's certificate against
    // (`cluster.tls.serverName` in the rendered config).
    vec![
        format!("*.{peers}.{ns}.svc"),
        format!("*.{peers}.{ns}.svc.cluster.local"),
        format!("{peers}.{ns}.svc"),
        format!("{client}.{ns}.svc"),
        format!("{client}.{ns}.svc.cluster.local"),
    ]
}

fn validity(params: &mut CertificateParams, now: Timestamp) {
    let day = now.to_zoned(TimeZone::UTC);
    let (y, m, d) = (i32::from(day.year()), day.month() as u8, day.day() as u8);
    params.not_before = rcgen::date_time_ymd(y, m, d.min(28));
    params.not_after = rcgen::date_time_ymd(y + i32::from(VALID_YEARS), m, d.min(28));
}

/// Generates a CA for the cluster and a node certificate signed by it.
pub fn generate(names: &Names, now: Timestamp) -> Result<Bundle, rcgen::Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("mcpcluster CA {}/{}", names.namespace, names.cluster),
    );
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca, now);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let node_key = KeyPair::generate()?;
    let mut node = CertificateParams::new(dns_names(names))?;
    node.distinguished_name.push(
        DnType::CommonName,
        format!("{}.{}", names.peers, names.namespace),
    );
    node.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    node.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    validity(&mut node, now);
    let node_cert = node.signed_by(&node_key, &issuer)?;
    Ok(Bundle {
        ca_crt: ca_cert.pem(),
        tls_crt: node_cert.pem(),
        tls_key: node_key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpcluster_api::McpCluster;

    #[test]
    fn generates_a_ca_and_a_wildcard_node_certificate() {
        let mut c = McpCluster::new("demo", Default::default());
        c.metadata.namespace = Some("prod".into());
        let names = Names::of(&c);
        assert!(dns_names(&names).contains(&"*.demo-peers.prod.svc".to_owned()));
        let now = Timestamp::from_second(1_800_000_000).expect("time");
        let a = generate(&names, now).expect("generates");
        assert!(a.ca_crt.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(a.tls_crt.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(a.tls_key.contains("PRIVATE KEY"));
        assert_ne!(a.ca_crt, a.tls_crt);
        // Fresh keys every time: which is why the reconciler never regenerates an existing one.
        let b = generate(&names, now).expect("generates");
        assert_ne!(a.tls_key, b.tls_key);
        assert!(!format!("{a:?}").contains("PRIVATE"));
    }
}
