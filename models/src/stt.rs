//! Speech-to-text with whisper.cpp through `whisper-rs`.
//!
//! One [`WhisperModel`] is loaded per process and shared; each inference
//! worker owns an [`SttWorker`] (a whisper state). Decoding is greedy with
//! temperature fallback off (no retries on the hot path), no timestamps,
//! language German unless configured, and the encoder context sized to the
//! utterance (`audio_ctx`): whisper otherwise encodes a full 30 s window,
//! which is most of its CPU time for a short telephone answer.

use crate::grammar::{Cursor, Grammar, TokenIndex};
use crate::nbest::{Confusions, Hypothesis};
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::path::Path;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

/// Why speech-to-text failed.
#[derive(Debug, thiserror::Error)]
pub enum SttError {
    /// The model file is missing or not a whisper ggml model.
    #[error("whisper model {path}: {message}")]
    Load {
        /// Path.
        path: String,
        /// whisper.cpp's error.
        message: String,
    },
    /// Inference failed.
    #[error("whisper inference: {0}")]
    Inference(String),
    /// The transcription server failed (transport, status, answer).
    #[error("remote STT: {0}")]
    Remote(String),
}

/// Decoding options.
#[derive(Debug, Clone)]
pub struct SttConfig {
    /// Language code (`de`), or `auto` to detect.
    pub language: String,
    /// CPU threads per decode.
    pub threads: usize,
    /// Vocabulary hint (scenario words), kept short.
    pub initial_prompt: Option<String>,
    /// Size the encoder context to the audio instead of 30 s.
    pub fit_audio_ctx: bool,
    /// The answers expected now: decoding is held to this grammar while
    /// the model agrees (see [`GRAMMAR_BUDGET_NATS`]).
    pub grammar: Option<Arc<Grammar>>,
    /// White noise at this RMS level (dBFS) under the audio before the
    /// model, `None` for none. Telephone audio reaches us with stretches
    /// of exact digital silence (G.711 idle codes, a VAD-gated far end,
    /// synthetic callers) and whisper, trained on recordings that always
    /// have a noise floor, mishears those far more: −50 dBFS raised the
    /// intent accuracy of the µ-law fixtures from 41 % to 52 % (`aiagc
    /// eval`, BENCHMARKS.md). Not applied by the remote backend.
    pub noise_floor_dbfs: Option<f32>,
    /// Whether a worker applies the grammars the dialogue gives (the
    /// runtime's `[speech] grammar` switch).
    pub use_grammar: bool,
    /// Whether a worker scores the readings the dialogue's confusions give
    /// (`[speech] nbest`).
    pub nbest: bool,
    /// Most nats one decoding step may lose to the grammar before it is
    /// given up (default [`GRAMMAR_BUDGET_NATS`]).
    pub grammar_budget: f32,
    /// Most nats the first token may lose to the grammar: an answer that
    /// starts off the grammar ("Ich möchte …" where "ja" or "nein" is
    /// expected) is then decoded freely in the same pass, at no cost.
    pub grammar_first_budget: f32,
    /// Words that sound alike in the answers expected now: the transcript's
    /// variants with them swapped are scored on the same audio
    /// ([`Transcript::nbest`]).
    pub confusions: Option<Arc<Confusions>>,
}

/// How much probability (in nats) the model may give to words outside the
/// grammar in one decoding step before the constrained decode is abandoned
/// and the audio decoded again freely. Deliberately loose (14 nats: the
/// grammar's words had a one-in-a-million chance): on unclear audio the
/// model's free guess is no better than the grammar's, and a second decode
/// costs a whole decode. Answers that leave the grammar are caught at
/// their first word instead ([`GRAMMAR_FIRST_BUDGET_NATS`]). Both chosen
/// by `aiagc eval` on the labelled fixtures (BENCHMARKS.md).
pub const GRAMMAR_BUDGET_NATS: f32 = 14.0;

impl Default for SttConfig {
    fn default() -> Self {
        Self {
            language: "de".into(),
            threads: 2,
            initial_prompt: None,
            fit_audio_ctx: true,
            grammar: None,
            noise_floor_dbfs: Some(NOISE_FLOOR_DBFS),
            use_grammar: true,
            nbest: true,
            grammar_budget: GRAMMAR_BUDGET_NATS,
            grammar_first_budget: GRAMMAR_FIRST_BUDGET_NATS,
            confusions: None,
        }
    }
}

/// The default [`SttConfig::grammar_first_budget`]: answers the grammar
/// expects lost at most 1.4 nats at their first token in `aiagc eval`
/// (µ-law and 16 kHz), answers off the grammar mostly more.
pub const GRAMMAR_FIRST_BUDGET_NATS: f32 = 1.5;

/// The default noise floor under the audio (see
/// [`SttConfig::noise_floor_dbfs`]).
pub const NOISE_FLOOR_DBFS: f32 = -50.0;

