//! Which answers in a legacy session wait for the session's replicas (`cluster.durableEvents`;
//! docs/PROTOCOL.md, "What waits for acknowledgements"): an answer that tells the client its
//! request changed the session's replicated state — the log level, the resource
//! subscriptions, `initialized` — goes out only once the replicas hold the change, so a
//! kill -9 of the owner right after it cannot undo what the client was told. The wait itself
//! (bounded, in the replicator's batched frames) is the session layer's
//! (`SessionLayer::changed_durably`).
//!
//! What does not wait here: an answer written as an SSE event (it is held in the stream's log
//! until the copy carrying it — and the change, made before it — is acknowledged: durable
//! events); a new GET stream (what it opens is the stream's id only: a resume of a stream
//! its new owner never heard of opens a new one, and every event on it was held until a copy
//! carrying the stream was acknowledged); `notifications/cancelled` and responses to the
//! server's requests (not replicated state).

/// Whether a request in a legacy session changes the session's replicated state (whatever
/// its outcome: `logging/setLevel` sets the session's level even when an upstream refuses
/// the level).
pub fn changes_state(method: &str) -> bool {
    matches!(
        method,
        "logging/setLevel" | "resources/subscribe" | "resources/unsubscribe"
    )
}

/// Whether the answer to `method` waits for the replicas: it changed the replicated state
/// and is answered as JSON (`streamed`: answered as an SSE event, held as durable events are).
pub fn request_waits(method: &str, streamed: bool) -> bool {
    changes_state(method) && !streamed
}

/// Whether the 202 to a notification waits for the replicas: `notifications/initialized` in a
/// session that was not initialized yet (the only notification that changes replicated state).
pub fn notification_waits(method: &str, was_initialized: bool) -> bool {
    method == "notifications/initialized" && !was_initialized
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_that_report_a_state_change_wait_unless_the_answer_is_a_held_event() {
        for m in [
            "logging/setLevel",
            "resources/subscribe",
            "resources/unsubscribe",
        ] {
            assert!(request_waits(m, false), "{m} as JSON waits");
            assert!(
                !request_waits(m, true),
                "{m} as an SSE event is held instead"
            );
        }
        for m in [
            "tools/call",
            "tools/list",
            "resources/read",
            "prompts/get",
            "ping",
            "completion/complete",
            "initialize", // waits for its own acknowledgement (`created`)
        ] {
            assert!(!request_waits(m, false), "{m} changes no replicated state");
        }
    }

    #[test]
    fn only_a_first_initialized_notification_waits() {
        assert!(notification_waits("notifications/initialized", false));
        assert!(!notification_waits("notifications/initialized", true));
        assert!(!notification_waits("notifications/cancelled", false));
        assert!(!notification_waits(
            "notifications/roots/list_changed",
            false
        ));
    }
}
