//! Text-to-speech: Piper voices through ONNX Runtime, and espeak-ng
//! (libespeak-ng) as the always-available German voice and as Piper's
//! phonemizer.
//!
//! Replies are synthesized sentence by sentence ([`sentences`]) so the
//! first audio is ready while later sentences are still being made.

use crate::onnx::OnnxError;
use espeakng_sys as es;
use ort::session::Session;
use ort::value::TensorRef;
use std::collections::HashMap;
use std::ffi::{c_int, c_short, c_void, CString};
use std::path::Path;
use std::sync::Mutex;

/// Synthesized audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// Mono samples in -1..1.
    pub samples: Vec<f32>,
    /// Sample rate.
    pub sample_rate: u32,
}

impl Audio {
    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate.max(1) as f64
    }
}

/// Why synthesis failed.
#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    /// libespeak-ng could not start or synthesize.
    #[error("espeak-ng: {0}")]
    Espeak(String),
    /// The voice files are missing or invalid.
    #[error("voice {path}: {message}")]
    Voice {
        /// File.
        path: String,
        /// Problem.
        message: String,
    },
    /// ONNX Runtime failed.
    #[error(transparent)]
    Onnx(#[from] OnnxError),
}

/// A voice that turns text into audio.
pub trait Tts: Send {
    /// Synthesizes `text` (one sentence or more).
    fn synthesize(&mut self, text: &str) -> Result<Audio, TtsError>;
}

