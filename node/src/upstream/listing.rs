//! The four lists an upstream serves ([`Kind`]: tools, resources, resource templates, prompts)
//! and fetching one whole, page by page ([`fetch`]), bounded.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::client::Client;
use super::error::UpstreamError;
use crate::content::ChangeEvent;

/// Most pages of one list followed in one fetch.
pub const MAX_PAGES: usize = 100;
/// Most entries taken from one upstream's list.
pub const MAX_ITEMS: usize = 10_000;

/// One of an upstream's lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `tools/list` → `tools`.
    Tools,
    /// `resources/list` → `resources`.
    Resources,
    /// `resources/templates/list` → `resourceTemplates`.
    Templates,
    /// `prompts/list` → `prompts`.
    Prompts,
}

impl Kind {
    /// Every kind, in the order they are fetched (tools first: it opens the session whose
    /// capabilities say which of the others exist).
    pub const ALL: [Kind; 4] = [Kind::Tools, Kind::Resources, Kind::Templates, Kind::Prompts];

    /// The list method.
    pub fn method(self) -> &'static str {
        match self {
            Kind::Tools => "tools/list",
            Kind::Resources => "resources/list",
            Kind::Templates => "resources/templates/list",
            Kind::Prompts => "prompts/list",
        }
    }

    /// The result's array member.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Tools => "tools",
            Kind::Resources => "resources",
            Kind::Templates => "resourceTemplates",
            Kind::Prompts => "prompts",
        }
    }

    /// The server capability that says the upstream has this list.
    pub fn capability(self) -> &'static str {
        match self {
            Kind::Tools => "tools",
            Kind::Resources | Kind::Templates => "resources",
            Kind::Prompts => "prompts",
        }
    }

    /// What the node's clients are told when this list changed.
    pub fn change(self) -> ChangeEvent {
        match self {
            Kind::Tools => ChangeEvent::ToolsListChanged,
            Kind::Resources | Kind::Templates => ChangeEvent::ResourcesListChanged,
            Kind::Prompts => ChangeEvent::PromptsListChanged,
        }
    }

    /// Index into per-kind arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Every page of `kind` from the upstream (at most [`MAX_PAGES`] pages, [`MAX_ITEMS`]
/// entries; a cursor given twice is an error), as the upstream wrote the entries.
pub async fn fetch(client: &Client, kind: Kind) -> Result<Vec<Value>, UpstreamError> {
    let method = kind.method();
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let mut seen = HashSet::new();
    for _ in 0..MAX_PAGES {
        let params = match &cursor {
            Some(c) => json!({ "cursor": c }),
            None => json!({}),
        };
        let mut page = client.request(method, params).await?;
        match page.get_mut(kind.key()).map(Value::take) {
            Some(Value::Array(got)) => items.extend(got),
            _ => {
                return Err(UpstreamError::Protocol(format!(
                    "`{method}` answered without a `{}` array",
                    kind.key()
                )));
            }
        }
        if items.len() > MAX_ITEMS {
            return Err(UpstreamError::Protocol(format!(
                "`{method}`: more than {MAX_ITEMS} entries"
            )));
        }
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(next) if !next.is_empty() => {
                if !seen.insert(next.to_owned()) {
                    return Err(UpstreamError::Protocol(format!(
                        "`{method}` returned cursor `{next}` twice"
                    )));
                }
                cursor = Some(next.to_owned());
            }
            _ => return Ok(items),
        }
    }
    Err(UpstreamError::Protocol(format!(
        "`{method}` had more than {MAX_PAGES} pages"
    )))
}
