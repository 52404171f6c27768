//! A stream of arbitrary datagrams from the peer or a stranger, at
//! arbitrary times, into one call; the call is driven (timeouts, transmit,
//! events, speaking) between them. It must never panic, must account for
//! every datagram, and must keep its send grid and output bounded.
#![no_main]

use aiagc_engine::{Call, CallConfig, Codec};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Arbitrary, Debug)]
struct Step {
    /// 0: the peer; 1: same address, other port; else a stranger.
    source: u8,
    /// Milliseconds since the previous step.
    advance_ms: u8,
    /// Also queue a short reply before this datagram.
    speak: bool,
    datagram: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    codec: u8,
    steps: Vec<Step>,
}

fuzz_target!(|input: Input| {
    let codec = [Codec::Slin16, Codec::Ulaw, Codec::Alaw, Codec::Opus, Codec::G722][input.codec as usize % 5];
    let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let mut config = CallConfig::new(codec, 7);
    config.peer = Some(peer);
    let start = Instant::now();
    let Ok(mut call) = Call::new(config, start) else {
        return;
    };
    let mut now = start;
    let mut sent = 0u64;
    for step in input.steps.iter().take(2000) {
        now += Duration::from_millis(step.advance_ms as u64);
        let from: SocketAddr = match step.source {
            0 => peer,
            1 => "127.0.0.1:4001".parse().unwrap(),
            _ => "10.9.8.7:4000".parse().unwrap(),
        };
        if step.speak {
            let _ = call.speak(&[0.1; 320], 16000);
        }
        call.receive(from, &step.datagram, now);
        while call.poll_timeout() <= now {
            call.handle_timeout(now);
            while let Some(t) = call.poll_transmit(now) {
                assert!(t.data.len() <= 1500, "oversized RTP out");
                sent += 1;
            }
        }
        while call.poll_event().is_some() {}
    }
    let s = call.stats();
    assert_eq!(s.datagrams, input.steps.len().min(2000) as u64);
    assert!(
        s.received + s.malformed + s.payload_type_violations + s.source_violations + s.foreign_ssrc + s.duplicate + s.late
            >= s.datagrams,
        "a datagram went unaccounted: {s:?}"
    );
    // At most one packet per 20 ms of elapsed time (plus the first).
    let elapsed = now.duration_since(start).as_millis() as u64;
    assert!(sent <= elapsed / 20 + 2, "{sent} packets in {elapsed} ms");
});
