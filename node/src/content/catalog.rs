//! The [`Catalog`]: every tool, resource, resource template and prompt a node serves, with
//! argument validation, fixed at start (so list results are computed once).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use rmcp::model::{
    CallToolResult, GetPromptResult, Prompt, ReadResourceResult, Resource, ResourceTemplate, Tool,
};
use serde_json::{Map, Value, json};

use super::context::{CallError, ToolCx};
use super::uri_template::match_template;

/// A tool implementation.
pub trait ToolHandler: Send + Sync + 'static {
    /// Runs the tool with validated arguments.
    fn call(
        &self,
        cx: ToolCx,
        args: Map<String, Value>,
    ) -> BoxFuture<'static, Result<CallToolResult, CallError>>;
}

impl<F, Fut> ToolHandler for F
where
    F: Fn(ToolCx, Map<String, Value>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<CallToolResult, CallError>> + Send + 'static,
{
    fn call(
        &self,
        cx: ToolCx,
        args: Map<String, Value>,
    ) -> BoxFuture<'static, Result<CallToolResult, CallError>> {
        Box::pin(self(cx, args))
    }
}

/// A resource (or resource template) reader; `vars` holds template bindings.
pub trait ResourceHandler: Send + Sync + 'static {
    /// Reads the resource at `uri`.
    fn read(
        &self,
        cx: ToolCx,
        uri: String,
        vars: Vec<(String, String)>,
    ) -> BoxFuture<'static, Result<ReadResourceResult, CallError>>;
}

impl<F, Fut> ResourceHandler for F
where
    F: Fn(ToolCx, String, Vec<(String, String)>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ReadResourceResult, CallError>> + Send + 'static,
{
    fn read(
        &self,
        cx: ToolCx,
        uri: String,
        vars: Vec<(String, String)>,
    ) -> BoxFuture<'static, Result<ReadResourceResult, CallError>> {
        Box::pin(self(cx, uri, vars))
    }
}

/// A prompt implementation.
pub trait PromptHandler: Send + Sync + 'static {
    /// Renders the prompt with its arguments.
    fn get(
        &self,
        cx: ToolCx,
        args: Map<String, Value>,
    ) -> BoxFuture<'static, Result<GetPromptResult, CallError>>;
}

impl<F, Fut> PromptHandler for F
where
    F: Fn(ToolCx, Map<String, Value>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<GetPromptResult, CallError>> + Send + 'static,
{
    fn get(
        &self,
        cx: ToolCx,
        args: Map<String, Value>,
    ) -> BoxFuture<'static, Result<GetPromptResult, CallError>> {
        Box::pin(self(cx, args))
    }
}

struct ToolEntry {
    tool: Tool,
    validator: Option<jsonschema::Validator>,
    handler: Arc<dyn ToolHandler>,
}

struct ResourceEntry {
    resource: Resource,
    handler: Arc<dyn ResourceHandler>,
}

struct TemplateEntry {
    template: ResourceTemplate,
    handler: Arc<dyn ResourceHandler>,
}

struct PromptEntry {
    prompt: Prompt,
    handler: Arc<dyn PromptHandler>,
}

/// Everything a node serves. Built once by [`CatalogBuilder`]; read-only afterwards.
pub struct Catalog {
    tools: Vec<ToolEntry>,
    tool_index: HashMap<String, usize>,
    resources: Vec<ResourceEntry>,
    resource_index: HashMap<String, usize>,
    templates: Vec<TemplateEntry>,
    prompts: Vec<PromptEntry>,
    prompt_index: HashMap<String, usize>,
    /// Completion values keyed by (reference, argument name).
    completions: HashMap<(String, String), Vec<String>>,
    tools_json: Value,
    resources_json: Value,
    templates_json: Value,
    prompts_json: Value,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("tools", &self.tools.len())
            .field("resources", &self.resources.len())
            .field("templates", &self.templates.len())
            .field("prompts", &self.prompts.len())
            .finish()
    }
}

/// Why a catalog could not be built.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Two entries share a name.
    #[error("duplicate {kind} `{name}`")]
    Duplicate { kind: &'static str, name: String },
    /// A tool's input schema is not a valid JSON Schema.
    #[error("tool `{name}`: invalid inputSchema: {message}")]
    BadSchema { name: String, message: String },
}

/// Collects entries, then freezes them into a [`Catalog`].
#[derive(Default)]
pub struct CatalogBuilder {
    tools: Vec<(Tool, Arc<dyn ToolHandler>)>,
    resources: Vec<(Resource, Arc<dyn ResourceHandler>)>,
    templates: Vec<(ResourceTemplate, Arc<dyn ResourceHandler>)>,
    prompts: Vec<(Prompt, Arc<dyn PromptHandler>)>,
    completions: HashMap<(String, String), Vec<String>>,
}

