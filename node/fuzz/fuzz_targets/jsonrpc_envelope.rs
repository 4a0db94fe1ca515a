//! Any bytes through the JSON-RPC envelope parser: an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    if let Ok(raw) = serde_json::from_slice::<Box<RawValue>>(data) {
        let _ = mcp_node::jsonrpc::parse_message(&raw);
    }
});
