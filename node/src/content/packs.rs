//! Builds the node's [`Catalog`] from the configured built-in packs and declarative content.

use mcpcluster_api::NodeConfig;

use super::catalog::{Catalog, CatalogBuilder, CatalogError};
use super::{conformance, declarative, echo};

/// Names accepted in `packs`.
pub const KNOWN: &[&str] = &["echo", "conformance"];

/// Registers the configured packs and declarative content into `b`.
pub fn register_configured(b: &mut CatalogBuilder, config: &NodeConfig) {
    for pack in &config.packs {
        match pack.as_str() {
            "echo" => echo::register(b),
            "conformance" => conformance::register(b),
            _ => {}
        }
    }
    declarative::register(b, &config.content);
}

/// The catalog for a configuration, with nothing added by library code.
pub fn catalog_for(config: &NodeConfig) -> Result<Catalog, CatalogError> {
    let mut b = CatalogBuilder::new();
    register_configured(&mut b, config);
    b.build()
}
