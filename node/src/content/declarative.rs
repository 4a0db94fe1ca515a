//! Content declared in the configuration file: static resources, prompt templates (with
//! completion values for their arguments) and HTTP-backed tools.

use mcpcluster_api::ContentConfig;
use rmcp::model::{
    GetPromptResult, Prompt, PromptArgument, PromptMessage, ReadResourceResult, Resource,
    ResourceContents, Role,
};
use serde_json::{Map, Value};

use super::catalog::prompt_ref;
use super::{CallError, CatalogBuilder, ToolCx, http_tool};

/// Replaces `{{name}}` placeholders with argument values (strings as is, others as JSON).
pub fn render(template: &str, args: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                match args.get(name) {
                    Some(Value::String(s)) => out.push_str(s),
                    Some(other) => out.push_str(&other.to_string()),
                    None => {}
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Adds everything declared in `content`.
pub fn register(b: &mut CatalogBuilder, content: &ContentConfig) {
    for r in &content.resources {
        let mut raw = Resource::new(r.uri.clone(), r.name.clone());
        raw.description = r.description.clone();
        raw.mime_type = Some(r.mime_type.clone().unwrap_or_else(|| "text/plain".into()));
        let text = r.text.clone();
        let mime = raw.mime_type.clone().unwrap_or_default();
        b.resource(
            raw,
            move |_cx: ToolCx, uri: String, _vars: Vec<(String, String)>| {
                let text = text.clone();
                let mime = mime.clone();
                async move {
                    let contents = ResourceContents::text(text, uri).with_mime_type(mime);
                    Ok::<_, CallError>(ReadResourceResult::new(vec![contents]))
                }
            },
        );
    }
    for p in &content.prompts {
        let args: Vec<PromptArgument> = p
            .arguments
            .iter()
            .map(|a| {
                let mut arg = PromptArgument::new(a.name.clone());
                arg.description = a.description.clone();
                arg.required = Some(a.required);
                arg
            })
            .collect();
        let prompt = Prompt::new(p.name.clone(), p.description.clone(), Some(args));
        for a in &p.arguments {
            if !a.completions.is_empty() {
                b.completions(prompt_ref(&p.name), &a.name, a.completions.clone());
            }
        }
        let template = p.template.clone();
        let description = p.description.clone();
        b.prompt(prompt, move |_cx: ToolCx, args: Map<String, Value>| {
            let text = render(&template, &args);
            let description = description.clone();
            async move {
                let mut result =
                    GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)]);
                result.description = description;
                Ok::<_, CallError>(result)
            }
        });
    }
    for t in &content.tools {
        http_tool::register(b, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_placeholders() {
        let args = json!({"who": "world", "n": 3});
        let Value::Object(args) = args else { return };
        assert_eq!(
            render("hello {{who}} x{{ n }} {{missing}}!", &args),
            "hello world x3 !"
        );
        assert_eq!(
            render("open {{ never closed", &args),
            "open {{ never closed"
        );
    }
}
