//! TTS on the real voices, checked by ear-equivalent: level, rate,
//! duration, and the round trip TTS → 8 kHz µ-law → whisper → text.

use aiagc_models::audio::{resample, through_ulaw};
use aiagc_models::manifest::default_dir;
use aiagc_models::stt::{word_error_rate, SttConfig, WhisperModel};
use aiagc_models::tts::{Audio, EspeakVoice, PiperVoice, Tts};
use std::time::Instant;

fn rms(a: &Audio) -> f32 {
    (a.samples.iter().map(|x| x * x).sum::<f32>() / a.samples.len().max(1) as f32).sqrt()
}

fn round_trip(audio: &Audio, lang: &str) -> String {
    let whisper = WhisperModel::load(&default_dir().join(aiagc_models::WHISPER_GGML))
        .expect("model (run scripts/setup.sh)");
    let wide = resample(&audio.samples, audio.sample_rate, 16000).unwrap();
    let phone = through_ulaw(&wide).unwrap();
    whisper
        .worker()
        .unwrap()
        .transcribe(
            &phone,
            &SttConfig {
                language: lang.into(),
                ..SttConfig::default()
            },
        )
        .unwrap()
        .text
}

const GERMAN: &[&str] = &[
    "Guten Tag, hier ist die Praxis Doktor Weber.",
    "Ihr Termin ist am Dienstag um halb drei.",
    "Möchten Sie einen neuen Termin vereinbaren?",
    "Vielen Dank für Ihren Anruf, auf Wiederhören.",
];

#[test]
fn espeak_german_is_audible_and_understood_over_the_phone() {
    let mut voice = EspeakVoice::german();
    let mut total = 0.0;
    for text in GERMAN {
        let t = Instant::now();
        let audio = voice.synthesize(text).unwrap();
        let took = t.elapsed();
        assert_eq!(audio.sample_rate, 22050);
        assert!(rms(&audio) > 0.02, "{text}: silent");
        // About 2.5–4 words a second at 165 wpm.
        let words = text.split_whitespace().count() as f64;
        assert!(
            audio.seconds() > words / 5.0 && audio.seconds() < words / 1.5 + 1.0,
            "{text}: {:.2} s",
            audio.seconds()
        );
        let heard = round_trip(&audio, "de");
        let wer = word_error_rate(text, &heard);
        eprintln!(
            "{wer:.2} ({:.0} ms synth, {:.2} s audio) {text} -> {heard}",
            took.as_secs_f64() * 1000.0,
            audio.seconds()
        );
        total += wer;
    }
    let wer = total / GERMAN.len() as f64;
    eprintln!("espeak-ng German round-trip WER {wer:.3}");
    assert!(wer <= ESPEAK_ROUND_TRIP_WER_MAX, "{wer}");
}

#[test]
fn piper_voice_is_audible_and_understood_over_the_phone() {
    let dir = default_dir();
    let lib = aiagc_models::onnx::library(&dir);
    let mut voice = PiperVoice::load(&lib, &dir.join("piper/en_US-joe-medium.onnx")).unwrap();
    assert_eq!(voice.sample_rate(), 22050);
    let texts = [
        "Your appointment is on Tuesday at half past two.",
        "Thank you for calling, goodbye.",
    ];
    let mut total = 0.0;
    for text in texts {
        let t = Instant::now();
        let audio = voice.synthesize(text).unwrap();
        let took = t.elapsed();
        assert!(rms(&audio) > 0.02, "silent");
        let words = text.split_whitespace().count() as f64;
        assert!(
            audio.seconds() > words / 5.0 && audio.seconds() < words / 1.5 + 1.0,
            "{:.2} s",
            audio.seconds()
        );
        let heard = round_trip(&audio, "en");
        let wer = word_error_rate(text, &heard);
        eprintln!(
            "{wer:.2} ({:.0} ms synth, {:.2} s audio) {text} -> {heard}",
            took.as_secs_f64() * 1000.0,
            audio.seconds()
        );
        total += wer;
    }
    let wer = total / texts.len() as f64;
    eprintln!("Piper en_US round-trip WER {wer:.3}");
    assert!(wer <= PIPER_ROUND_TRIP_WER_MAX, "{wer}");
    let ids = voice.phoneme_ids("hə");
    assert_eq!(ids.first(), Some(&1), "BOS first");
    assert_eq!(ids.last(), Some(&2), "EOS last");
}

/// Measured 0.719 (espeak-ng `de` at 165 wpm, whisper base, fitted context).
const ESPEAK_ROUND_TRIP_WER_MAX: f64 = 0.80;
/// Measured 0.000 on the two sentences.
const PIPER_ROUND_TRIP_WER_MAX: f64 = 0.15;