/// Splits a reply into sentences (at `.`, `!`, `?` followed by a space or
/// the end), keeping the punctuation; abbreviations like "z.B." and dates
/// like "3.12." stay whole because no space follows inside them.
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if matches!(b, b'.' | b'!' | b'?')
            && bytes.get(i + 1).is_none_or(|n| n.is_ascii_whitespace())
        {
            // "am 3. Dezember" (an ordinal), "z.B.", "Dr." (abbreviations) are no end.
            let word = text[..i].rsplit(char::is_whitespace).next().unwrap_or("");
            let ordinal = b == b'.' && word.chars().last().is_some_and(|c| c.is_ascii_digit());
            let abbreviation = b == b'.' && (word.contains('.') || ABBREVIATIONS.contains(&word));
            if !ordinal && !abbreviation {
                let s = text[start..=i].trim();
                if !s.is_empty() {
                    out.push(s);
                }
                start = i + 1;
            }
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// Abbreviations (without their dot) that do not end a sentence.
const ABBREVIATIONS: &[&str] = &[
    "Dr", "Nr", "Str", "bzw", "ca", "Hr", "Fr", "Prof", "Tel", "evtl", "inkl", "vgl",
];

// libespeak-ng has one global synthesizer: every use goes through this lock.
static ESPEAK: Mutex<Option<u32>> = Mutex::new(None);
static SAMPLES: Mutex<Vec<i16>> = Mutex::new(Vec::new());

unsafe extern "C" fn collect(wav: *mut c_short, n: c_int, _events: *mut es::espeak_EVENT) -> c_int {
    if !wav.is_null() && n > 0 {
        // SAFETY: espeak-ng hands us `n` valid samples for the duration of the call.
        let chunk = unsafe { std::slice::from_raw_parts(wav, n as usize) };
        SAMPLES
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(chunk);
    }
    0
}

fn with_espeak<T>(voice: &str, f: impl FnOnce(u32) -> Result<T, TtsError>) -> Result<T, TtsError> {
    let mut guard = ESPEAK.lock().unwrap_or_else(|p| p.into_inner());
    let rate = match *guard {
        Some(rate) => rate,
        None => {
            // SAFETY: plain C initialisation, serialised by the lock.
            let rate = unsafe {
                es::espeak_Initialize(
                    es::espeak_AUDIO_OUTPUT_AUDIO_OUTPUT_SYNCHRONOUS,
                    0,
                    std::ptr::null(),
                    0,
                )
            };
            if rate <= 0 {
                return Err(TtsError::Espeak(
                    "initialisation failed (is espeak-ng-data installed?)".into(),
                ));
            }
            // SAFETY: `collect` matches the callback signature and only touches our buffer.
            unsafe { es::espeak_SetSynthCallback(Some(collect)) };
            *guard = Some(rate as u32);
            rate as u32
        }
    };
    let name =
        CString::new(voice).map_err(|_| TtsError::Espeak("voice name contains NUL".into()))?;
    // SAFETY: valid C string; serialised by the lock.
    if unsafe { es::espeak_SetVoiceByName(name.as_ptr()) } != es::espeak_ERROR_EE_OK {
        return Err(TtsError::Espeak(format!("voice {voice:?} not found")));
    }
    f(rate)
}

/// IPA phonemes of `text` for `voice` (espeak-ng), clause punctuation kept
/// the way Piper voices were trained.
pub fn phonemize(voice: &str, text: &str) -> Result<String, TtsError> {
    with_espeak(voice, |_| {
        let mut out = String::new();
        for clause in text.split_inclusive([',', '.', ';', ':', '!', '?']) {
            let (body, punct) = match clause.chars().last() {
                Some(c) if ",.;:!?".contains(c) => {
                    (&clause[..clause.len() - c.len_utf8()], Some(c))
                }
                _ => (clause, None),
            };
            let c_text = CString::new(body.trim())
                .map_err(|_| TtsError::Espeak("text contains NUL".into()))?;
            let mut ptr: *const c_void = c_text.as_ptr().cast();
            let mut parts = Vec::new();
            while !ptr.is_null() {
                // SAFETY: `ptr` points into `c_text`, which outlives the loop; espeak
                // advances it and sets it to null at the end of the text.
                let ph = unsafe {
                    es::espeak_TextToPhonemes(
                        &mut ptr,
                        es::espeakCHARS_UTF8 as c_int,
                        es::espeakPHONEMES_IPA as c_int,
                    )
                };
                if ph.is_null() {
                    break;
                }
                // SAFETY: espeak returns a NUL-terminated string valid until the next call.
                let s = unsafe { std::ffi::CStr::from_ptr(ph) }
                    .to_string_lossy()
                    .trim()
                    .to_owned();
                if !s.is_empty() {
                    parts.push(s);
                }
            }
            if !parts.is_empty() {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(&parts.join(" "));
            }
            if let Some(p) = punct {
                out.push(p);
            }
        }
        Ok(out)
    })
}

/// espeak-ng's own synthesizer: the German voice that is always there.
pub struct EspeakVoice {
    /// espeak-ng voice (`de`, `de+f3`, …).
    pub voice: String,
    /// Words per minute.
    pub rate: u32,
}

impl EspeakVoice {
    /// The German voice at a telephone-friendly rate.
    pub fn german() -> Self {
        Self {
            voice: "de".into(),
            rate: 165,
        }
    }
}

impl Tts for EspeakVoice {
    fn synthesize(&mut self, text: &str) -> Result<Audio, TtsError> {
        let rate_wpm = self.rate;
        with_espeak(&self.voice, |rate| {
            SAMPLES.lock().unwrap_or_else(|p| p.into_inner()).clear();
            let c_text =
                CString::new(text).map_err(|_| TtsError::Espeak("text contains NUL".into()))?;
            // SAFETY: serialised by the lock; synchronous mode returns when done.
            let err = unsafe {
                es::espeak_SetParameter(es::espeak_PARAMETER_espeakRATE, rate_wpm as c_int, 0);
                es::espeak_Synth(
                    c_text.as_ptr().cast(),
                    text.len() + 1,
                    0,
                    es::espeak_POSITION_TYPE_POS_CHARACTER,
                    0,
                    es::espeakCHARS_UTF8,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
            if err != es::espeak_ERROR_EE_OK {
                return Err(TtsError::Espeak(format!("synthesis error {err}")));
            }
            let samples = std::mem::take(&mut *SAMPLES.lock().unwrap_or_else(|p| p.into_inner()));
            Ok(Audio {
                samples: samples.iter().map(|&s| s as f32 / 32768.0).collect(),
                sample_rate: rate,
            })
        })
    }
}

/// A Piper voice (`*.onnx` + `*.onnx.json`).
pub struct PiperVoice {
    session: Session,
    sample_rate: u32,
    espeak_voice: String,
    scales: [f32; 3],
    ids: HashMap<char, Vec<i64>>,
}

impl PiperVoice {
    /// Loads `model` and its `model.json` config.
    pub fn load(library: &Path, model: &Path) -> Result<Self, TtsError> {
        let json_path = model.with_extension("onnx.json");
        let bad = |message: String| TtsError::Voice {
            path: json_path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(&json_path).map_err(|e| bad(e.to_string()))?;
        let j: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let sample_rate = j
            .pointer("/audio/sample_rate")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| bad("no audio.sample_rate".into()))? as u32;
        let espeak_voice = j
            .pointer("/espeak/voice")
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad("no espeak.voice".into()))?
            .to_owned();
        let scale = |k: &str, d: f64| {
            j.pointer(&format!("/inference/{k}"))
                .and_then(|v| v.as_f64())
                .unwrap_or(d) as f32
        };
        let scales = [
            scale("noise_scale", 0.667),
            scale("length_scale", 1.0),
            scale("noise_w", 0.8),
        ];
        let map = j
            .get("phoneme_id_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| bad("no phoneme_id_map".into()))?;
        let mut ids = HashMap::new();
        for (k, v) in map {
            let mut chars = k.chars();
            if let (Some(c), None) = (chars.next(), chars.next()) {
                let list: Vec<i64> = v
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_i64()).collect())
                    .unwrap_or_default();
                ids.insert(c, list);
            }
        }
        for required in ['_', '^', '$'] {
            if !ids.contains_key(&required) {
                return Err(bad(format!("phoneme_id_map lacks {required:?}")));
            }
        }
        let session = crate::onnx::session(library, model, 2)?;
        Ok(Self {
            session,
            sample_rate,
            espeak_voice,
            scales,
            ids,
        })
    }

    /// Sets the voice's sampling noise (`noise_scale`, `noise_w`); zero for
    /// both makes synthesis deterministic (flatter, but reproducible).
    pub fn set_noise(&mut self, noise_scale: f32, noise_w: f32) {
        self.scales[0] = noise_scale;
        self.scales[2] = noise_w;
    }

    /// The voice's output rate.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Phoneme ids as Piper expects them: BOS, then each phoneme followed by
    /// the pad id, then EOS; phonemes the voice does not know are skipped.
    pub fn phoneme_ids(&self, phonemes: &str) -> Vec<i64> {
        let mut out = Vec::with_capacity(phonemes.len() * 2 + 3);
        let get = |c: char| self.ids.get(&c).map(Vec::as_slice).unwrap_or(&[]);
        out.extend_from_slice(get('^'));
        out.extend_from_slice(get('_'));
        for c in phonemes.chars() {
            if let Some(id) = self.ids.get(&c) {
                out.extend_from_slice(id);
                out.extend_from_slice(get('_'));
            }
        }
        out.extend_from_slice(get('$'));
        out
    }
}

impl Tts for PiperVoice {
    fn synthesize(&mut self, text: &str) -> Result<Audio, TtsError> {
        let phonemes = phonemize(&self.espeak_voice, text)?;
        let ids = self.phoneme_ids(&phonemes);
        let fail = |e: &dyn std::fmt::Display| {
            TtsError::Onnx(OnnxError::Model {
                path: "piper".into(),
                message: e.to_string(),
            })
        };
        let len = [ids.len() as i64];
        let input = TensorRef::from_array_view(([1, ids.len()], &ids[..])).map_err(|e| fail(&e))?;
        let lengths = TensorRef::from_array_view(([1], &len[..])).map_err(|e| fail(&e))?;
        let scales = TensorRef::from_array_view(([3], &self.scales[..])).map_err(|e| fail(&e))?;
        let outputs = self
            .session
            .run(ort::inputs!["input" => input, "input_lengths" => lengths, "scales" => scales])
            .map_err(|e| fail(&e))?;
        let (_, samples) = outputs["output"]
            .try_extract_tensor::<f32>()
            .map_err(|e| fail(&e))?;
        Ok(Audio {
            samples: samples.to_vec(),
            sample_rate: self.sample_rate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_split_into_sentences() {
        assert_eq!(
            sentences("Guten Tag! Ihr Termin ist am 3. Dezember um 14 Uhr. Passt das?"),
            vec![
                "Guten Tag!",
                "Ihr Termin ist am 3. Dezember um 14 Uhr.",
                "Passt das?"
            ]
        );
        assert_eq!(sentences("Das ist z.B. gut"), vec!["Das ist z.B. gut"]);
        assert_eq!(
            sentences("Dr. Weber ist da. Bis bald"),
            vec!["Dr. Weber ist da.", "Bis bald"]
        );
        assert_eq!(sentences(""), Vec::<&str>::new());
    }

    #[test]
    fn german_phonemes_come_from_espeak() {
        let p = phonemize("de", "Guten Tag, wie geht's?").unwrap();
        assert!(p.contains(',') && p.ends_with('?'), "{p}");
        assert!(p.contains('ɡ') || p.contains('g'), "{p}");
        assert!(phonemize("no-such-voice", "x").is_err());
    }
}