/// `audio` with white noise of RMS `dbfs` added between its first and its
/// last sample above −60 dBFS: inside the speech, not in the silence
/// before or after it (where whisper would start hearing words in the
/// noise: a pause transcribed at the end of a turn came back with an
/// invented "Einundzwanzigsten"). The noise is the same sequence every
/// time, so a decode is repeatable.
pub fn with_noise_floor(audio: &[f32], dbfs: f32) -> Vec<f32> {
    // Uniform noise in ±a has an RMS of a/√3.
    let amplitude = 10f32.powf(dbfs / 20.0) * 3f32.sqrt();
    let loud = |x: &f32| x.abs() > 1e-3;
    let (Some(first), Some(last)) = (audio.iter().position(loud), audio.iter().rposition(loud))
    else {
        return audio.to_vec();
    };
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut out = audio.to_vec();
    for x in &mut out[first..=last] {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let u = (state >> 40) as f32 / (1u64 << 24) as f32;
        *x += amplitude * (2.0 * u - 1.0);
    }
    out
}

/// What the grammar did in one decode.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Constrained {
    /// No grammar was given (or the backend cannot use one).
    #[default]
    No,
    /// The text was decoded inside the grammar; `cost` is the probability
    /// mass (nats) the model put outside it, `worst` the most in one step.
    Held {
        /// Nats lost to the grammar.
        cost: f32,
        /// Most nats lost in one step.
        worst: f32,
        /// Nats lost at the first token.
        first: f32,
    },
    /// The model insisted on words outside the grammar: decoded again
    /// without it.
    FellBack {
        /// Nats lost when the grammar was given up.
        cost: f32,
        /// Most nats lost in one step.
        worst: f32,
        /// Nats lost at the first token.
        first: f32,
    },
}

/// A transcription and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// Recognised text, trimmed.
    pub text: String,
    /// Wall time of the decode.
    pub elapsed: Duration,
    /// Duration of the audio.
    pub audio: Duration,
    /// Encoder context used (1500 = full window).
    pub audio_ctx: i32,
    /// Whether a grammar held the decode.
    pub constrained: Constrained,
    /// With [`SttConfig::confusions`]: the decoded text (log-probability
    /// 0) and its variants, likeliest first; empty without, or when no word
    /// of the transcript has a confusable.
    pub nbest: Vec<Hypothesis>,
    /// Time spent scoring the variants (inside `elapsed`).
    pub rescoring: Duration,
}

impl Transcript {
    /// Real-time factor (decode time / audio time).
    pub fn rtf(&self) -> f64 {
        self.elapsed.as_secs_f64() / self.audio.as_secs_f64().max(1e-3)
    }
}

/// Encoder positions for `seconds` of audio: 50 per second plus one second
/// of margin, in steps of 64, at most the full 1500.
pub fn audio_ctx_for(seconds: f64) -> i32 {
    let positions = ((seconds + 1.0) * 50.0).ceil() as i32;
    (((positions + 63) / 64) * 64).clamp(128, 1500)
}

/// Token budget for `seconds` of speech.
pub fn max_tokens_for(seconds: f64) -> i32 {
    (seconds * 8.0).ceil() as i32 + 8
}

/// Drops what whisper copied from its prompt after the speech: trailing
/// sentences that are sentences of `prompt` (or a cut-off start of one),
/// keeping at least the first sentence, e.g. "Ja, genau. Nein, das pa"
/// with the prompt "Ja, genau. Nein, das passt nicht." gives "Ja, genau.".
pub fn strip_prompt_echo(text: &str, prompt: &str) -> String {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| c.is_alphanumeric() || c.is_whitespace())
            .collect::<String>()
            .to_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let prompt_sentences: Vec<String> = split_sentences(prompt).iter().map(|s| norm(s)).collect();
    let mut parts = split_sentences(text);
    while parts.len() > 1 {
        let last = norm(parts[parts.len() - 1]);
        let echoed = !last.is_empty()
            && prompt_sentences.iter().any(|p| {
                p == &last
                    || (p.starts_with(&last)
                        && !parts[parts.len() - 1].trim_end().ends_with(['.', '?', '!']))
            });
        if !echoed {
            break;
        }
        parts.pop();
    }
    parts.concat().trim().to_owned()
}

/// `text` cut after each `.`, `?` or `!` that a space follows (pieces keep
/// their punctuation and leading space).
fn split_sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        if matches!(c, '.' | '?' | '!') && bytes.get(i + 1).is_none_or(|b| *b == b' ') {
            out.push(&text[start..=i]);
            start = i + 1;
        }
    }
    if start < text.len() && !text[start..].trim().is_empty() {
        out.push(&text[start..]);
    }
    out
}

