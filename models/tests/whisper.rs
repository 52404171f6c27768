//! whisper base, converted by our converter, on real speech: German
//! espeak-ng fixtures through the telephone path and recorded English
//! Asterisk prompts. Thresholds are the measured WER plus a small margin
//! (see BENCHMARKS.md); a regression in the converter, the audio path or
//! the decoding options shows up here.

use aiagc_models::audio::{read_wav_16k, through_ulaw};
use aiagc_models::manifest::default_dir;
use aiagc_models::stt::{word_error_rate, SttConfig, WhisperModel};
use std::path::PathBuf;

mod support;
use support::{fixtures, model, serial};

fn rows(file: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(fixtures().join(file))
        .expect("fixtures (run scripts/setup.sh)")
        .lines()
        .skip(1)
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

/// A fresh conversion is the reference ggml-base.bin's size, byte for byte
/// the file the setup made, and loads.
#[test]
fn converter_reproduces_the_reference_layout() {
    let _serial = serial();
    let dir = std::env::temp_dir().join(format!("aiagc-convert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("ggml-base.bin");
    let report =
        aiagc_models::convert::convert(&default_dir().join("whisper-base-ct2"), &out).unwrap();
    assert_eq!(report.bytes, 147_951_465);
    assert_eq!(report.tensors, 245);
    assert_eq!(report.tokens, 50_257);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 147_951_465);
    let fresh = std::fs::read(&out).unwrap();
    let cached = std::fs::read(default_dir().join(aiagc_models::WHISPER_GGML)).unwrap();
    assert!(fresh == cached, "conversion is deterministic");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn german_fixture_comes_back_as_words() {
    let _serial = serial();
    let audio = read_wav_16k(&fixtures().join("de/greet_02_v0_r150_16k.wav")).unwrap();
    let mut w = model().worker().unwrap();
    let t = w.transcribe(&audio, &SttConfig::default()).unwrap();
    let wer = word_error_rate("Hallo, ich hätte gerne einen Termin.", &t.text);
    assert!(wer <= 0.34, "{:?} (WER {wer})", t.text);
    assert!(t.audio_ctx < 1500);
}

fn mean_wer(lang: &str, items: &[(PathBuf, String)], telephone: bool) -> (f64, f64) {
    mean_wer_with(lang, items, telephone, true)
}

fn mean_wer_with(
    lang: &str,
    items: &[(PathBuf, String)],
    telephone: bool,
    fit_audio_ctx: bool,
) -> (f64, f64) {
    let mut w = model().worker().unwrap();
    let config = SttConfig {
        language: lang.into(),
        fit_audio_ctx,
        ..SttConfig::default()
    };
    let (mut sum, mut rtf) = (0.0, 0.0);
    for (path, text) in items {
        let mut audio = read_wav_16k(path).unwrap();
        if telephone {
            audio = through_ulaw(&audio).unwrap();
        }
        let t = w.transcribe(&audio, &config).unwrap();
        let wer = word_error_rate(text, &t.text);
        eprintln!("{wer:.2}  {text} -> {}", t.text);
        sum += wer;
        rtf += t.rtf();
    }
    (sum / items.len() as f64, rtf / items.len() as f64)
}

fn german_items() -> Vec<(PathBuf, String)> {
    rows("de/transcripts.tsv")
        .into_iter()
        .filter(|r| r[0].contains("_v0_r150_8k"))
        // Fragments of split turns (turn-taking fixtures) are not sentences.
        .filter(|r| !r[0].starts_with("part_"))
        .map(|r| (fixtures().join("de").join(&r[0]), r[1].clone()))
        .collect()
}

/// The same set with the full 30 s encoder window (slow: run by hand with
/// `cargo test --release -p aiagc-models --test whisper -- --ignored`).
#[test]
#[ignore]
fn german_telephone_wer_full_window() {
    let _serial = serial();
    let (wer, rtf) = mean_wer_with("de", &german_items(), true, false);
    eprintln!("German telephone WER (full window) {wer:.3}, RTF {rtf:.3}");
}

/// German caller speech over the telephone path (8 kHz, µ-law), one voice
/// at the slower rate: every utterance of the list.
#[test]
fn german_telephone_wer_stays_at_the_measured_level() {
    let _serial = serial();
    let items = german_items();
    assert_eq!(items.len(), 34);
    let (wer, rtf) = mean_wer("de", &items, true);
    eprintln!("German telephone WER {wer:.3}, RTF {rtf:.3}");
    assert!(wer <= GERMAN_TELEPHONE_WER_MAX, "WER {wer}");
}

/// Recorded human English prompts (8 kHz Asterisk sounds).
#[test]
fn english_human_wer_stays_at_the_measured_level() {
    let _serial = serial();
    let items: Vec<(PathBuf, String)> = rows("en/transcripts.tsv")
        .into_iter()
        .map(|r| (fixtures().join("en").join(&r[0]), r[1].clone()))
        .collect();
    assert!(items.len() >= 20);
    let (wer, rtf) = mean_wer("en", &items, false);
    eprintln!("English human WER {wer:.3}, RTF {rtf:.3}");
    assert!(wer <= ENGLISH_HUMAN_WER_MAX, "WER {wer}");
}

/// Measured 1.060 (fitted encoder context, greedy, no prompt): synthetic
/// narrowband German is hard for whisper base; issue #10 works on it.
const GERMAN_TELEPHONE_WER_MAX: f64 = 1.12;
/// Measured 0.164 on the 28 recorded prompts (0.170 before the restarted-tail rule).
const ENGLISH_HUMAN_WER_MAX: f64 = 0.22;

/// Partials while the caller speaks: when the last partial already holds
/// every voiced sample, the final result costs nothing after end of speech.
#[test]
fn partial_transcripts_make_the_final_result_free() {
    let _serial = serial();
    use aiagc_models::stt::Partials;
    let speech = read_wav_16k(&fixtures().join("de/book_01_v0_r150_16k.wav")).unwrap();
    let config = SttConfig::default();
    let mut w = model().worker().unwrap();
    let mut partials = Partials::new(400);
    let mut seen = 0;
    // Speech, then the endpointer's 500 ms hangover of silence.
    let stream: Vec<f32> = speech
        .iter()
        .copied()
        .chain(std::iter::repeat_n(0.0, 8000))
        .collect();
    for frame in stream.chunks(320) {
        partials.push(frame);
        if partials.poll(&mut w, &config).unwrap().is_some() {
            seen += 1;
        }
    }
    assert!(seen >= 3, "{seen} partials");
    let (t, reused) = partials.finish(speech.len(), &mut w, &config).unwrap();
    assert!(reused && t.elapsed.is_zero(), "{t:?}");
    assert!(t.text.to_lowercase().contains("termin"), "{}", t.text);

    // Speech that continued past the last partial needs a real final decode.
    let mut late = Partials::new(400);
    late.push(&speech[..16000]);
    late.poll(&mut w, &config).unwrap();
    late.push(&speech[16000..]);
    let (t, reused) = late.finish(speech.len(), &mut w, &config).unwrap();
    assert!(!reused && !t.elapsed.is_zero());
}

/// The converter is not tied to whisper base: CTranslate2 tiny.en (4
/// layers, 384 wide, English-only vocabulary) converts, loads and
/// transcribes recorded English.
#[test]
fn converter_handles_tiny_en() {
    let _serial = serial();
    let dir = std::env::temp_dir().join(format!("aiagc-tiny-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("ggml-tiny.en.bin");
    let report =
        aiagc_models::convert::convert(&default_dir().join("whisper-tiny-en-ct2"), &out).unwrap();
    assert_eq!(
        (
            report.hparams.n_audio_layer,
            report.hparams.n_audio_state,
            report.hparams.n_vocab
        ),
        (4, 384, 51864)
    );
    assert_eq!(
        report.tokens, 50_256,
        "English-only: no <|endoftext|> among regular tokens"
    );
    let tiny = WhisperModel::load(&out).unwrap();
    let audio = read_wav_16k(&fixtures().join("en/vm-goodbye.wav")).unwrap();
    let t = tiny
        .worker()
        .unwrap()
        .transcribe(
            &audio,
            &SttConfig {
                language: "en".into(),
                ..SttConfig::default()
            },
        )
        .unwrap();
    assert!(word_error_rate("Goodbye!", &t.text) <= 0.5, "{:?}", t.text);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The converter's quantized outputs load and transcribe: q8_0 is about
/// 55 % of the f16 file, q5_0 about 37 %.
#[test]
fn quantized_conversions_load_and_transcribe() {
    use aiagc_models::convert::{convert_as, Quant};
    let _serial = serial();
    let dir = std::env::temp_dir().join(format!("aiagc-quant-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let audio = read_wav_16k(&fixtures().join("de/greet_02_v0_r150_16k.wav")).unwrap();
    for (quant, name, max_share) in [(Quant::Q8_0, "q8_0", 0.56), (Quant::Q5_0, "q5_0", 0.38)] {
        let out = dir.join(format!("ggml-base-{name}.bin"));
        let report = convert_as(&default_dir().join("whisper-base-ct2"), &out, quant).unwrap();
        assert!(
            (report.bytes as f64) < 147_951_465.0 * max_share,
            "{name}: {} bytes",
            report.bytes
        );
        let m = WhisperModel::load(&out).unwrap();
        let t = m
            .worker()
            .unwrap()
            .transcribe(&audio, &SttConfig::default())
            .unwrap();
        let wer = word_error_rate("Hallo, ich hätte gerne einen Termin.", &t.text);
        assert!(wer <= 0.34, "{name}: {:?} (WER {wer})", t.text);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The build has no AMX kernels (a `target/` built natively on an AMX CPU
/// before `.cargo/config.toml` set `GGML_NATIVE=OFF` would).
#[test]
fn ggml_is_built_without_amx() {
    assert!(
        !aiagc_models::stt::built_with_amx(),
        "run `cargo clean -p whisper-rs-sys` and rebuild"
    );
}

/// The app's model (q8_0) gives the same words after ONNX Runtime ran
/// Smart Turn on the same thread, as a speech worker does between two
/// decodes. ggml's AMX kernels set the CPU's tile configuration once per
/// thread and trust it from then on; ONNX Runtime's AMX kernels load their
/// own, so on a CPU with AMX every decode after the first Smart Turn came
/// back as "-" or "The body of the body." — the live demo's 0.91 WER. Our
/// ggml is built without AMX (`.cargo/config.toml`).
#[test]
fn smart_turn_between_decodes_leaves_whisper_intact() {
    let _serial = serial();
    let q8 = WhisperModel::load(&default_dir().join(aiagc_models::WHISPER_DEFAULT))
        .expect("converted model (run scripts/setup.sh)");
    use aiagc_models::smart_turn::EndOfTurn;
    let mut turn = aiagc_models::smart_turn::SmartTurn::from_dir(&default_dir())
        .expect("Smart Turn model (run scripts/setup.sh)");
    let mut w = q8.worker().unwrap();
    let names = ["book_01_v0_r150_16k.wav", "greet_02_v0_r150_16k.wav"];
    let audio: Vec<Vec<f32>> = names
        .iter()
        .map(|n| read_wav_16k(&fixtures().join("de").join(n)).unwrap())
        .collect();
    let before: Vec<String> = audio
        .iter()
        .map(|a| w.transcribe(a, &SttConfig::default()).unwrap().text)
        .collect();
    assert!(
        before.iter().all(|t| t.split_whitespace().count() >= 3),
        "{before:?}"
    );
    for a in &audio {
        let p = turn.complete_probability(a).unwrap();
        assert!((0.0..=1.0).contains(&p));
    }
    let after: Vec<String> = audio
        .iter()
        .map(|a| w.transcribe(a, &SttConfig::default()).unwrap().text)
        .collect();
    assert_eq!(before, after);
}
