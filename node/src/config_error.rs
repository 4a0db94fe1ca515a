//! [`ConfigError`]: what is wrong with a configuration, naming the field. Its own module so
//! each section's validation (`admin/config.rs`, `cluster/config.rs`, ...) and the settings
//! that gather them (`settings.rs`) share it without importing each other both ways.

/// A configuration problem, naming the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file is not valid YAML for [`mcpcluster_api::NodeConfig`].
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    /// A field has a value that cannot work.
    #[error("field `{field}`: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    /// A field of one entry of a list has a value that cannot work (`upstreams[1].url`).
    #[error("field `{field}`: {message}")]
    Entry { field: String, message: String },
}
