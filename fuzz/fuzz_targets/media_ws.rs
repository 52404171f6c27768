//! Anything Asterisk's WebSocket media channel might send: text parses to
//! an event or a typed error, never a panic; the send window stays within
//! its bounds whatever events arrive; a stream call hears any bytes as
//! whole frames without panicking or losing count.
#![no_main]

use aiagc_ari::media_ws::{parse_event, Outflow};
use aiagc_engine::{Call, CallConfig, Codec, Transport};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let (head, rest) = data.split_at(data.len().min(64));
    if let Ok(text) = std::str::from_utf8(head) {
        let mut flow = Outflow::new(20, 5);
        if let Ok(event) = parse_event(text) {
            for _ in 0..3 {
                flow.sent(7);
                flow.event(&event);
                assert!(flow.frames_played() <= flow.frames_sent());
                assert!(flow.room() <= 20);
            }
        }
    }
    let mut c = CallConfig::new(Codec::Slin16, 1);
    c.transport = Transport::Stream {
        lead: Duration::from_millis(60),
    };
    let t0 = Instant::now();
    let Ok(mut call) = Call::new(c, t0) else {
        return;
    };
    let mut total = 0usize;
    for (i, chunk) in rest.chunks(97).enumerate() {
        let now = t0 + Duration::from_millis(20 * i as u64);
        call.receive_stream(chunk, now);
        call.handle_timeout(now);
        while call.poll_transmit(now).is_some() {}
        while call.poll_event().is_some() {}
        total += chunk.len();
    }
    assert_eq!(call.stats().received as usize, total / 640);
});