/// Removes immediate repetitions of a word sequence (up to 24 words) —
/// the loop whisper produces when it loses its place.
pub fn collapse_repeats(text: &str) -> String {
    let mut words: Vec<&str> = text.split_whitespace().collect();
    let norm = |w: &str| {
        w.trim_matches(|c: char| c.is_ascii_punctuation())
            .to_lowercase()
    };
    let mut i = 0;
    while i < words.len() {
        let mut changed = false;
        for k in 1..=24 {
            while i + 2 * k <= words.len()
                && (0..k).all(|j| norm(words[i + j]) == norm(words[i + k + j]))
            {
                words.drain(i + k..i + 2 * k);
                changed = true;
            }
        }
        if !changed {
            i += 1;
        }
    }
    // A loop restart cut off by the token budget: "… half past two. Your".
    // Trailing words that repeat the text's opening words after a sentence
    // end are dropped.
    for k in (1..=words.len() / 2).rev() {
        let tail = words.len() - k;
        let after_end = words[tail - 1].ends_with(['.', '!', '?']);
        if after_end && (0..k).all(|j| norm(words[j]) == norm(words[tail + j])) {
            words.truncate(tail);
            break;
        }
    }
    words.join(" ")
}

static LOG_HOOKS: Once = Once::new();

/// A loaded whisper model, shared by the workers.
pub struct WhisperModel {
    ctx: WhisperContext,
    /// The text tokens, for grammar-constrained decoding.
    tokens: Arc<TokenIndex>,
    vocab: Arc<Vocab>,
    eot: i32,
    n_vocab: i32,
}

/// What scoring a text on the decoder needs of the vocabulary.
struct Vocab {
    ids: HashMap<Vec<u8>, i32>,
    longest: usize,
    sot: i32,
    prev: i32,
    transcribe: i32,
    no_timestamps: i32,
    multilingual: bool,
}

impl Vocab {
    /// Tokens of `text`, longest match first within each space-led word
    /// (the way whisper.cpp's own tokenizer matches); bytes no token
    /// covers are skipped.
    fn tokens(&self, text: &str) -> Vec<i32> {
        let mut out = Vec::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let mut j = (i + self.longest).min(bytes.len());
            loop {
                if j == i {
                    i += 1;
                    break;
                }
                if let Some(&id) = self.ids.get(&bytes[i..j]) {
                    out.push(id);
                    i = j;
                    break;
                }
                j -= 1;
            }
        }
        out
    }

    /// The token that spells the start of `bytes` and that the model, at
    /// `logits`, likes best, with its length: a word is scored the way the
    /// decoder would write it ("Donnerstag" as " Don" "ner" "stag" where
    /// that is likelier than the longest match), not in a spelling that
    /// costs it for nothing.
    fn likeliest(&self, logits: &[f32], bytes: &[u8]) -> Option<(i32, usize)> {
        (1..=self.longest.min(bytes.len()))
            .filter_map(|len| self.ids.get(&bytes[..len]).map(|&id| (id, len)))
            .filter(|&(id, _)| usize::try_from(id).is_ok_and(|i| i < logits.len()))
            .max_by(|a, b| logits[a.0 as usize].total_cmp(&logits[b.0 as usize]))
    }

    /// The decoder's prompt as `whisper_full` builds it: the previous-text
    /// marker and the initial prompt (its last 223 tokens), then start of
    /// transcript, language, task, no timestamps.
    fn prefix(&self, prompt: Option<&str>, lang_id: i32) -> Vec<i32> {
        let mut out = Vec::new();
        if let Some(p) = prompt.filter(|p| !p.trim().is_empty()) {
            let t = self.tokens(p.trim());
            out.push(self.prev);
            out.extend_from_slice(&t[t.len().saturating_sub(223)..]);
        }
        out.push(self.sot);
        if self.multilingual {
            out.push(self.sot + 1 + lang_id);
            out.push(self.transcribe);
        }
        out.push(self.no_timestamps);
        out
    }
}

/// `ln p(token)` under the distribution `logits`.
fn log_prob(logits: &[f32], token: i32) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let Some(&l) = usize::try_from(token).ok().and_then(|t| logits.get(t)) else {
        return f32::NEG_INFINITY;
    };
    l - max - sum.ln() as f32
}

/// Whether this build of ggml runs its AMX kernels. They load the CPU's
/// tile configuration once per thread and trust it; ONNX Runtime (Smart
/// Turn, Silero) loads its own on the same speech threads, after which
/// every quantized decode came back as "-". The project builds ggml
/// without them (`GGML_NATIVE=OFF` in `.cargo/config.toml`); a `target/`
/// built natively before that keeps them until
/// `cargo clean -p whisper-rs-sys`.
pub fn built_with_amx() -> bool {
    whisper_rs::print_system_info().contains("AMX_INT8 = 1")
}

