//! [`HeaderValue`]: the value of one configured upstream header — plain, or taken from a
//! Kubernetes Secret (`valueFrom: {secretKeyRef: {name, key}}`, as a container's `env` says it).
//!
//! A node reads a Secret's key from the file `<secretsDir>/<name>/<key>`, which is where the
//! operator mounts it in the pods (a Secret volume holding only the keys named); a node run by
//! hand reads the same layout from its own `secretsDir`. The value itself is never part of the
//! configuration, the ConfigMap or a log line.
//!
//! Parsing never fails on a value of the wrong shape: it becomes [`HeaderValue::Invalid`],
//! which [`crate::UpstreamConfig::validate`] refuses naming the field. The operator reads any
//! `McpCluster` the API server stored (the CRD cannot type a value that is a string or an
//! object, so it accepts any), and a refusal there is a status condition, not an object the
//! controller cannot decode.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// One header's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// The value as written in the configuration.
    Plain(String),
    /// The value of a key of a Secret.
    Secret(SecretKeyRef),
    /// Neither: kept as written, with why it was not understood.
    Invalid {
        /// What the configuration held.
        raw: Value,
        /// Why it is not a header value.
        why: String,
    },
}

impl From<&str> for HeaderValue {
    fn from(s: &str) -> Self {
        HeaderValue::Plain(s.to_owned())
    }
}

/// A key of a Secret in the cluster's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// The Secret's name (a DNS subdomain), in the `McpCluster`'s namespace.
    pub name: String,
    /// The key within the Secret (`-`, `_`, `.` and alphanumerics). Its value is sent without
    /// a trailing line break.
    pub key: String,
}

/// `{valueFrom: {secretKeyRef: ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FromSecret {
    /// Where the value comes from.
    value_from: Source,
}

/// `{secretKeyRef: ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Source {
    /// A key of a Secret: mounted into the pods by the operator, read by the node from
    /// `<secretsDir>/<name>/<key>`.
    secret_key_ref: SecretKeyRef,
}

const SHAPE: &str = "must be a string or `valueFrom: {secretKeyRef: {name, key}}`";

impl<'de> Deserialize<'de> for HeaderValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(d)?;
        Ok(match raw {
            Value::String(s) => HeaderValue::Plain(s),
            Value::Object(_) => match serde_json::from_value::<FromSecret>(raw.clone()) {
                Ok(f) => HeaderValue::Secret(f.value_from.secret_key_ref),
                Err(e) => HeaderValue::Invalid {
                    raw,
                    why: format!("{SHAPE}: {e}"),
                },
            },
            raw => HeaderValue::Invalid {
                raw,
                why: SHAPE.to_owned(),
            },
        })
    }
}

impl Serialize for HeaderValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            HeaderValue::Plain(v) => v.serialize(s),
            HeaderValue::Secret(r) => FromSecret {
                value_from: Source {
                    secret_key_ref: r.clone(),
                },
            }
            .serialize(s),
            HeaderValue::Invalid { raw, .. } => raw.serialize(s),
        }
    }
}

impl JsonSchema for HeaderValue {
    fn schema_name() -> Cow<'static, str> {
        "HeaderValue".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let from = generator.subschema_for::<FromSecret>();
        json_schema!({
            "description": "A header's value: a string, or `valueFrom: {secretKeyRef: {name, key}}` (a key of a Secret in the cluster's namespace, read from `<secretsDir>/<name>/<key>`).",
            "anyOf": [{ "type": "string" }, from]
        })
    }
}

/// Whether `s` is a Kubernetes object name (an RFC 1123 DNS subdomain: at most 253 of
/// `a-z 0-9 - .`, dot-separated labels starting and ending with a letter or digit).
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.')
            .all(|l| !l.is_empty() && crate::upstream_config::is_dns_label(l))
}

/// Whether `s` is a valid Secret key (at most 253 of `-`, `_`, `.` and ASCII alphanumerics;
/// not `.` or `..`).
pub fn is_secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl SecretKeyRef {
    /// Checks the reference: `Err((field, problem))`, `field` relative to the header value.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !is_dns_subdomain(&self.name) {
            return Err((
                "valueFrom.secretKeyRef.name".into(),
                format!("`{}` is not a Secret name (a DNS subdomain)", self.name),
            ));
        }
        if !is_secret_key(&self.key) {
            return Err((
                "valueFrom.secretKeyRef.key".into(),
                format!(
                    "`{}` is not a Secret key (1-253 of `-`, `_`, `.`, letters and digits)",
                    self.key
                ),
            ));
        }
        Ok(())
    }

    /// The file a node reads the value from, relative to its `secretsDir`.
    pub fn relative_path(&self) -> String {
        format!("{}/{}", self.name, self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_keeps_anything_else_for_validation() {
        let v: std::collections::BTreeMap<String, HeaderValue> = serde_yaml_ng::from_str(
            "A: plain\nB: {valueFrom: {secretKeyRef: {name: creds, key: token}}}\nC: {valueFrom: {secretKeyRf: {}}}\nD: 5\n",
        )
        .expect("parses");
        assert_eq!(v["A"], HeaderValue::Plain("plain".into()));
        assert_eq!(
            v["B"],
            HeaderValue::Secret(SecretKeyRef {
                name: "creds".into(),
                key: "token".into()
            })
        );
        let HeaderValue::Invalid { why, .. } = &v["C"] else {
            panic!("{:?}", v["C"]);
        };
        assert!(why.contains("secretKeyRf"), "{why}");
        assert!(
            matches!(&v["D"], HeaderValue::Invalid { why, .. } if why.contains("must be a string"))
        );
        // Written back as read.
        let text = serde_yaml_ng::to_string(&v).expect("serializes");
        let back: std::collections::BTreeMap<String, HeaderValue> =
            serde_yaml_ng::from_str(&text).expect("parses again");
        assert_eq!(back, v);
    }

    #[test]
    fn names_and_keys() {
        assert!(is_dns_subdomain("my-creds.v1"));
        assert!(!is_dns_subdomain("My-creds"));
        assert!(!is_dns_subdomain("a..b"));
        assert!(!is_dns_subdomain(""));
        assert!(is_secret_key("api_key.txt"));
        assert!(is_secret_key("API-Key"));
        assert!(!is_secret_key(".."));
        assert!(!is_secret_key("a/b"));
        let r = SecretKeyRef {
            name: "creds".into(),
            key: "a/b".into(),
        };
        assert_eq!(
            r.validate().expect_err("bad key").0,
            "valueFrom.secretKeyRef.key"
        );
    }
}
