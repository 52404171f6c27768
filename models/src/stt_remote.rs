//! Speech-to-text on a server: the OpenAI-compatible
//! `/v1/audio/transcriptions` API (faster-whisper-server, speaches, vLLM,
//! LocalAI and others). Where a GPU pool serves the model, the media hosts
//! send each utterance there instead of decoding it on their own cores.
//!
//! The utterance goes as a 16 kHz 16-bit mono WAV in a multipart form with
//! `model`, `language`, `prompt` (the dialogue's vocabulary) and
//! `response_format=json`; the answer's `text` is the transcript. Every
//! failure is a typed [`SttError`]; the answer body is read up to a bound.

use crate::stt::{collapse_repeats, strip_prompt_echo, SttConfig, SttError, Transcript};
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest answer body read (a transcript of a telephone turn is far
/// smaller; anything bigger is an error, not a reason to buffer).
pub const MAX_RESPONSE_BYTES: u64 = 256 * 1024;

/// Where and how to send audio.
#[derive(Clone)]
pub struct RemoteSttConfig {
    /// Base URL up to and including `/v1`.
    pub base_url: String,
    /// Model name the server knows (e.g. `Systran/faster-whisper-small`).
    pub model: String,
    /// Bearer token, if the server wants one (never logged).
    pub api_key: Option<String>,
    /// Longest wait for the whole answer.
    pub timeout: Duration,
}

impl std::fmt::Debug for RemoteSttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSttConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Default for RemoteSttConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8000/v1".into(),
            model: "whisper-1".into(),
            api_key: None,
            timeout: Duration::from_secs(5),
        }
    }
}

/// A client for one server (cheap to clone: the connection pool is shared).
#[derive(Clone, Debug)]
pub struct RemoteStt {
    http: reqwest::blocking::Client,
    config: Arc<RemoteSttConfig>,
}

#[derive(serde::Deserialize)]
struct Answer {
    text: String,
}

impl RemoteStt {
    /// A client for `config`.
    pub fn new(config: RemoteSttConfig) -> Result<Self, SttError> {
        if !config.base_url.starts_with("http://") && !config.base_url.starts_with("https://") {
            return Err(SttError::Remote(format!(
                "base URL {:?} is not http(s)",
                config.base_url
            )));
        }
        let builder = reqwest::blocking::Client::builder()
            .connect_timeout(config.timeout)
            .timeout(config.timeout);
        let http = crate::http::build_blocking(builder).map_err(SttError::Remote)?;
        Ok(Self {
            http,
            config: Arc::new(config),
        })
    }

    /// The transcription endpoint.
    pub fn url(&self) -> String {
        format!(
            "{}/audio/transcriptions",
            self.config.base_url.trim_end_matches('/')
        )
    }

    /// Transcribes 16 kHz mono audio on the server.
    pub fn transcribe(&self, audio: &[f32], config: &SttConfig) -> Result<Transcript, SttError> {
        let start = Instant::now();
        let wav = crate::audio::wav_bytes(audio, 16000)
            .map_err(|e| SttError::Remote(format!("encoding WAV: {e}")))?;
        let file = reqwest::blocking::multipart::Part::bytes(wav)
            .file_name("utterance.wav")
            .mime_str("audio/wav")
            .map_err(|e| SttError::Remote(e.to_string()))?;
        let mut form = reqwest::blocking::multipart::Form::new()
            .part("file", file)
            .text("model", self.config.model.clone())
            .text("response_format", "json")
            .text("temperature", "0");
        if config.language != "auto" {
            form = form.text("language", config.language.clone());
        }
        if let Some(p) = &config.initial_prompt {
            form = form.text("prompt", p.clone());
        }
        let mut request = self.http.post(self.url()).multipart(form);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().map_err(|e| {
            SttError::Remote(if e.is_timeout() {
                format!("no answer within {:?}", self.config.timeout)
            } else {
                e.to_string()
            })
        })?;
        let status = response.status();
        let mut body = Vec::new();
        response
            .take(MAX_RESPONSE_BYTES + 1)
            .read_to_end(&mut body)
            .map_err(|e| SttError::Remote(format!("reading the answer: {e}")))?;
        if body.len() as u64 > MAX_RESPONSE_BYTES {
            return Err(SttError::Remote(format!(
                "answer larger than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(SttError::Remote(format!(
                "HTTP {}: {}",
                status.as_u16(),
                text.chars().take(200).collect::<String>()
            )));
        }
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| SttError::Remote(format!("answer is not {{\"text\": …}}: {e}")))?;
        let text = collapse_repeats(answer.text.trim());
        Ok(Transcript {
            text: match &config.initial_prompt {
                Some(p) => strip_prompt_echo(&text, p),
                None => text,
            },
            elapsed: start.elapsed(),
            audio: Duration::from_secs_f64(audio.len() as f64 / 16000.0),
            audio_ctx: 0,
            // The server's decoder is not ours to constrain: the prompt
            // carries the expectation there.
            constrained: crate::stt::Constrained::No,
            // No decoder of ours to score readings on.
            nbest: Vec::new(),
            rescoring: Duration::ZERO,
        })
    }
}
