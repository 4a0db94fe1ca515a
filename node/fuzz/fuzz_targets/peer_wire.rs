//! The session layer's peer message codec (`mcp_node::cluster::wire::PeerMsg`): any kind and
//! body decode to a message or an error, never a panic or an allocation the body cannot back;
//! whatever decodes re-encodes to bytes that decode to the same message.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mcp_node::cluster::wire::PeerMsg;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else { return };
    let body = Bytes::copy_from_slice(body);
    let Ok(msg) = PeerMsg::decode(kind, &body) else { return };
    let again = PeerMsg::decode(msg.kind(), &Bytes::from(msg.encode())).expect("re-encoded message decodes");
    assert_eq!(again, msg, "decode(encode(m)) != m");
});
