//! MCP semantics independent of HTTP: version negotiation, the method table shared by both
//! eras, and the shape of notifications.

pub mod dispatch;
pub mod notify;
pub mod versions;
