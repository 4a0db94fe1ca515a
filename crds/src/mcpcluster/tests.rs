//! Tests of the generated CRD: structural schema, defaults, CEL rules (evaluated client-side
//! with `kube::core::cel`, which applies the schema's defaults first, as the API server does),
//! the samples, and that the committed YAML is current.

use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResourceExt;
use kube::core::cel::{Validator, apply_defaults, compile_schema};
use serde_json::{Value, json};

use super::*;

/// The CRD's `openAPIV3Schema` as JSON.
fn root_schema() -> Value {
    let crd = McpCluster::crd();
    let version = crd.spec.versions.first().expect("one version").clone();
    let schema = version
        .schema
        .and_then(|s| s.open_api_v3_schema)
        .expect("a schema");
    serde_json::to_value(schema).expect("schema serializes")
}

fn spec_schema() -> Value {
    root_schema()["properties"]["spec"].clone()
}

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("readable");
    serde_yaml_ng::from_str(&text).expect("valid YAML")
}

/// Where the schema deliberately accepts any value.
const PRESERVE_UNKNOWN_ALLOWED: &[&str] = &[
    ".spec.node.content.tools[].inputSchema",
    // A header's value: a string or `valueFrom: {secretKeyRef}` (no structural type says
    // "either"); the operator's validation refuses other shapes.
    ".spec.node.upstreams[].headers{}",
];

/// Checks Kubernetes' structural-schema rules (and a few apiextensions validations) on one
/// node and its children; returns violations as `path: problem`.
fn structural_violations(schema: &Value, path: &str, in_junctor: bool, out: &mut Vec<String>) {
    let Some(map) = schema.as_object() else {
        out.push(format!("{path}: boolean schema"));
        return;
    };
    let has = |k: &str| map.contains_key(k);
    let preserve = map.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    let int_or_string = map.get("x-kubernetes-int-or-string") == Some(&json!(true));
    if in_junctor {
        for k in [
            "type",
            "default",
            "description",
            "nullable",
            "additionalProperties",
        ] {
            if has(k) {
                out.push(format!("{path}: `{k}` inside anyOf/oneOf/allOf/not"));
            }
        }
    } else if !has("type") && !preserve && !int_or_string {
        out.push(format!("{path}: no type"));
    }
    if preserve && !PRESERVE_UNKNOWN_ALLOWED.contains(&path) {
        out.push(format!(
            "{path}: unexpected x-kubernetes-preserve-unknown-fields"
        ));
    }
    for k in [
        "$ref",
        "const",
        "definitions",
        "$defs",
        "uniqueItems",
        "$schema",
    ] {
        if has(k) {
            out.push(format!("{path}: `{k}` is not allowed in a CRD schema"));
        }
    }
    if has("properties") && has("additionalProperties") {
        out.push(format!("{path}: both properties and additionalProperties"));
    }
    if let Some(format) = map.get("format").and_then(Value::as_str) {
        const KNOWN: &[&str] = &[
            "int32",
            "int64",
            "float",
            "double",
            "date-time",
            "date",
            "byte",
        ];
        if !KNOWN.contains(&format) {
            out.push(format!("{path}: format {format} unknown to Kubernetes"));
        }
    }
    if map.get("default") == Some(&Value::Null) {
        out.push(format!("{path}: default null"));
    }
    if let Some(Value::Object(props)) = map.get("properties") {
        for (name, prop) in props {
            structural_violations(prop, &format!("{path}.{name}"), false, out);
        }
    }
    if let Some(items) = map.get("items") {
        structural_violations(items, &format!("{path}[]"), false, out);
    }
    if let Some(extra @ Value::Object(_)) = map.get("additionalProperties") {
        structural_violations(extra, &format!("{path}{{}}"), false, out);
    }
    for k in ["anyOf", "oneOf", "allOf"] {
        for branch in map.get(k).and_then(Value::as_array).into_iter().flatten() {
            structural_violations(branch, &format!("{path}<{k}>"), true, out);
        }
    }
}

