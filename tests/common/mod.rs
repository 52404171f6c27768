//! Helpers shared by the integration tests (each test binary uses some).
#![allow(dead_code)]

pub mod asterisk;
pub mod greetings;
pub mod webhook;

use aiagc::runtime::media::{CallSummary, DialogueFactory};
use aiagc_ari::sim::Simulator;
use aiagc_dialogue::scenario::Scenario;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A generated 16 kHz fixture as samples.
pub fn wav16(name: &str) -> Vec<i16> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/generated/de")
        .join(name);
    let mut r = hound::WavReader::open(&path).expect("fixtures (run scripts/setup.sh)");
    r.samples::<i16>().map(|s| s.unwrap()).collect()
}

/// `x` resampled from `from` to `to` Hz by the engine's resampler (its
/// delay removed): the one aiagc uses.
pub fn resample(x: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to {
        return x.to_vec();
    }
    let mut r = aiagc_engine::resample::Resampler::new(from, to).expect("resampler");
    let mut out = Vec::new();
    let mut sink = |o: &[f32]| out.extend_from_slice(o);
    let delay = r.delay_samples();
    r.push(x, &mut sink).expect("resample");
    r.flush(&mut sink).expect("resample");
    out.drain(..delay.min(out.len()));
    out
}

/// Whether a packet the simulated caller received carries speech-level
/// audio (as decoded by the simulator, in any format).
pub fn loud(record: &aiagc_ari::sim::RtpRecord) -> bool {
    record.loud()
}

/// The practice scenario as the dialogue of every call.
pub fn praxis() -> DialogueFactory {
    let scenario = Scenario::praxis();
    Arc::new(move || Box::new(scenario.session()))
}

/// Waits for the summary of `caller`; summaries of other calls that
/// arrive meanwhile are kept in `seen` for later lookups.
pub async fn summary_of(
    rx: &crossbeam_channel::Receiver<CallSummary>,
    seen: &mut Vec<CallSummary>,
    caller: &str,
) -> CallSummary {
    let t = Instant::now();
    loop {
        seen.extend(rx.try_iter());
        if let Some(i) = seen.iter().position(|s| s.call == caller) {
            return seen.remove(i);
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no summary for {caller}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the agent has spoken after `since` and been quiet for
/// 600 ms; returns when its speech started.
pub async fn agent_spoke(sim: &Simulator, caller: &str, since: Instant) -> Instant {
    let t = Instant::now();
    loop {
        let rec = sim.received_for_caller(caller);
        let audible: Vec<Instant> = rec
            .iter()
            .filter(|r| r.at > since && loud(r))
            .map(|r| r.at)
            .collect();
        if let (Some(first), Some(last)) = (audible.first(), audible.last()) {
            if last.elapsed() > Duration::from_millis(600) {
                return *first;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the agent did not speak"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Share of the energy of `x` (16 kHz) above 4 kHz, from 256-point DFTs
/// with a Hann window over the frames louder than −50 dBFS.
pub fn share_above_4k(x: &[i16]) -> f64 {
    const N: usize = 256;
    let (mut high, mut all) = (0.0f64, 0.0f64);
    for frame in x.chunks_exact(N) {
        let e: f64 = frame.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / N as f64;
        if e < (32768.0f64 * 0.00316).powi(2) {
            continue;
        }
        let w: Vec<f64> = frame
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                s as f64 * (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N as f64).cos())
            })
            .collect();
        for k in 1..N / 2 {
            let (mut re, mut im) = (0.0, 0.0);
            for (i, v) in w.iter().enumerate() {
                let a = 2.0 * std::f64::consts::PI * (k * i) as f64 / N as f64;
                re += v * a.cos();
                im -= v * a.sin();
            }
            let p = re * re + im * im;
            all += p;
            // Bin k is k × 62.5 Hz.
            if k * 16000 / N > 4000 {
                high += p;
            }
        }
    }
    if all == 0.0 {
        0.0
    } else {
        high / all
    }
}
