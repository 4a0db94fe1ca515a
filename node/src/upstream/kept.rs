//! [`Kept`]: what clients asked of an upstream through this node's session with it that the
//! upstream keeps per session — resource subscriptions and the logging level — so that a new
//! upstream session (the upstream lost ours) is told again, and so that an upstream's
//! `notifications/resources/updated` can be given back under the URIs clients subscribed with.
//!
//! With `sessions: shared` subscriptions and the logging level are kept in the node's own
//! session with the upstream, shared by every client session it owns; so are the
//! subscriptions of 2026-07-28 clients' `subscriptions/listen` streams either way (they have no
//! session). With `perClient` (the default) a legacy client session's own upstream session
//! carries its own level and subscriptions (`client/own.rs`). Here:
//! - **subscriptions** are counted per client-facing URI: the upstream is asked to subscribe
//!   each time a client subscribes (idempotent there, and the client learns the upstream's
//!   answer), and to unsubscribe only when the last client session of this node that
//!   subscribed through it unsubscribes;
//! - **the logging level** sent upstream is the most verbose any client of this node asked
//!   for since the upstream session opened (the node filters each client's messages at that
//!   client's own level, so a less verbose request is not sent: it would silence the others).

use std::collections::HashMap;

use crate::content::context::{LOG_LEVELS, log_level_index};

/// Subscriptions and logging level held in this node's session with one upstream.
#[derive(Debug, Default)]
pub struct Kept {
    /// Upstream URI → client-facing URI → client sessions subscribed.
    subscriptions: HashMap<String, HashMap<String, u32>>,
    /// Index in [`LOG_LEVELS`] of the level last set upstream.
    level: Option<u8>,
}

impl Kept {
    /// A client session subscribed to `served`, which is `uri` at the upstream.
    pub fn subscribed(&mut self, uri: &str, served: &str) {
        *self
            .subscriptions
            .entry(uri.to_owned())
            .or_default()
            .entry(served.to_owned())
            .or_default() += 1;
    }

    /// A client session unsubscribed from `served` (`uri` at the upstream); whether no client
    /// session of this node is subscribed to `uri` any more (the upstream should be told).
    /// False when none was subscribed through this node (nothing to tell).
    pub fn unsubscribed(&mut self, uri: &str, served: &str) -> bool {
        let Some(forms) = self.subscriptions.get_mut(uri) else {
            return false;
        };
        let Some(count) = forms.get_mut(served) else {
            return false;
        };
        *count -= 1;
        if *count == 0 {
            forms.remove(served);
        }
        if forms.is_empty() {
            self.subscriptions.remove(uri);
            return true;
        }
        false
    }

    /// The client-facing URIs subscribed for upstream URI `uri`.
    pub fn served(&self, uri: &str) -> Vec<String> {
        self.subscriptions
            .get(uri)
            .map(|forms| forms.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Upstream URIs with at least one subscription (for a new upstream session).
    pub fn uris(&self) -> Vec<String> {
        self.subscriptions.keys().cloned().collect()
    }

    /// The level to send upstream when a client asks for `level`: `Some` when it is more
    /// verbose than the one set (or none is), `None` when the upstream already sends as much.
    pub fn level_to_send(&self, level: &str) -> Option<&'static str> {
        let asked = log_level_index(level)?;
        match self.level {
            Some(set) if set <= asked => None,
            _ => Some(LOG_LEVELS[asked as usize]),
        }
    }

    /// The upstream accepted `level`.
    pub fn level_set(&mut self, level: &str) {
        self.level = log_level_index(level);
    }

    /// The level set upstream, if any (for a new upstream session).
    pub fn level(&self) -> Option<&'static str> {
        self.level.map(|i| LOG_LEVELS[i as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upstream_is_unsubscribed_after_the_last_client() {
        let mut k = Kept::default();
        k.subscribed("test://a", "test://a");
        k.subscribed("test://a", "up+test://a");
        k.subscribed("test://a", "test://a");
        let mut served = k.served("test://a");
        served.sort();
        assert_eq!(served, ["test://a", "up+test://a"]);
        assert!(!k.unsubscribed("test://a", "test://a"));
        assert!(!k.unsubscribed("test://a", "up+test://a"));
        assert_eq!(k.served("test://a"), ["test://a"]);
        assert!(k.unsubscribed("test://a", "test://a"));
        assert!(k.served("test://a").is_empty());
        assert!(k.uris().is_empty());
        // Never subscribed here: nothing to tell the upstream.
        assert!(!k.unsubscribed("test://a", "test://a"));
        assert!(!k.unsubscribed("test://b", "test://b"));
    }

    #[test]
    fn only_a_more_verbose_level_is_sent() {
        let mut k = Kept::default();
        assert_eq!(k.level_to_send("warning"), Some("warning"));
        k.level_set("warning");
        assert_eq!(k.level_to_send("error"), None);
        assert_eq!(k.level_to_send("warning"), None);
        assert_eq!(k.level_to_send("info"), Some("info"));
        k.level_set("info");
        assert_eq!(k.level(), Some("info"));
        assert_eq!(k.level_to_send("no-such-level"), None);
    }
}