impl WhisperModel {
    /// Loads a ggml whisper model (CPU).
    pub fn load(path: &Path) -> Result<Self, SttError> {
        // Route whisper.cpp's chatter away from stderr.
        LOG_HOOKS.call_once(whisper_rs::install_logging_hooks);
        if built_with_amx() {
            tracing::warn!(
                "whisper.cpp was built with AMX kernels (a native build on this CPU): \
                 beside ONNX Runtime its quantized decodes come out garbled; \
                 rebuild after `cargo clean -p whisper-rs-sys`"
            );
        }
        if !path.is_file() {
            return Err(SttError::Load {
                path: path.display().to_string(),
                message: "no such file (run `bash scripts/setup.sh`)".into(),
            });
        }
        let params = WhisperContextParameters {
            use_gpu: cfg!(feature = "cuda"),
            ..Default::default()
        };
        let ctx = WhisperContext::new_with_params(path, params).map_err(|e| SttError::Load {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let eot = ctx.token_eot();
        let n_vocab = ctx.n_vocab();
        let tokens: Vec<Vec<u8>> = (0..eot)
            .map(|id| {
                ctx.token_to_bytes(id)
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default()
            })
            .collect();
        let mut ids = HashMap::with_capacity(tokens.len());
        for (id, bytes) in tokens.iter().enumerate() {
            if !bytes.is_empty() {
                ids.entry(bytes.clone()).or_insert(id as i32);
            }
        }
        let vocab = Vocab {
            longest: tokens.iter().map(Vec::len).max().unwrap_or(1),
            ids,
            sot: ctx.token_sot(),
            prev: ctx.token_prev(),
            transcribe: ctx.token_transcribe(),
            no_timestamps: ctx.token_not(),
            multilingual: ctx.is_multilingual(),
        };
        Ok(Self {
            ctx,
            tokens: Arc::new(TokenIndex::new(tokens)),
            vocab: Arc::new(vocab),
            eot,
            n_vocab,
        })
    }

    /// A worker with its own decoding state.
    pub fn worker(&self) -> Result<SttWorker, SttError> {
        let state = self
            .ctx
            .create_state()
            .map_err(|e| SttError::Inference(e.to_string()))?;
        Ok(SttWorker {
            state,
            tokens: self.tokens.clone(),
            vocab: self.vocab.clone(),
            eot: self.eot,
            n_vocab: self.n_vocab,
        })
    }
}

/// One inference worker's whisper state.
pub struct SttWorker {
    state: WhisperState,
    tokens: Arc<TokenIndex>,
    vocab: Arc<Vocab>,
    eot: i32,
    n_vocab: i32,
}

/// The logits filter's view of one constrained decode.
struct Constraint<'a> {
    grammar: &'a Grammar,
    tokens: &'a TokenIndex,
    eot: i32,
    n_vocab: usize,
    budget: f32,
    /// Nats the model put outside the grammar so far.
    cost: f32,
    /// Most nats lost in one step.
    worst: f32,
    /// Nats lost at the first word.
    first: Option<f32>,
    /// Most nats the first word may lose.
    first_budget: f32,
    abandoned: bool,
    /// Text tokens the grammar had shaped when it was given up: none means
    /// the decode that went on is exactly the free one.
    shaped: usize,
    allowed: Vec<bool>,
    listed: Vec<u32>,
}

impl Constraint<'_> {
    /// Where the tokens decoded so far leave the grammar (`None`: outside).
    fn cursor(&self, ids: &[i32]) -> Option<Cursor> {
        let mut at = self.grammar.start();
        for &id in ids {
            if id < 0 || id >= self.eot {
                continue;
            }
            at = self.grammar.feed(at, self.tokens.bytes(id as u32)?)?;
        }
        Some(at)
    }

