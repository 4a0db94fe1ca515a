//! JSON shapes of change notifications.

use serde_json::{Value, json};

use crate::content::ChangeEvent;

/// Method and params announcing `event`.
pub fn change_message(event: &ChangeEvent) -> (&'static str, Value) {
    match event {
        ChangeEvent::ResourceUpdated(uri) => {
            ("notifications/resources/updated", json!({ "uri": uri }))
        }
        ChangeEvent::ToolsListChanged => ("notifications/tools/list_changed", json!({})),
        ChangeEvent::PromptsListChanged => ("notifications/prompts/list_changed", json!({})),
        ChangeEvent::ResourcesListChanged => ("notifications/resources/list_changed", json!({})),
    }
}
