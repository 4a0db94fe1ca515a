//! Schema adjustments that make the embedded [`NodeConfig`] a Kubernetes structural schema,
//! without a second definition of the type.
//!
//! `NodeConfig` is the node's file format and its schemars schema is plain JSON Schema. Inside
//! the CRD three things change, all here and all generic (a field added to `NodeConfig` later
//! gets the same treatment):
//! - **No `default:`.** The node applies its own defaults when it reads the rendered file.
//!   Defaults in the CRD would be written into every stored object by the API server, pinning
//!   the defaults of the release that created it, and would fill `listen` / `adminListen`,
//!   which the operator sets from `spec.ports`. Each field's description states its default.
//! - **Untyped values** (`serde_json::Value`, e.g. a declarative tool's `inputSchema`) get
//!   `x-kubernetes-preserve-unknown-fields: true`, the one deliberate hole in the schema.
//! - **Integer formats** Kubernetes does not know (`uint32`, `uint64`, `uint16`, ...) become
//!   `int64` / `int32`; the `minimum: 0` schemars emits keeps them unsigned, and `uint32`
//!   keeps its upper bound as `maximum`.

use schemars::{Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::NodeConfig;

/// `schema_with` function for `McpClusterSpec::node`: `NodeConfig`'s schema, made structural.
pub(crate) fn node_config_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut value = generator.subschema_for::<NodeConfig>().to_value();
    make_structural(&mut value);
    Schema::try_from(value).unwrap_or_else(|_| Schema::default())
}

/// `schema_with` function for `McpClusterSpec::auth`: `AuthConfig`'s schema, made structural.
pub(crate) fn auth_config_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut value = generator.subschema_for::<crate::AuthConfig>().to_value();
    make_structural(&mut value);
    Schema::try_from(value).unwrap_or_else(|_| Schema::default())
}

/// Applies the adjustments described in the module docs to a schema and all its subschemas.
fn make_structural(schema: &mut Value) {
    let Value::Object(map) = schema else {
        if schema == &Value::Bool(true) {
            *schema = json!({ "x-kubernetes-preserve-unknown-fields": true });
        }
        return;
    };
    map.remove("default");
    if mixes_types(map) {
        // A value of either type (a string or an object): Kubernetes cannot say that, so the
        // value is kept as written and checked by the operator (`validate_upstreams`).
        map.retain(|k, _| k == "description");
        map.insert(
            "x-kubernetes-preserve-unknown-fields".into(),
            Value::Bool(true),
        );
        return;
    }
    rewrite_format(map);
    if is_untyped(map) {
        map.insert(
            "x-kubernetes-preserve-unknown-fields".into(),
            Value::Bool(true),
        );
    }
    for key in ["properties", "patternProperties"] {
        if let Some(Value::Object(props)) = map.get_mut(key) {
            props.values_mut().for_each(make_structural);
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        match map.get_mut(key) {
            // `additionalProperties: false/true` is a flag here, not a schema to rewrite.
            Some(v @ Value::Object(_)) => make_structural(v),
            Some(Value::Array(items)) => items.iter_mut().for_each(make_structural),
            _ => {}
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(branches)) = map.get_mut(key) {
            branches.iter_mut().for_each(make_structural);
        }
    }
}

/// An `anyOf`/`oneOf` whose branches are of different types, which a structural schema cannot
/// express (it allows no `type` inside them).
fn mixes_types(map: &Map<String, Value>) -> bool {
    ["anyOf", "oneOf"].iter().any(|key| {
        let Some(Value::Array(branches)) = map.get(*key) else {
            return false;
        };
        let types: std::collections::BTreeSet<String> = branches
            .iter()
            .map(|b| match b.get("type") {
                Some(t) => t.to_string(),
                None if b.get("properties").is_some() => "\"object\"".into(),
                None => String::new(),
            })
            .collect();
        types.len() > 1
    })
}

/// A schema that says nothing about the value's shape: Kubernetes requires a `type` unless the
/// node preserves unknown fields or is int-or-string.
fn is_untyped(map: &Map<String, Value>) -> bool {
    const SHAPE_KEYS: [&str; 12] = [
        "type",
        "$ref",
        "enum",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "properties",
        "items",
        "additionalProperties",
        "x-kubernetes-int-or-string",
        "x-kubernetes-preserve-unknown-fields",
    ];
    !SHAPE_KEYS.iter().any(|k| map.contains_key(*k))
}

/// Maps schemars' Rust integer formats onto the ones Kubernetes knows.
fn rewrite_format(map: &mut Map<String, Value>) {
    let Some(Value::String(format)) = map.get("format") else {
        return;
    };
    let (kubernetes, maximum) = match format.as_str() {
        "int8" | "int16" | "uint8" | "uint16" => ("int32", None),
        "uint32" => ("int64", Some(u64::from(u32::MAX))),
        "uint64" | "uint" | "int" => ("int64", None),
        _ => return,
    };
    map.insert("format".into(), kubernetes.into());
    if let Some(max) = maximum {
        map.entry("maximum").or_insert(max.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_unsigned_formats_and_untyped_values() {
        let mut s = json!({
            "type": "object",
            "properties": {
                "a": { "type": "integer", "format": "uint32", "minimum": 0, "default": 5 },
                "b": { "type": "integer", "format": "uint64", "minimum": 0 },
                "c": { "description": "anything", "nullable": true },
                "d": { "type": "array", "items": { "type": "integer", "format": "uint16" } }
            }
        });
        make_structural(&mut s);
        assert_eq!(s["properties"]["a"]["format"], "int64");
        assert_eq!(s["properties"]["a"]["maximum"], u64::from(u32::MAX));
        assert!(s["properties"]["a"].get("default").is_none());
        assert_eq!(s["properties"]["b"]["format"], "int64");
        assert_eq!(
            s["properties"]["c"]["x-kubernetes-preserve-unknown-fields"],
            true
        );
        assert_eq!(s["properties"]["d"]["items"]["format"], "int32");
        let mut either = json!({
            "description": "a string or an object",
            "anyOf": [{ "type": "string" }, { "type": "object", "properties": {} }]
        });
        make_structural(&mut either);
        assert_eq!(
            either,
            json!({ "description": "a string or an object", "x-kubernetes-preserve-unknown-fields": true })
        );
    }
}
