//! The small parsers of client-supplied text: config YAML, session ids, event ids, URI
//! templates, signed request states.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = mcp_node::settings::parse_config(text);
    let _ = mcp_node::session::SessionId::parse(text);
    let _ = mcp_node::session::EventId::parse(text);
    if let Some((tpl, uri)) = text.split_once('\n') {
        let _ = mcp_node::content::uri_template::match_template(tpl, uri);
    }
    let signer = mcp_node::request_state::StateSigner::random();
    let _ = signer.verify("tool", text);
});
