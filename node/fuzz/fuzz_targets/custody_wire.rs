//! The session layer's peer message codec (`mcp_custody::CustodyMsg`, custody/src/wire.rs):
//! any kind and body decode to a message or an error, never a panic or an allocation the body
//! cannot back; whatever decodes re-encodes to bytes that decode to the same message, and its
//! kind is a session-layer kind.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mcp_custody::CustodyMsg;
use mcp_custody::wire::kind;

fuzz_target!(|data: &[u8]| {
    let Some((&k, body)) = data.split_first() else { return };
    let body = Bytes::copy_from_slice(body);
    let Ok(msg) = CustodyMsg::decode(k, &body) else { return };
    assert!(kind::is_custody(msg.kind()), "decoded a kind the session layer does not own");
    assert_eq!(msg.kind(), k, "decoded as another kind");
    let again = CustodyMsg::decode(msg.kind(), &Bytes::from(msg.encode())).expect("re-encoded message decodes");
    assert_eq!(again, msg, "decode(encode(m)) != m");
});
