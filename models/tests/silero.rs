//! Silero VAD on a German caller script with known speech regions.

use aiagc_engine::vad::{Vad, FRAME_16K};
use aiagc_models::audio::read_wav_16k;
use aiagc_models::manifest::default_dir;
use aiagc_models::silero::{speech_decisions, SileroModel, SileroVad, StreamState, CHUNK};
use std::path::PathBuf;

fn model() -> SileroModel {
    let dir = default_dir();
    let lib = aiagc_models::onnx::library(&dir);
    SileroModel::load(&lib, &dir.join("silero_vad.onnx")).expect("silero (run scripts/setup.sh)")
}

fn script(name: &str) -> (Vec<f32>, Vec<(f64, f64)>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/generated/de");
    let tsv = std::fs::read_to_string(dir.join("scripts.tsv")).unwrap();
    let line = tsv.lines().find(|l| l.starts_with(name)).unwrap();
    let segs = line.split('\t').nth(3).unwrap().split('|').map(|s| {
        let (a, b) = s.split(':').next().unwrap().split_once('-').unwrap();
        (
            a.parse::<f64>().unwrap() / 1000.0,
            b.parse::<f64>().unwrap() / 1000.0,
        )
    });
    (read_wav_16k(&dir.join(name)).unwrap(), segs.collect())
}

/// ≥ 95 % of 32 ms chunks agree with the known speech regions, on the
/// wideband script and on its narrowband (8 kHz) version.
#[test]
fn decisions_match_the_known_speech_regions() {
    for name in ["script_01_16k.wav", "script_02_8k.wav"] {
        let (audio, segments) = script(name);
        let mut vad = SileroVad::new(model());
        let mut probs = Vec::new();
        for frame in audio.chunks_exact(FRAME_16K) {
            probs.push(vad.speech_probability(frame));
        }
        // One probability per completed 32 ms chunk, then Silero's usual
        // post-processing (pauses under 160 ms stay speech).
        let mut chunk_probs = Vec::new();
        let mut fed = 0usize;
        for p in probs {
            fed += FRAME_16K;
            if fed / CHUNK > chunk_probs.len() {
                chunk_probs.push(p);
            }
        }
        let decisions = speech_decisions(&chunk_probs, 0.5, 5);
        let (mut agree, mut total) = (0, 0);
        for (k, speech) in decisions.iter().enumerate() {
            let mid = (k * CHUNK + CHUNK / 2) as f64 / 16000.0;
            let truth = segments.iter().any(|(a, b)| mid >= *a && mid < *b);
            total += 1;
            agree += usize::from(*speech == truth);
        }
        let share = agree as f64 / total as f64;
        eprintln!(
            "{name}: {agree}/{total} chunks agree ({:.1} %)",
            share * 100.0
        );
        assert!(share >= 0.95, "{name}: {share}");
        assert_eq!(vad.errors, 0);
    }
}

/// Two calls in one batch get the same answers as run one by one.
#[test]
fn batched_streams_equal_single_runs() {
    let (audio, _) = script("script_01_16k.wav");
    let a = &audio[16000..16000 + 8 * CHUNK];
    let b = &audio[48000..48000 + 8 * CHUNK];
    let mut m = model();
    let mut single = [StreamState::default(), StreamState::default()];
    let mut batch = [StreamState::default(), StreamState::default()];
    for k in 0..8 {
        let (ca, cb) = (
            &a[k * CHUNK..(k + 1) * CHUNK],
            &b[k * CHUNK..(k + 1) * CHUNK],
        );
        let pa = m.run_batch(&[ca], &mut single[..1]).unwrap()[0];
        let pb = m.run_batch(&[cb], &mut single[1..]).unwrap()[0];
        let both = m.run_batch(&[ca, cb], &mut batch).unwrap();
        assert!(
            (both[0] - pa).abs() < 1e-4 && (both[1] - pb).abs() < 1e-4,
            "{both:?} vs {pa} {pb}"
        );
    }
    assert!(
        m.run_batch(&[&a[..100]], &mut single[..1]).is_err(),
        "wrong chunk size is an error"
    );
}
