//! How upstreams' resources and resource templates are served, and where a `resources/read`
//! goes.
//!
//! A URI names a thing to the client, and URIs travel inside results (`resource_link` content,
//! embedded resources, `contents[].uri`), so they are not renamed the way tool names are: an
//! upstream's resource keeps its URI, and an upstream's template its `uriTemplate`, unless it
//! collides. It collides when the node's own catalog answers for that URI (an exact resource or
//! one of its templates: the built-in wins) or an earlier upstream (configuration order)
//! already serves the same URI (template); then it is served as `<name>+<uri>` (the upstream's
//! DNS-label name, `+`, its URI: `fs+file:///a`), still a URI (`fs+file` is a valid scheme),
//! and reversible because upstream names hold no `+`. A collision of that form too leaves the
//! entry out (warned).
//!
//! A `resources/read` of `uri` goes to the first of:
//! 1. the node's catalog, when it has `uri` exactly or by one of its templates;
//! 2. the first upstream that listed `uri` exactly;
//! 3. upstream `u` with URI `rest`, when `uri` is `u+rest` for a configured `u` (the result's
//!    `contents[].uri` are given back in that form);
//! 4. the first upstream with a template `uri` matches;
//! 5. the catalog again (which answers "resource not found").
//!
//! That order serves every listed entry through the URI it is listed under, and reaches URIs
//! nobody listed (a template's, one in a `resource_link`) on the upstream that can answer.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use super::listing::Kind;
use super::served::Upstream;
use crate::content::uri_template::match_template;

/// Between an upstream's name and its URI in a served URI that collided.
pub const URI_SEPARATOR: char = '+';

/// The served form of upstream `upstream`'s `uri` when it collides.
pub fn prefixed(upstream: &str, uri: &str) -> String {
    format!("{upstream}{URI_SEPARATOR}{uri}")
}

fn field(kind: Kind) -> &'static str {
    if kind == Kind::Templates {
        "uriTemplate"
    } else {
        "uri"
    }
}

/// The merged `resources` or `resourceTemplates` list: `builtin` (the catalog's), then each
/// upstream's, colliding entries served as `<name>+<uri>` (see the module's rules).
/// `catalog_claims` says whether the catalog answers for a URI.
pub fn merge(
    kind: Kind,
    builtin: &Value,
    upstreams: &[Arc<Upstream>],
    catalog_claims: impl Fn(&str) -> bool,
) -> Vec<Value> {
    let key = field(kind);
    let mut all = builtin.as_array().cloned().unwrap_or_default();
    let mut served: HashSet<String> = all
        .iter()
        .filter_map(|e| e.get(key).and_then(Value::as_str).map(str::to_owned))
        .collect();
    for u in upstreams {
        for entry in u.list(kind).iter() {
            let Some(uri) = entry.get(key).and_then(Value::as_str) else {
                continue;
            };
            let taken = served.contains(uri) || (kind == Kind::Resources && catalog_claims(uri));
            let form = if taken {
                prefixed(u.name(), uri)
            } else {
                uri.to_owned()
            };
            if !served.insert(form.clone()) {
                tracing::warn!(upstream = %u.name(), list = kind.key(), uri, "its URI and its prefixed form are both taken; not served");
                continue;
            }
            let mut entry = entry.clone();
            if taken {
                entry[key] = Value::String(form);
            }
            all.push(entry);
        }
    }
    all
}

/// Where a read of a served URI goes, when not to the catalog.
#[derive(Debug)]
pub struct Route<'a> {
    /// The upstream.
    pub upstream: &'a Arc<Upstream>,
    /// The URI as the upstream knows it.
    pub uri: String,
    /// Whether the served URI was the `<name>+<uri>` form (the answer's URIs are given back
    /// in it).
    pub prefixed: bool,
}

/// The upstream a read of `uri` goes to (rules 2-4 of the module's), or `None` for the
/// catalog; `catalog_claims` is rule 1.
pub fn route<'a>(
    upstreams: &'a [Arc<Upstream>],
    uri: &str,
    catalog_claims: impl Fn(&str) -> bool,
) -> Option<Route<'a>> {
    if catalog_claims(uri) {
        return None;
    }
    if let Some(upstream) = upstreams.iter().find(|u| u.lists_uri(uri)) {
        return Some(Route {
            upstream,
            uri: uri.to_owned(),
            prefixed: false,
        });
    }
    if let Some((name, rest)) = uri.split_once(URI_SEPARATOR)
        && !rest.is_empty()
        && let Some(upstream) = upstreams.iter().find(|u| u.name() == name)
    {
        return Some(Route {
            upstream,
            uri: rest.to_owned(),
            prefixed: true,
        });
    }
    upstreams
        .iter()
        .find(|u| {
            u.list(Kind::Templates).iter().any(|t| {
                t.get("uriTemplate")
                    .and_then(Value::as_str)
                    .is_some_and(|tpl| match_template(tpl, uri).is_some())
            })
        })
        .map(|upstream| Route {
            upstream,
            uri: uri.to_owned(),
            prefixed: false,
        })
}

/// A read's result as served: with a prefixed route, each `contents[].uri` in the
/// `<name>+<uri>` form the client used.
pub fn served_read(route: &Route<'_>, mut result: Value) -> Value {
    if route.prefixed
        && let Some(Value::Array(contents)) = result.get_mut("contents")
    {
        for c in contents {
            if let Some(uri) = c.get("uri").and_then(Value::as_str) {
                c["uri"] = Value::String(prefixed(route.upstream.name(), uri));
            }
        }
    }
    result
}