impl std::fmt::Debug for CatalogBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogBuilder")
            .field("tools", &self.tools.len())
            .finish_non_exhaustive()
    }
}

/// Key under which completions of a prompt argument are stored.
pub fn prompt_ref(name: &str) -> String {
    format!("ref/prompt:{name}")
}

/// Key under which completions of a resource template variable are stored.
pub fn template_ref(uri_template: &str) -> String {
    format!("ref/resource:{uri_template}")
}

impl CatalogBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a tool. Its `input_schema` is compiled and enforced on every call.
    pub fn tool(&mut self, tool: Tool, handler: impl ToolHandler) -> &mut Self {
        self.tools.push((tool, Arc::new(handler)));
        self
    }
    /// Adds a resource.
    pub fn resource(&mut self, resource: Resource, handler: impl ResourceHandler) -> &mut Self {
        self.resources.push((resource, Arc::new(handler)));
        self
    }
    /// Adds a resource template.
    pub fn template(
        &mut self,
        template: ResourceTemplate,
        handler: impl ResourceHandler,
    ) -> &mut Self {
        self.templates.push((template, Arc::new(handler)));
        self
    }
    /// Adds a prompt.
    pub fn prompt(&mut self, prompt: Prompt, handler: impl PromptHandler) -> &mut Self {
        self.prompts.push((prompt, Arc::new(handler)));
        self
    }
    /// Offers `values` for `completion/complete` of argument `arg` of reference `reference`
    /// (see [`prompt_ref`], [`template_ref`]).
    pub fn completions(&mut self, reference: String, arg: &str, values: Vec<String>) -> &mut Self {
        self.completions
            .insert((reference, arg.to_string()), values);
        self
    }

    /// Validates and freezes the catalog.
    pub fn build(self) -> Result<Catalog, CatalogError> {
        let mut tools = Vec::with_capacity(self.tools.len());
        let mut tool_index = HashMap::new();
        for (tool, handler) in self.tools {
            let name = tool.name.to_string();
            let schema = Value::Object((*tool.input_schema).clone());
            let validator =
                jsonschema::validator_for(&schema).map_err(|e| CatalogError::BadSchema {
                    name: name.clone(),
                    message: e.to_string(),
                })?;
            if tool_index.insert(name.clone(), tools.len()).is_some() {
                return Err(CatalogError::Duplicate { kind: "tool", name });
            }
            tools.push(ToolEntry {
                tool,
                validator: Some(validator),
                handler,
            });
        }
        let mut resources = Vec::new();
        let mut resource_index = HashMap::new();
        for (resource, handler) in self.resources {
            if resource_index
                .insert(resource.uri.clone(), resources.len())
                .is_some()
            {
                return Err(CatalogError::Duplicate {
                    kind: "resource",
                    name: resource.uri.clone(),
                });
            }
            resources.push(ResourceEntry { resource, handler });
        }
        let templates: Vec<TemplateEntry> = self
            .templates
            .into_iter()
            .map(|(template, handler)| TemplateEntry { template, handler })
            .collect();
        let mut prompts = Vec::new();
        let mut prompt_index = HashMap::new();
        for (prompt, handler) in self.prompts {
            if prompt_index
                .insert(prompt.name.clone(), prompts.len())
                .is_some()
            {
                return Err(CatalogError::Duplicate {
                    kind: "prompt",
                    name: prompt.name.clone(),
                });
            }
            prompts.push(PromptEntry { prompt, handler });
        }
        let to_json = |v: Vec<Value>| Value::Array(v);
        let tools_json = to_json(tools.iter().map(|t| json!(t.tool)).collect());
        let resources_json = to_json(resources.iter().map(|r| json!(r.resource)).collect());
        let templates_json = to_json(templates.iter().map(|t| json!(t.template)).collect());
        let prompts_json = to_json(prompts.iter().map(|p| json!(p.prompt)).collect());
        Ok(Catalog {
            tools,
            tool_index,
            resources,
            resource_index,
            templates,
            prompts,
            prompt_index,
            completions: self.completions,
            tools_json,
            resources_json,
            templates_json,
            prompts_json,
        })
    }
}

