//! Speech core benchmarks on the real models (see BENCHMARKS.md):
//! whisper base STT for 1, 3 and 6 s utterances (encoder context fitted to
//! the utterance, and the full 30 s window), Silero VAD per 32 ms chunk
//! (one stream, and 8 calls in one batch), TTS time to first audio, Smart
//! Turn (front end alone, and with the model for 1 and 4 calls).
//! Needs the setup's models (`bash scripts/setup.sh`).

use aiagc_models::audio::read_wav_16k;
use aiagc_models::manifest::default_dir;
use aiagc_models::silero::{SileroModel, StreamState, CHUNK};
use aiagc_models::stt::{SttConfig, WhisperModel};
use aiagc_models::tts::{EspeakVoice, PiperVoice, Tts};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

fn script() -> Vec<f32> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/generated/de/script_01_16k.wav");
    read_wav_16k(&path).expect("fixtures (run scripts/setup.sh)")
}

fn onnx_lib() -> PathBuf {
    aiagc_models::onnx::library(&default_dir())
}

fn stt(c: &mut Criterion) {
    let audio = script();
    let model = WhisperModel::load(&default_dir().join(aiagc_models::WHISPER_DEFAULT))
        .expect("whisper (run scripts/setup.sh)");
    let mut worker = model.worker().expect("state");
    let mut group = c.benchmark_group("stt");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for secs in [1usize, 3, 6] {
        // From 0.5 s: speech of the German caller script.
        let clip = &audio[8000..8000 + secs * 16000];
        let fitted = SttConfig::default();
        group.bench_function(format!("fitted/{secs}s"), |b| {
            b.iter(|| worker.transcribe(black_box(clip), &fitted).expect("stt"))
        });
        if secs == 3 {
            let full = SttConfig {
                fit_audio_ctx: false,
                ..SttConfig::default()
            };
            group.bench_function(format!("full_window/{secs}s"), |b| {
                b.iter(|| worker.transcribe(black_box(clip), &full).expect("stt"))
            });
        }
    }
    group.finish();
}

fn silero(c: &mut Criterion) {
    let audio = script();
    let mut model =
        SileroModel::load(&onnx_lib(), &default_dir().join("silero_vad.onnx")).expect("silero");
    let mut group = c.benchmark_group("silero");
    let chunk = &audio[16000..16000 + CHUNK];
    let mut one = [StreamState::default()];
    group.bench_function("chunk/batch1", |b| {
        b.iter(|| model.run_batch(&[black_box(chunk)], &mut one).expect("run"))
    });
    let chunks: Vec<&[f32]> = (0..8)
        .map(|i| &audio[16000 + i * CHUNK..16000 + (i + 1) * CHUNK])
        .collect();
    let mut eight: Vec<StreamState> = (0..8).map(|_| StreamState::default()).collect();
    group.bench_function("chunk/batch8", |b| {
        b.iter(|| {
            model
                .run_batch(black_box(&chunks), &mut eight)
                .expect("run")
        })
    });
    group.finish();
}

fn tts(c: &mut Criterion) {
    let mut group = c.benchmark_group("tts_first_sentence");
    group.sample_size(20);
    let sentence = "Ihr Termin ist am Dienstag um halb drei.";
    let mut espeak = EspeakVoice::german();
    group.bench_function("espeak_de", |b| {
        b.iter(|| espeak.synthesize(black_box(sentence)).expect("tts"))
    });
    let mut piper = PiperVoice::load(
        &onnx_lib(),
        &default_dir().join("piper/en_US-joe-medium.onnx"),
    )
    .expect("piper");
    group.bench_function("piper_en_us_medium", |b| {
        b.iter(|| {
            piper
                .synthesize(black_box(
                    "Your appointment is on Tuesday at half past two.",
                ))
                .expect("tts")
        })
    });
    group.finish();
}

fn smart_turn(c: &mut Criterion) {
    use aiagc_models::smart_turn::{EndOfTurn, Features, SmartTurn, FRAMES, MELS};
    let audio: Vec<f32> = script().into_iter().take(16000 * 3).collect();
    let mut model = SmartTurn::from_dir(&default_dir()).expect("smart turn (run scripts/setup.sh)");
    let mut features = Features::default();
    let mut out = vec![0.0; MELS * FRAMES];
    let mut group = c.benchmark_group("smart_turn");
    group.bench_function("features_8s", |b| {
        b.iter(|| features.compute(black_box(&audio), &mut out))
    });
    group.bench_function("features_and_model/batch1", |b| {
        b.iter(|| model.complete_probability(black_box(&audio)).unwrap())
    });
    let four: Vec<&[f32]> = vec![&audio[..]; 4];
    group.bench_function("features_and_model/batch4", |b| {
        b.iter(|| model.run_batch(black_box(&four)).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = stt, silero, tts, smart_turn
}
criterion_main!(benches);
