//! Arbitrary packets (sequence, timestamp, SSRC, payload size) at arbitrary
//! arrival times into the jitter buffer, popped on a 20 ms grid: no panic,
//! bounded depth, payloads as stored.
#![no_main]

use aiagc_engine::jitter::{JitterBuffer, JitterConfig, Pop};
use aiagc_engine::packet::RtpView;
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

#[derive(Arbitrary, Debug)]
struct Packet {
    sequence: u16,
    timestamp: u32,
    other_ssrc: bool,
    marker: bool,
    len: u16,
    advance_ms: u8,
    pops: u8,
}

fuzz_target!(|packets: Vec<Packet>| {
    let mut jb = JitterBuffer::new(JitterConfig::default(), 16000);
    let start = Instant::now();
    let mut now = start;
    let payload = vec![0x5au8; 4096];
    for p in packets.iter().take(5000) {
        now += Duration::from_millis(p.advance_ms as u64);
        let view = RtpView {
            marker: p.marker,
            payload_type: 118,
            sequence: p.sequence,
            timestamp: p.timestamp,
            ssrc: if p.other_ssrc { 2 } else { 1 },
            payload: &payload[..(p.len as usize).min(payload.len())],
        };
        let _ = jb.push(&view, now);
        for _ in 0..(p.pops % 4) {
            if let Pop::Packet { payload, .. } = jb.pop() {
                assert!(payload.iter().all(|&b| b == 0x5a));
            }
        }
        assert!(jb.depth() <= 4096, "depth {}", jb.depth());
    }
});
