//! Changes that subscribed clients hear about ([`ChangeEvent`]), and the one thing content code
//! may do about them: announce one ([`Announce`]). Handlers reach the node and its cluster only
//! through this (`ToolCx::announce`); the node fans a change out to its own subscribers and to
//! its peers' (`Node`'s implementation).

/// A change that subscribed clients hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeEvent {
    /// `notifications/resources/updated` for a URI.
    ResourceUpdated(String),
    /// `notifications/tools/list_changed`.
    ToolsListChanged,
    /// `notifications/prompts/list_changed`.
    PromptsListChanged,
    /// `notifications/resources/list_changed`.
    ResourcesListChanged,
}

/// Where a change is announced: to every subscribed client, on this node and its peers.
pub trait Announce: Send + Sync {
    /// Tells subscribed clients (on every era, on every node) that `event` happened.
    fn announce(&self, event: ChangeEvent);
}