impl Catalog {
    /// `tools` array of `tools/list`.
    pub fn tools_json(&self) -> &Value {
        &self.tools_json
    }
    /// `resources` array of `resources/list`.
    pub fn resources_json(&self) -> &Value {
        &self.resources_json
    }
    /// `resourceTemplates` array of `resources/templates/list`.
    pub fn templates_json(&self) -> &Value {
        &self.templates_json
    }
    /// `prompts` array of `prompts/list`.
    pub fn prompts_json(&self) -> &Value {
        &self.prompts_json
    }
    /// Whether any content of each kind exists (for capabilities).
    pub fn has_tools(&self) -> bool {
        !self.tools.is_empty()
    }
    /// See [`Self::has_tools`].
    pub fn has_resources(&self) -> bool {
        !self.resources.is_empty() || !self.templates.is_empty()
    }
    /// See [`Self::has_tools`].
    pub fn has_prompts(&self) -> bool {
        !self.prompts.is_empty()
    }
    /// The tool definition named `name`.
    pub fn tool(&self, name: &str) -> Option<&Tool> {
        self.tool_index.get(name).map(|&i| &self.tools[i].tool)
    }

    /// Validates the arguments and starts the call. Unknown tool or invalid arguments are
    /// protocol errors (-32602) naming the tool and the offending field.
    pub fn call_tool(
        &self,
        cx: ToolCx,
        name: &str,
        args: Map<String, Value>,
    ) -> Result<BoxFuture<'static, Result<CallToolResult, CallError>>, CallError> {
        let entry = self
            .tool_index
            .get(name)
            .map(|&i| &self.tools[i])
            .ok_or_else(|| CallError::InvalidParams(format!("unknown tool: {name}")))?;
        if let Some(validator) = &entry.validator {
            let instance = Value::Object(args);
            let problems: Vec<String> = validator
                .iter_errors(&instance)
                .take(5)
                .map(|e| {
                    let at = e.instance_path().to_string();
                    if at.is_empty() {
                        e.to_string()
                    } else {
                        format!("{at}: {e}")
                    }
                })
                .collect();
            if !problems.is_empty() {
                return Err(CallError::InvalidParams(format!(
                    "invalid arguments for tool `{name}`: {}",
                    problems.join("; ")
                )));
            }
            let args = match instance {
                Value::Object(args) => args,
                _ => Map::new(),
            };
            return Ok(entry.handler.call(cx, args));
        }
        Ok(entry.handler.call(cx, args))
    }

    /// Starts reading `uri` (exact resources first, then templates).
    pub fn read_resource(
        &self,
        cx: ToolCx,
        uri: &str,
    ) -> Result<BoxFuture<'static, Result<ReadResourceResult, CallError>>, CallError> {
        if let Some(&i) = self.resource_index.get(uri) {
            return Ok(self.resources[i]
                .handler
                .read(cx, uri.to_string(), Vec::new()));
        }
        for t in &self.templates {
            if let Some(vars) = match_template(&t.template.uri_template, uri) {
                return Ok(t.handler.read(cx, uri.to_string(), vars));
            }
        }
        Err(CallError::ResourceNotFound(uri.to_string()))
    }

    /// Whether `uri` names a resource (exact or via a template).
    pub fn resource_exists(&self, uri: &str) -> bool {
        self.resource_index.contains_key(uri)
            || self
                .templates
                .iter()
                .any(|t| match_template(&t.template.uri_template, uri).is_some())
    }

    /// Starts rendering prompt `name`; checks required arguments.
    pub fn get_prompt(
        &self,
        cx: ToolCx,
        name: &str,
        args: Map<String, Value>,
    ) -> Result<BoxFuture<'static, Result<GetPromptResult, CallError>>, CallError> {
        let entry = self
            .prompt_index
            .get(name)
            .map(|&i| &self.prompts[i])
            .ok_or_else(|| CallError::InvalidParams(format!("unknown prompt: {name}")))?;
        for arg in entry.prompt.arguments.iter().flatten() {
            if arg.required == Some(true) && !args.contains_key(&arg.name) {
                return Err(CallError::InvalidParams(format!(
                    "prompt `{name}`: missing required argument `{}`",
                    arg.name
                )));
            }
        }
        Ok(entry.handler.get(cx, args))
    }

    /// Completion values for `reference`/`arg` starting with `prefix` (at most 100, as the
    /// spec allows), and the total number of matches.
    pub fn complete(
        &self,
        reference: &str,
        arg: &str,
        prefix: &str,
    ) -> Option<(Vec<String>, usize)> {
        let values = self
            .completions
            .get(&(reference.to_string(), arg.to_string()))?;
        let matches: Vec<&String> = values.iter().filter(|v| v.starts_with(prefix)).collect();
        let total = matches.len();
        Some((matches.into_iter().take(100).cloned().collect(), total))
    }

    /// Whether a completion reference names something in the catalog.
    pub fn reference_exists(&self, reference: &str) -> bool {
        if let Some(name) = reference.strip_prefix("ref/prompt:") {
            return self.prompt_index.contains_key(name);
        }
        if let Some(uri) = reference.strip_prefix("ref/resource:") {
            return self
                .templates
                .iter()
                .any(|t| t.template.uri_template == uri)
                || self.resource_index.contains_key(uri);
        }
        false
    }
}
