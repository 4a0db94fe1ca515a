//! The Secret with the cluster CA and node certificate (see [`crate::certs`]).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use mcpcluster_api::McpCluster;

use super::meta;
use crate::certs::Bundle;
use crate::names::Names;

/// Keys a TLS Secret must hold (cert-manager's layout).
pub const KEYS: [&str; 3] = ["ca.crt", "tls.crt", "tls.key"];
/// Where the pods mount it.
pub const TLS_DIR: &str = "/etc/mcp-node/tls";

/// The generated Secret holding `bundle`.
pub fn secret(cluster: &McpCluster, names: &Names, bundle: &Bundle) -> Secret {
    let data = [&bundle.ca_crt, &bundle.tls_crt, &bundle.tls_key]
        .iter()
        .zip(KEYS)
        .map(|(v, k)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
        .collect::<BTreeMap<_, _>>();
    Secret {
        metadata: meta(cluster, names, &names.tls_secret),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Default::default()
    }
}

/// The keys of [`KEYS`] that `secret` lacks (empty: usable).
pub fn missing_keys(secret: &Secret) -> Vec<&'static str> {
    KEYS.into_iter()
        .filter(|k| {
            let in_data = secret
                .data
                .as_ref()
                .is_some_and(|d| d.get(*k).is_some_and(|v| !v.0.is_empty()));
            let in_string_data = secret
                .string_data
                .as_ref()
                .is_some_and(|d| d.get(*k).is_some_and(|v| !v.is_empty()));
            !(in_data || in_string_data)
        })
        .collect()
}

/// The keys `secret` holds (in `data` or `stringData`), values left alone.
pub fn keys_of(secret: &Secret) -> Vec<String> {
    let data = secret.data.iter().flat_map(|d| d.keys());
    let string_data = secret.string_data.iter().flat_map(|d| d.keys());
    data.chain(string_data).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::test_support::cluster;
    use mcpcluster_api::McpClusterSpec;

    #[test]
    fn holds_the_three_keys() {
        let c = cluster(McpClusterSpec::default());
        let names = Names::of(&c);
        let b = Bundle {
            ca_crt: "ca".into(),
            tls_crt: "crt".into(),
            tls_key: "key".into(),
        };
        let s = secret(&c, &names, &b);
        assert_eq!(s.metadata.name.as_deref(), Some("demo-tls"));
        assert!(missing_keys(&s).is_empty());
        assert_eq!(s.data.as_ref().expect("data")["tls.key"].0, b"key");
        let empty = Secret::default();
        assert_eq!(missing_keys(&empty), KEYS.to_vec());
    }
}
