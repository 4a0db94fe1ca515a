//! What a node serves: tools, resources, resource templates and prompts, held in a
//! [`Catalog`] built at start from built-in packs, the configuration file and library code.
//!
//! Handlers are async functions that get a [`ToolCx`] (progress, logging, requests to the
//! client) and return `rmcp` model values; the era-specific plumbing (SSE streams for
//! 2025-11-25 sessions, `input_required` results for 2026-07-28) lives behind [`ToolCx`], so a
//! handler is written once for both eras.

pub mod catalog;
pub mod change;
pub mod conformance;
pub mod context;
pub mod declarative;
pub mod echo;
pub mod http_tool;
pub mod packs;
pub mod uri_template;

pub use catalog::{Catalog, CatalogBuilder, PromptHandler, ResourceHandler, ToolHandler};
pub use change::{Announce, ChangeEvent};
pub use context::{CallError, ToolCx};
