//! Which scopes a request needs: `requiredScopes` plus, for a request that names a tool,
//! resource or prompt, the scopes the scope map lists for that name (or for `*`).

use serde_json::{Map, Value};

use mcpcluster_api::AuthConfig;

use super::principal::Principal;

/// The scopes `method` with `params` needs, without duplicates, in a stable order.
pub fn needed<'a>(
    config: &'a AuthConfig,
    method: &str,
    params: Option<&Map<String, Value>>,
) -> Vec<&'a str> {
    let mut out: Vec<&str> = config.required_scopes.iter().map(String::as_str).collect();
    let name_of = |key: &str| params.and_then(|p| p.get(key)).and_then(Value::as_str);
    let named = match method {
        "tools/call" => name_of("name").map(|n| (&config.scopes.tools, n)),
        "prompts/get" => name_of("name").map(|n| (&config.scopes.prompts, n)),
        "resources/read" | "resources/subscribe" => {
            name_of("uri").map(|u| (&config.scopes.resources, u))
        }
        _ => None,
    };
    if let Some((map, name)) = named
        && let Some(scopes) = map.get(name).or_else(|| map.get("*"))
    {
        out.extend(scopes.iter().map(String::as_str));
    }
    let mut seen = Vec::with_capacity(out.len());
    out.retain(|s| {
        let new = !seen.contains(s);
        seen.push(*s);
        new
    });
    out
}

/// The scopes a caller needs to do anything: `requiredScopes` and every `*` entry of the map
/// (`scopes_supported` in the metadata and the `scope` of a 401 challenge).
pub fn basic(config: &AuthConfig) -> Vec<&str> {
    let m = &config.scopes;
    let mut out: Vec<&str> = config.required_scopes.iter().map(String::as_str).collect();
    for map in [&m.tools, &m.resources, &m.prompts] {
        if let Some(s) = map.get("*") {
            out.extend(s.iter().map(String::as_str));
        }
    }
    let mut seen = Vec::with_capacity(out.len());
    out.retain(|s| {
        let new = !seen.contains(s);
        seen.push(*s);
        new
    });
    out
}

/// Whether `principal` holds every scope in `needed`.
pub fn satisfied(principal: &Principal, needed: &[&str]) -> bool {
    needed.iter().all(|s| principal.has(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::principal::PrincipalId;
    use serde_json::json;

    fn config() -> AuthConfig {
        let mut c = AuthConfig {
            required_scopes: vec!["mcp".into()],
            ..Default::default()
        };
        c.scopes.tools.insert("*".into(), vec!["tools".into()]);
        c.scopes
            .tools
            .insert("wipe".into(), vec!["admin".into(), "mcp".into()]);
        c.scopes
            .resources
            .insert("file:///secret".into(), vec!["secret".into()]);
        c
    }

    fn params(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn a_named_entry_overrides_the_default_and_required_scopes_always_apply() {
        let c = config();
        let p = params(json!({"name": "echo"}));
        assert_eq!(needed(&c, "tools/call", Some(&p)), ["mcp", "tools"]);
        let p = params(json!({"name": "wipe"}));
        assert_eq!(needed(&c, "tools/call", Some(&p)), ["mcp", "admin"]);
        assert_eq!(needed(&c, "tools/list", None), ["mcp"]);
        let p = params(json!({"uri": "file:///secret"}));
        assert_eq!(needed(&c, "resources/read", Some(&p)), ["mcp", "secret"]);
        let p = params(json!({"uri": "file:///public"}));
        assert_eq!(needed(&c, "resources/read", Some(&p)), ["mcp"]);
        assert_eq!(basic(&c), ["mcp", "tools"]);
    }

    #[test]
    fn satisfied_needs_every_scope() {
        let p = Principal {
            id: PrincipalId::of("i", "s"),
            subject: "s".into(),
            scopes: vec!["mcp".into(), "tools".into()],
        };
        assert!(satisfied(&p, &["mcp", "tools"]));
        assert!(!satisfied(&p, &["mcp", "admin"]));
        assert!(satisfied(&p, &[]));
    }
}
