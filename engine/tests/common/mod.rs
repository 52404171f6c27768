//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use aiagc_engine::impair::{Impairment, Network, RtpSender};
use aiagc_engine::{Call, CallEvent};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub const PEER: &str = "127.0.0.1:40000";

pub fn peer() -> SocketAddr {
    PEER.parse().unwrap()
}

pub fn fixtures() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/generated");
    assert!(
        dir.join("de/transcripts.tsv").exists(),
        "fixtures missing: run scripts/setup.sh first"
    );
    dir
}

pub fn read_wav(path: &std::path::Path) -> (u32, Vec<i16>) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rate = r.spec().sample_rate;
    (rate, r.samples::<i16>().map(|s| s.unwrap()).collect())
}

/// Speech regions (ms) of a generated caller script.
pub fn script_segments(file: &str) -> Vec<(u64, u64)> {
    let tsv = std::fs::read_to_string(fixtures().join("de/scripts.tsv")).unwrap();
    let line = tsv.lines().find(|l| l.starts_with(file)).unwrap();
    let segs = line.split('\t').nth(3).unwrap();
    segs.split('|')
        .map(|s| {
            let range = s.split(':').next().unwrap();
            let (a, b) = range.split_once('-').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect()
}

/// What a simulated call produced.
#[derive(Default)]
pub struct Outcome {
    pub events: Vec<(Instant, CallEvent)>,
    pub sent: Vec<(Instant, Vec<u8>)>,
    pub frames: Vec<f32>,
}

/// Streams `pcm` (at the codec's rate) from a far end through `impairment`
/// into `call`, driving it exactly as the runtime would, for `duration`.
/// `on_event` may act on the call (e.g. speak) as events arrive.
pub fn drive(
    call: &mut Call,
    pcm: &[i16],
    impairment: Impairment,
    seed: u64,
    t0: Instant,
    duration: Duration,
    mut on_event: impl FnMut(&mut Call, &CallEvent, Instant),
) -> Outcome {
    let codec = call.codec();
    let mut sender = RtpSender::new(codec, 1000, 160, 0x1234_5678).unwrap();
    let mut net = Network::new(impairment, seed);
    let n = codec.frame_samples();
    for (i, chunk) in pcm.chunks(n).enumerate() {
        let p = sender.packet(chunk);
        net.send(&p, t0 + Duration::from_millis(20 * i as u64));
    }
    let end = t0 + duration;
    let mut out = Outcome::default();
    let mut now = t0;
    loop {
        while let Some((at, d)) = net.poll(now) {
            call.receive(peer(), &d, at);
        }
        let before = call.stats().frames_played;
        call.handle_timeout(now);
        let played = call.stats().frames_played - before;
        assert!(played <= 1, "one wake-up per tick");
        if played == 1 {
            out.frames.extend_from_slice(call.last_frame());
        }
        while let Some(t) = call.poll_transmit(now) {
            out.sent.push((now, t.data.to_vec()));
        }
        while let Some(e) = call.poll_event() {
            on_event(call, &e, now);
            out.events.push((now, e));
        }
        let next = call.poll_timeout().min(net.next_arrival().unwrap_or(end));
        if next >= end {
            break;
        }
        now = next.max(now + Duration::from_micros(1));
    }
    out
}
