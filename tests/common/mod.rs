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

/// Log energies of 24 equal bands up to 8 kHz, per 20 ms frame of `x`
/// (16 kHz, 512-point Hann-windowed FFT).
fn band_frames(x: &[f32]) -> Vec<[f64; 24]> {
    use realfft::RealFftPlanner;
    const N: usize = 512;
    const HOP: usize = 320;
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(N);
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut frames = Vec::new();
    let mut start = 0;
    while start + N <= x.len() {
        for (i, v) in input.iter_mut().enumerate() {
            let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N as f64).cos();
            *v = x[start + i] as f64 * w;
        }
        let _ = fft.process(&mut input, &mut spectrum);
        let mut bands = [0.0f64; 24];
        // Bins 1..=240 (31.25 Hz to 7.5 kHz), ten to a band.
        for (k, c) in spectrum.iter().enumerate().skip(1).take(240) {
            bands[(k - 1) / 10] += c.norm_sqr();
        }
        for b in &mut bands {
            *b = (*b + 1e-9).log10();
        }
        frames.push(bands);
        start += HOP;
    }
    frames
}

/// Correlation of the log band energies of `a` and `b` (equal length) in
/// the bands `used`, each band's mean over the piece removed first: the
/// movement of the spectrum, not the voice's average shape, which any
/// speech by the same voice shares.
fn band_correlation(a: &[[f64; 24]], b: &[[f64; 24]], used: &[usize]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    if n == 0.0 {
        return 0.0;
    }
    let (mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0);
    for &k in used {
        let ma = a.iter().map(|f| f[k]).sum::<f64>() / n;
        let mb = b.iter().map(|f| f[k]).sum::<f64>() / n;
        for (fa, fb) in a.iter().zip(b) {
            let (x, y) = (fa[k] - ma, fb[k] - mb);
            saa += x * x;
            sbb += y * y;
            sab += x * y;
        }
    }
    if saa > 0.0 && sbb > 0.0 {
        sab / (saa * sbb).sqrt()
    } else {
        0.0
    }
}

/// How closely `heard` (a recording, 16 kHz) carries `sent` (what was
/// played into the line, 16 kHz), independent of whisper, whose share of
/// the words of espeak-ng speech swings from run to run. `sent` is cut
/// into half-second pieces; each loud piece is looked for anywhere in
/// `heard` (the app speaks sentence by sentence, with pauses of its own,
/// and a recording may begin late or end early) and scores the best
/// correlation of its log band energies there. The result is the median
/// score of the pieces: 1.0 is the same sound throughout. Measured on
/// real-Asterisk recordings: the reply 0.92–0.99; another sentence by the
/// same voice 0.50–0.62, the recording at 3/4 speed 0.54–0.64, with every
/// other 20 ms silenced 0.83–0.87, byte-swapped 0.73–0.88.
pub fn spectral_match(heard: &[f32], sent: &[f32]) -> f64 {
    const PIECE: usize = 25;
    let h = band_frames(heard);
    let s = band_frames(sent);
    let loudness = |f: &[f64; 24]| f.iter().map(|b| 10f64.powf(*b)).sum::<f64>();
    let peak = s.iter().map(loudness).fold(0.0f64, f64::max);
    // The bands the sent sound has (µ-law: nothing above 4 kHz).
    let mean: Vec<f64> = (0..24)
        .map(|k| s.iter().map(|f| f[k]).sum::<f64>() / s.len().max(1) as f64)
        .collect();
    let top = mean.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let used: Vec<usize> = (0..24).filter(|&k| mean[k] > top - 4.0).collect();
    let mut scores = Vec::new();
    for piece in s.chunks_exact(PIECE) {
        let loud = piece.iter().filter(|f| loudness(f) > peak * 1e-3).count();
        if loud < PIECE / 2 {
            continue;
        }
        let best = h
            .windows(PIECE)
            .map(|w| band_correlation(piece, w, &used))
            .fold(0.0f64, f64::max);
        scores.push(best);
    }
    if scores.is_empty() {
        return 0.0;
    }
    scores.sort_by(|a, b| a.total_cmp(b));
    scores[scores.len() / 2]
}