#[test]
fn schema_is_structural() {
    let mut violations = Vec::new();
    structural_violations(&root_schema(), "", false, &mut violations);
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn crd_identity_and_subresources() {
    let crd = McpCluster::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("mcpclusters.mcpcluster.dev")
    );
    assert_eq!(crd.spec.group, "mcpcluster.dev");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.kind, "McpCluster");
    assert_eq!(crd.spec.names.short_names, Some(vec!["mcpc".to_owned()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    let sub = version.subresources.as_ref().expect("subresources");
    assert!(sub.status.is_some());
    let scale = sub.scale.as_ref().expect("scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    let columns: Vec<&str> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .filter(|c| c.priority.unwrap_or(0) == 0)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        ["Replicas", "Ready", "Connections", "Available", "Age"]
    );
}

#[test]
fn minimal_spec_deserializes_to_the_defaults() {
    let spec: McpClusterSpec = serde_json::from_value(json!({})).expect("empty spec parses");
    assert_eq!(spec, McpClusterSpec::default());
    assert_eq!(spec.replicas, None);
    assert!(!spec.autoscaling.enabled);
    assert_eq!(spec.autoscaling.target_connections_per_node, 25_000);
    assert_eq!(
        spec.image,
        format!("ghcr.io/mcpcluster/mcp-node:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(spec.replication_factor, 2);
    assert_eq!(
        (spec.ports.mcp, spec.ports.admin, spec.ports.peer),
        (8080, 9090, 7946)
    );
    assert_eq!(spec.tls.secret_name, None);
    assert_eq!(spec.node, crate::NodeConfig::default());
    assert!(spec.pod_disruption_budget.enabled);
    assert_eq!(
        spec.pod_disruption_budget.max_unavailable,
        IntOrString::Int(1)
    );
    assert_eq!(spec.service.type_, ServiceType::ClusterIP);
}

/// What the API server stores for `spec: {}` (its schema defaulting) equals what serde
/// gives for the same input: one set of defaults, not two.
#[test]
fn schema_defaults_match_serde_defaults() {
    let schema = spec_schema();
    let defaulted = apply_defaults(&schema, &json!({}));
    let from_server: McpClusterSpec =
        serde_json::from_value(defaulted.clone()).expect("defaulted spec parses");
    assert_eq!(from_server, McpClusterSpec::default());
    // Every defaulted field is in the schema (nothing is left to serde alone) ...
    let serde_view = serde_json::to_value(McpClusterSpec::default()).expect("serializes");
    for (key, value) in serde_view.as_object().expect("object") {
        assert_eq!(
            defaulted.get(key),
            Some(value),
            "schema default of spec.{key}"
        );
    }
    // ... except the node configuration, whose defaults stay the node's (see schema.rs).
    assert!(defaulted.get("node").is_none());
    assert!(defaulted.get("replicas").is_none());
}

#[test]
fn node_config_is_embedded_without_defaults() {
    let node = &spec_schema()["properties"]["node"];
    let limits = &node["properties"]["limits"]["properties"];
    assert_eq!(limits["maxSessions"]["type"], "integer");
    assert_eq!(limits["maxSessions"]["format"], "int64");
    assert!(node.get("default").is_none());
    assert!(limits["maxSessions"].get("default").is_none());
    let tool = &node["properties"]["content"]["properties"]["tools"]["items"];
    assert_eq!(
        tool["properties"]["inputSchema"]["x-kubernetes-preserve-unknown-fields"],
        true
    );
}

/// Every rule compiles, and each cross-field rule sits where it should.
#[test]
fn cel_rules_are_present_and_compile() {
    let root = root_schema();
    let compiled = compile_schema(&root);
    let mut errors = Vec::new();
    collect_compile_errors(&compiled, &mut errors);
    assert!(errors.is_empty(), "{errors:#?}");

    let spec = &root["properties"]["spec"];
    let rules = |schema: &Value| -> Vec<String> {
        schema["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r["rule"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let spec_rules = rules(spec).join("\n");
    assert!(spec_rules.contains("self.replicas >= self.autoscaling.minReplicas"));
    assert!(spec_rules.contains("self.replicationFactor <= self.autoscaling.maxReplicas"));
    assert!(spec_rules.contains("!has(self.node.listen)"));
    assert!(spec_rules.contains("!has(self.node.admin)"));
    assert_eq!(
        rules(&spec["properties"]["autoscaling"]),
        ["self.minReplicas <= self.maxReplicas"]
    );
    assert!(rules(&spec["properties"]["ports"])[0].contains("self.mcp != self.admin"));
    assert!(rules(&spec["properties"]["podDisruptionBudget"])[0].contains("maxUnavailable"));
    assert!(rules(&spec["properties"]["networkPolicy"])[0].contains("metricsScrapers.all"));
}

fn collect_compile_errors(schema: &kube::core::cel::CompiledSchema, out: &mut Vec<String>) {
    out.extend(schema.compilation_errors().iter().map(|e| e.to_string()));
    for child in schema.properties.values() {
        collect_compile_errors(child, out);
    }
    for child in schema.items.iter().chain(&schema.additional_properties) {
        collect_compile_errors(child, out);
    }
}

/// Runs the CRD's CEL rules on an object (defaults applied first); the error messages.
fn cel_errors(object: &Value) -> Vec<String> {
    match Validator::new().validate(&root_schema(), object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    }
}

fn cluster(spec: Value) -> Value {
    json!({
        "apiVersion": "mcpcluster.dev/v1alpha1",
        "kind": "McpCluster",
        "metadata": { "name": "t" },
        "spec": spec,
    })
}

#[test]
fn cel_accepts_the_defaults_and_ordinary_specs() {
    for spec in [
        json!({}),
        json!({ "replicas": 0 }),
        json!({ "replicas": 1, "replicationFactor": 3 }),
        json!({ "autoscaling": { "enabled": true } }),
        json!({ "replicas": 4, "autoscaling": { "enabled": true, "minReplicas": 4, "maxReplicas": 4 } }),
        json!({ "replicas": 50, "autoscaling": { "enabled": false, "maxReplicas": 3 } }),
        json!({ "podDisruptionBudget": { "maxUnavailable": "25%" } }),
        json!({ "podDisruptionBudget": { "maxUnavailable": 0 } }),
        json!({ "ports": { "mcp": 80, "admin": 81, "peer": 82 } }),
        json!({ "node": { "packs": ["echo"], "limits": { "maxSessions": 10 } } }),
        json!({ "auth": { "enabled": true, "issuer": "https://as.example.com",
                          "resource": "https://mcp.example.com/mcp",
                          "scopes": { "tools": { "*": ["mcp:tools"] } } } }),
    ] {
        assert_eq!(
            cel_errors(&cluster(spec.clone())),
            Vec::<String>::new(),
            "{spec}"
        );
    }
}

#[test]
fn cel_refuses_cross_field_mistakes() {
    let cases = [
        (
            json!({ "autoscaling": { "minReplicas": 5, "maxReplicas": 3 } }),
            "minReplicas must not exceed maxReplicas",
        ),
        (
            json!({ "replicas": 1, "autoscaling": { "enabled": true, "minReplicas": 2 } }),
            "replicas must lie within",
        ),
        (
            json!({ "replicas": 11, "autoscaling": { "enabled": true } }),
            "replicas must lie within",
        ),
        (
            json!({ "replicationFactor": 4, "autoscaling": { "enabled": true, "minReplicas": 1, "maxReplicas": 3 } }),
            "replicationFactor must not exceed autoscaling.maxReplicas",
        ),
        (json!({ "ports": { "peer": 8080 } }), "must be distinct"),
        (json!({ "ports": { "peer": 8079 } }), "must be distinct"),
        (
            json!({ "node": { "listen": "0.0.0.0:8080" } }),
            "set by the operator from spec.ports",
        ),
        (
            json!({ "node": { "auth": { "enabled": true } } }),
            "configured in spec.auth, not spec.node.auth",
        ),
        (
            json!({ "node": { "admin": { "insecureLocal": true } } }),
            "node.admin is set by the operator",
        ),
        (
            json!({ "networkPolicy": { "metricsScrapers": [{ "podSelector": {} }, {}] } }),
            "each of metricsScrapers needs podSelector, namespaceSelector or ipBlock",
        ),
        (
            json!({ "podDisruptionBudget": { "maxUnavailable": "half" } }),
            "maxUnavailable must be",
        ),
        (
            json!({ "podDisruptionBudget": { "maxUnavailable": -1 } }),
            "maxUnavailable must be",
        ),
    ];
    for (spec, expected) in cases {
        let errors = cel_errors(&cluster(spec.clone()));
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{spec}: expected {expected:?}, got {errors:?}"
        );
    }
}

#[test]
fn sample_parses_and_passes_the_rules() {
    let value = yaml_file(&crds_dir().join("examples/mcpcluster-sample.yaml"));
    let cluster: McpCluster = serde_json::from_value(value.clone()).expect("sample parses");
    assert!(cluster.spec.autoscaling.enabled);
    assert_eq!(cluster.spec.node.limits.max_sessions, 100_000);
    assert_eq!(cluster.spec.requested_replicas(), 2);
    assert_eq!(cel_errors(&value), Vec::<String>::new());
}

/// Each invalid sample names how the API server refuses it (`# rejected-by: cel|openapi`) and
/// a piece of the message (`# expect: ...`); the e2e applies them for real.
#[test]
fn invalid_samples_are_refused() {
    let dir = crds_dir().join("examples/invalid");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/invalid") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("readable");
        let header = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
                .unwrap_or_else(|| panic!("{}: no `# {key}:` line", path.display()))
                .to_owned()
        };
        let (by, expect) = (header("rejected-by"), header("expect"));
        let value = yaml_file(&path);
        let errors = match by.as_str() {
            "cel" => cel_errors(&value),
            "openapi" => bound_violations(&spec_schema(), &value["spec"]),
            other => panic!("{}: unknown rejected-by {other}", path.display()),
        };
        assert!(
            errors.iter().any(|e| e.contains(&expect)),
            "{}: expected {expect:?}, got {errors:?}",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 2, "invalid samples in {}", dir.display());
}

/// The `minimum` / `maximum` checks of OpenAPI validation, worded like the API server's.
fn bound_violations(schema: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(n), Some(max)) = (value.as_f64(), schema["maximum"].as_f64())
        && n > max
    {
        out.push(format!("{n} should be less than or equal to {max}"));
    }
    if let (Some(n), Some(min)) = (value.as_f64(), schema["minimum"].as_f64())
        && n < min
    {
        out.push(format!("{n} should be greater than or equal to {min}"));
    }
    if let (Some(obj), Some(props)) = (value.as_object(), schema["properties"].as_object()) {
        for (k, v) in obj {
            if let Some(s) = props.get(k) {
                out.extend(bound_violations(s, v));
            }
        }
    }
    out
}

#[test]
fn requested_replicas_follows_the_documented_defaults() {
    let mut spec = McpClusterSpec::default();
    assert_eq!(spec.requested_replicas(), DEFAULT_REPLICAS);
    spec.replication_factor = 5;
    assert_eq!(spec.requested_replicas(), 5);
    spec.replicas = Some(0);
    assert_eq!(spec.requested_replicas(), 0);
    spec.autoscaling.enabled = true;
    assert_eq!(spec.requested_replicas(), spec.autoscaling.min_replicas);
    spec.replicas = Some(40);
    assert_eq!(spec.requested_replicas(), spec.autoscaling.max_replicas);
}

#[test]
fn status_round_trips_and_finds_conditions() {
    let status: McpClusterStatus = serde_json::from_value(json!({
        "replicas": 3, "readyReplicas": 2, "selector": "app=x",
        "conditions": [{
            "type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
            "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"
        }]
    }))
    .expect("status parses");
    assert!(status.is_true(condition::AVAILABLE));
    assert!(!status.is_true(condition::DEGRADED));
    assert_eq!(status.members, 0);
    let back = serde_json::to_value(&status).expect("serializes");
    assert_eq!(
        back["conditions"][0]["reason"],
        condition::reason::MINIMUM_REPLICAS_AVAILABLE
    );
}

#[test]
fn generated_file_is_current() {
    let committed =
        std::fs::read_to_string(crds_dir().join("generated/mcpclusters.mcpcluster.dev.yaml"))
            .expect("generated CRD is committed");
    let fresh = crd_yaml().expect("serializes");
    assert!(
        committed == fresh,
        "crds/generated is stale; run: cargo run -q -p mcpcluster-api --features resource --bin crdgen > {GENERATED_CRD_PATH}"
    );
}