    /// Leaves only the tokens the grammar allows after `ids`, counting
    /// what that costs; gives up past the budget.
    fn filter(&mut self, ids: &[i32], logits: &mut [f32]) {
        if self.abandoned {
            return;
        }
        let Some(at) = self.cursor(ids) else {
            self.abandoned = true;
            return;
        };
        for &t in &self.listed {
            self.allowed[t as usize] = false;
        }
        self.listed.clear();
        let after_punctuation = ids
            .iter()
            .rev()
            .find(|&&id| id >= 0 && id < self.eot)
            .is_some_and(|&id| self.tokens.is_neutral(id as u32));
        let (allowed, listed) = (&mut self.allowed, &mut self.listed);
        self.tokens
            .allowed(self.grammar, at, after_punctuation, &mut |t| {
                if let Some(slot) = allowed.get_mut(t as usize) {
                    if !*slot {
                        *slot = true;
                        listed.push(t);
                    }
                }
            });
        // The end only where a sentence of the grammar is complete: a
        // partial of speech still going on ("am Dienstag um") costs more
        // than the budget and is decoded freely.
        let eot_ok = self.grammar.is_complete(at);
        let text = (self.eot as usize + 1).min(self.n_vocab).min(logits.len());
        let max = logits[..text]
            .iter()
            .copied()
            .fold(f32::NEG_INFINITY, f32::max);
        if !max.is_finite() {
            return;
        }
        let (mut all, mut inside) = (0.0f64, 0.0f64);
        for (id, &l) in logits[..text].iter().enumerate() {
            if l > f32::NEG_INFINITY {
                let p = f64::from(l - max).exp();
                all += p;
                let ok = if id == self.eot as usize {
                    eot_ok
                } else {
                    self.allowed.get(id).copied().unwrap_or(false)
                };
                if ok {
                    inside += p;
                }
            }
        }
        let lost = if inside > 0.0 {
            (all / inside).ln() as f32
        } else {
            f32::INFINITY
        };
        self.cost += lost;
        self.worst = self.worst.max(lost);
        let first = *self.first.get_or_insert(lost);
        if lost > self.budget
            || (ids.iter().all(|&id| id < 0 || id >= self.eot) && first > self.first_budget)
        {
            self.abandoned = true;
            self.shaped = ids.iter().filter(|&&id| id >= 0 && id < self.eot).count();
            return;
        }
        for (id, l) in logits[..text].iter_mut().enumerate() {
            let ok = if id == self.eot as usize {
                eot_ok
            } else {
                self.allowed.get(id).copied().unwrap_or(false)
            };
            if !ok {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

/// whisper.cpp's logits filter hook: hands the step to [`Constraint`].
unsafe extern "C" fn constrain(
    _ctx: *mut whisper_rs::WhisperSysContext,
    _state: *mut whisper_rs::WhisperSysState,
    tokens: *const whisper_rs::WhisperTokenData,
    n_tokens: c_int,
    logits: *mut f32,
    user_data: *mut c_void,
) {
    if user_data.is_null() || logits.is_null() {
        return;
    }
    // SAFETY: `user_data` is the `Constraint` that `transcribe` keeps alive
    // and untouched for the whole `full()` call; whisper.cpp calls this on
    // that thread (one greedy decoder), with `logits` of `n_vocab` floats
    // and `tokens` of `n_tokens` entries.
    let c = unsafe { &mut *(user_data as *mut Constraint<'_>) };
    let ids: Vec<i32> = if tokens.is_null() || n_tokens <= 0 {
        Vec::new()
    } else {
        unsafe { std::slice::from_raw_parts(tokens, n_tokens as usize) }
            .iter()
            .map(|t| t.id)
            .collect()
    };
    let logits = unsafe { std::slice::from_raw_parts_mut(logits, c.n_vocab) };
    // A panic must not cross into C: on one, the decode goes on unconstrained.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.filter(&ids, logits)));
    if outcome.is_err() {
        c.abandoned = true;
    }
}

impl SttWorker {
    /// Transcribes 16 kHz mono audio; with a grammar, inside it while the
    /// model agrees, otherwise decoded again freely.
    pub fn transcribe(
        &mut self,
        audio: &[f32],
        config: &SttConfig,
    ) -> Result<Transcript, SttError> {
        let mut t = self.transcribe_once(audio, config)?;
        if let Some(confusions) = &config.confusions {
            let start = Instant::now();
            t.nbest = self.nbest(&t.text, confusions, config)?;
            t.rescoring = start.elapsed();
            t.elapsed += t.rescoring;
        }
        tracing::debug!(
            audio_ms = t.audio.as_millis() as u64,
            decode_ms = t.elapsed.saturating_sub(t.rescoring).as_millis() as u64,
            rescoring_ms = t.rescoring.as_millis() as u64,
            constrained = ?t.constrained,
            "decoded"
        );
        Ok(t)
    }

    /// The readings of `text`, the transcript of the audio this worker
    /// decoded last: `text` itself (0) and each variant of `confusions`,
    /// with its log-probability relative to `text`, likeliest first.
    ///
    /// The decoder is run on the encoder output still in the state. A
    /// variant differs from `text` in one place; it is scored there (its
    /// words and the token after them), the rest being the same text.
    /// Variants are scored deepest first, so the key/value cache holds the
    /// decoded text up to each one's start.
    fn nbest(
        &mut self,
        text: &str,
        confusions: &Confusions,
        config: &SttConfig,
    ) -> Result<Vec<Hypothesis>, SttError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let mut variants = confusions.variants(&words);
        if variants.is_empty() {
            return Ok(Vec::new());
        }
        let err = |e: whisper_rs::WhisperError| SttError::Inference(e.to_string());
        let threads = config.threads.max(1);
        let prefix = self.vocab.prefix(
            config.initial_prompt.as_deref(),
            self.state.full_lang_id_from_state().max(0),
        );
        let p = prefix.len();
        if p > 1 {
            self.state
                .decode(&prefix[..p - 1], 0, threads)
                .map_err(err)?;
        }
        self.state
            .decode(&prefix[p - 1..], p - 1, threads)
            .map_err(err)?;
        // The decoded text, word by word, as far as the deepest variant
        // needs it (the first token after its words).
        let deepest = variants.iter().map(|v| v.at + v.remove).max().unwrap_or(0);
        let wanted: Vec<usize> = variants.iter().map(|v| v.at).collect();
        let mut row = self.state.get_logits().map_err(err)?.to_vec();
        let mut starts = Vec::with_capacity(deepest + 1);
        let mut rows: HashMap<usize, Vec<f32>> = HashMap::new();
        let mut top: Vec<f32> = Vec::new();
        for (i, word) in words.iter().enumerate().take(deepest + 1) {
            starts.push(top.len());
            if wanted.contains(&i) {
                rows.insert(i, row.clone());
            }
            let piece = format!(" {word}");
            let mut rest = piece.as_bytes();
            while !rest.is_empty() {
                let Some((id, len)) = self.vocab.likeliest(&row, rest) else {
                    break;
                };
                top.push(log_prob(&row, id));
                rest = &rest[len..];
                if i == deepest {
                    break; // only its first token is needed
                }
                self.state
                    .decode(&[id], p + top.len() - 1, threads)
                    .map_err(err)?;
                row.copy_from_slice(self.state.get_logits().map_err(err)?);
            }
        }
        if deepest == words.len() {
            starts.push(top.len());
            top.push(log_prob(&row, self.eot));
        }
        variants.sort_by_key(|v| std::cmp::Reverse(v.at));
        let mut out = vec![Hypothesis {
            text: text.to_owned(),
            logprob: 0.0,
        }];
        for v in &variants {
            let (Some(start_row), Some(&k), Some(&end)) = (
                rows.get(&v.at),
                starts.get(v.at),
                starts.get(v.at + v.remove),
            ) else {
                continue;
            };
            let mut row = start_row.clone();
            let mut lp = 0.0;
            let mut n = 0;
            for w in &v.insert {
                let piece = format!(" {w}");
                let mut rest = piece.as_bytes();
                while let Some((id, len)) = self.vocab.likeliest(&row, rest) {
                    lp += log_prob(&row, id);
                    rest = &rest[len..];
                    self.state.decode(&[id], p + k + n, threads).map_err(err)?;
                    row.copy_from_slice(self.state.get_logits().map_err(err)?);
                    n += 1;
                }
            }
            // The first token of what follows, spelled as the model likes.
            lp += match words.get(v.at + v.remove) {
                Some(next) => self
                    .vocab
                    .likeliest(&row, format!(" {next}").as_bytes())
                    .map(|(id, _)| log_prob(&row, id))
                    .unwrap_or(f32::NEG_INFINITY),
                None => log_prob(&row, self.eot),
            };
            let before: f32 = top.get(k..=end).map(|w| w.iter().sum()).unwrap_or(0.0);
            out.push(Hypothesis {
                text: Confusions::apply(&words, v),
                logprob: lp - before,
            });
        }
        out.retain(|h| h.logprob.is_finite());
        out.sort_by(|a, b| b.logprob.total_cmp(&a.logprob));
        Ok(out)
    }

    fn transcribe_once(
        &mut self,
        audio: &[f32],
        config: &SttConfig,
    ) -> Result<Transcript, SttError> {
        let Some(grammar) = config.grammar.clone() else {
            return self.decode(audio, config, None);
        };
        let start = Instant::now();
        let mut c = Constraint {
            grammar: &grammar,
            tokens: &self.tokens.clone(),
            eot: self.eot,
            n_vocab: self.n_vocab.max(0) as usize,
            budget: config.grammar_budget,
            cost: 0.0,
            worst: 0.0,
            first: None,
            first_budget: config.grammar_first_budget,
            abandoned: false,
            shaped: 0,
            allowed: vec![false; self.eot.max(0) as usize],
            listed: Vec::new(),
        };
        let held = self.decode(audio, config, Some(&mut c))?;
        if !c.abandoned {
            return Ok(Transcript {
                constrained: Constrained::Held {
                    cost: c.cost,
                    worst: c.worst,
                    first: c.first.unwrap_or(0.0),
                },
                ..held
            });
        }
        let (cost, worst, first) = (c.cost, c.worst, c.first.unwrap_or(0.0));
        // Given up before the grammar shaped a token: the rest of that
        // decode was free decoding already (the usual case for an answer
        // off the grammar, which leaves it with its first word).
        let free = if c.shaped == 0 {
            held
        } else {
            self.decode(audio, config, None)?
        };
        Ok(Transcript {
            elapsed: start.elapsed(),
            constrained: Constrained::FellBack { cost, worst, first },
            ..free
        })
    }

    fn decode(
        &mut self,
        audio: &[f32],
        config: &SttConfig,
        constraint: Option<&mut Constraint<'_>>,
    ) -> Result<Transcript, SttError> {
        let start = Instant::now();
        let seconds = audio.len() as f64 / 16000.0;
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        let language = (config.language != "auto").then_some(config.language.as_str());
        params.set_language(language);
        params.set_n_threads(config.threads.max(1) as i32);
        params.set_no_timestamps(true);
        params.set_single_segment(true);
        params.set_no_context(true);
        params.set_temperature_inc(0.0);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        params.set_suppress_blank(true);
        let audio_ctx = if config.fit_audio_ctx && seconds < 29.0 {
            audio_ctx_for(seconds)
        } else {
            1500
        };
        if audio_ctx < 1500 {
            params.set_audio_ctx(audio_ctx);
        }
        // Speech is at most ~7 tokens a second; a budget stops the
        // repetition loops whisper falls into on short, narrow-context audio.
        params.set_max_tokens(max_tokens_for(seconds));
        if let Some(p) = &config.initial_prompt {
            params.set_initial_prompt(p);
        }
        if let Some(c) = constraint {
            // SAFETY: `constrain` only reads `c` during `full()` below,
            // which returns before `c` goes out of scope.
            unsafe {
                params.set_filter_logits_callback(Some(constrain));
                params
                    .set_filter_logits_callback_user_data(c as *mut Constraint<'_> as *mut c_void);
            }
        }
        // whisper needs at least 1 s; pad short answers ("Ja.") with silence.
        let padded;
        let audio = if audio.len() < 16000 {
            padded = [audio, &vec![0.0; 16000 - audio.len()]].concat();
            &padded[..]
        } else {
            audio
        };
        let noisy;
        let input = match config.noise_floor_dbfs {
            Some(dbfs) => {
                noisy = with_noise_floor(audio, dbfs);
                &noisy[..]
            }
            None => audio,
        };
        self.state
            .full(params, input)
            .map_err(|e| SttError::Inference(e.to_string()))?;
        let mut text = String::new();
        for seg in self.state.as_iter() {
            if let Ok(s) = seg.to_str_lossy() {
                text.push_str(&s);
            }
        }
        Ok(Transcript {
            text: match &config.initial_prompt {
                Some(p) => strip_prompt_echo(&collapse_repeats(text.trim()), p),
                None => collapse_repeats(text.trim()),
            },
            elapsed: start.elapsed(),
            audio: Duration::from_secs_f64(seconds),
            audio_ctx,
            constrained: Constrained::No,
            nbest: Vec::new(),
            rescoring: Duration::ZERO,
        })
    }
}

/// Where utterances are transcribed: local whisper (shared model) or an
/// OpenAI-compatible server.
#[derive(Clone)]
pub enum SttBackend {
    /// whisper.cpp in this process.
    Whisper(std::sync::Arc<WhisperModel>),
    /// `/v1/audio/transcriptions` on a server.
    Remote(crate::stt_remote::RemoteStt),
}

impl From<std::sync::Arc<WhisperModel>> for SttBackend {
    fn from(model: std::sync::Arc<WhisperModel>) -> Self {
        Self::Whisper(model)
    }
}

impl SttBackend {
    /// A transcriber for one worker thread.
    pub fn transcriber(&self) -> Result<Transcriber, SttError> {
        Ok(match self {
            Self::Whisper(m) => Transcriber::Whisper(m.worker()?),
            Self::Remote(r) => Transcriber::Remote(r.clone()),
        })
    }
}

/// One worker's speech-to-text, whichever the backend.
pub enum Transcriber {
    /// Its own whisper state.
    Whisper(SttWorker),
    /// A client of the shared connection pool.
    Remote(crate::stt_remote::RemoteStt),
}

impl Transcriber {
    /// Transcribes 16 kHz mono audio.
    pub fn transcribe(
        &mut self,
        audio: &[f32],
        config: &SttConfig,
    ) -> Result<Transcript, SttError> {
        match self {
            Self::Whisper(w) => w.transcribe(audio, config),
            Self::Remote(r) => r.transcribe(audio, config),
        }
    }
}

/// Partial transcripts while the caller speaks: the growing utterance is
/// re-decoded every `interval` of new audio; at the end, when the last
/// partial already covered every voiced sample (only the endpointer's
/// hangover silence came after it), its text is the final result and the
/// final decode is skipped.
pub struct Partials {
    audio: Vec<f32>,
    interval: usize,
    decoded_len: usize,
    last: Option<Transcript>,
}

impl Partials {
    /// Re-decode after every `interval_ms` of new audio.
    pub fn new(interval_ms: u32) -> Self {
        Self {
            audio: Vec::with_capacity(16000 * 10),
            interval: interval_ms as usize * 16,
            decoded_len: 0,
            last: None,
        }
    }

    /// Adds caller audio (16 kHz).
    pub fn push(&mut self, samples: &[f32]) {
        self.audio.extend_from_slice(samples);
    }

    /// Decodes a partial if enough new audio arrived.
    pub fn poll(
        &mut self,
        worker: &mut SttWorker,
        config: &SttConfig,
    ) -> Result<Option<&Transcript>, SttError> {
        if self.audio.len() < self.decoded_len + self.interval {
            return Ok(None);
        }
        let t = worker.transcribe(&self.audio, config)?;
        self.decoded_len = self.audio.len();
        self.last = Some(t);
        Ok(self.last.as_ref())
    }

    /// The final transcript; `voiced_end` is the sample index just after the
    /// last voiced frame. Reuses the last partial when it covered it.
    pub fn finish(
        mut self,
        voiced_end: usize,
        worker: &mut SttWorker,
        config: &SttConfig,
    ) -> Result<(Transcript, bool), SttError> {
        if let Some(last) = self.last.take() {
            if self.decoded_len >= voiced_end {
                return Ok((
                    Transcript {
                        elapsed: Duration::ZERO,
                        ..last
                    },
                    true,
                ));
            }
        }
        Ok((worker.transcribe(&self.audio, config)?, false))
    }
}

/// Word error rate of `hypothesis` against `reference` after
/// normalisation (lower case, punctuation removed, ß/umlauts kept).
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    let words = |s: &str| -> Vec<String> {
        s.to_lowercase()
            .split(|c: char| c.is_whitespace() || (c.is_ascii_punctuation() && c != '\''))
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let (r, h) = (words(reference), words(hypothesis));
    if r.is_empty() {
        return if h.is_empty() { 0.0 } else { 1.0 };
    }
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            let sub = prev[j] + usize::from(rw != hw);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[h.len()] as f64 / r.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wer_counts_substitutions_insertions_deletions() {
        assert_eq!(
            word_error_rate("am Dienstag um halb drei", "Am Dienstag, um halb drei."),
            0.0
        );
        assert_eq!(
            word_error_rate("am Dienstag um halb drei", "am Montag um halb drei"),
            0.2
        );
        assert_eq!(word_error_rate("ja", ""), 1.0);
        assert_eq!(word_error_rate("ja genau", "ja genau genau"), 0.5);
        assert_eq!(word_error_rate("", ""), 0.0);
    }

    #[test]
    fn repeats_are_collapsed_but_distinct_words_kept() {
        assert_eq!(
            collapse_repeats("Agent logged in. Agent logged in. Agent logged in."),
            "Agent logged in."
        );
        assert_eq!(collapse_repeats("ja ja ja genau"), "ja genau");
        let p = "Am Dienstag um halb drei. Viertel nach vier. Übermorgen um zehn Uhr.";
        assert_eq!(
            strip_prompt_echo("Am Montag um zehn. Viertel nach vier. Übermorgen um", p),
            "Am Montag um zehn."
        );
        assert_eq!(
            strip_prompt_echo("Am Dienstag um halb drei.", p),
            "Am Dienstag um halb drei."
        );
        assert_eq!(
            strip_prompt_echo(
                "Ich möchte mit einem Mitarbeiter sprechen. Ich mö",
                "Ich möchte mit einem Mitarbeiter sprechen."
            ),
            "Ich möchte mit einem Mitarbeiter sprechen."
        );
        // Speech that is not in the prompt stays, as does a complete sentence
        // that only starts like a prompt sentence.
        assert_eq!(
            strip_prompt_echo("Ja. Am Freitag geht.", p),
            "Ja. Am Freitag geht."
        );
        assert_eq!(strip_prompt_echo("Ja. Am Dienstag.", p), "Ja. Am Dienstag.");
        let long = "Your appointment is on Tuesday a half past two.";
        assert_eq!(
            collapse_repeats(&format!("{long} {long} {long} Your appointment")),
            long.to_string()
        );
        assert_eq!(
            collapse_repeats("am Dienstag um halb drei"),
            "am Dienstag um halb drei"
        );
        assert_eq!(collapse_repeats(""), "");
        assert_eq!(max_tokens_for(1.0), 16);
    }

    #[test]
    fn audio_ctx_grows_with_the_utterance() {
        assert_eq!(audio_ctx_for(0.5), 128);
        assert_eq!(audio_ctx_for(5.3), 320);
        assert_eq!(audio_ctx_for(40.0), 1500);
        assert!(audio_ctx_for(3.0) < audio_ctx_for(6.0));
    }

    #[test]
    fn missing_model_is_a_clear_error() {
        let err = WhisperModel::load(Path::new("/nonexistent/ggml.bin"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("setup.sh"), "{err}");
    }
}
