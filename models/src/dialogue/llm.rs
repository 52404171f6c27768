//! An LLM as the dialogue: OpenAI-compatible `/v1/chat/completions` with
//! `stream: true` (server-sent events). Deltas are cut into sentences as
//! they arrive, so TTS starts on the first sentence while the model is
//! still writing. A timeout or error falls back to the scenario's reprompt;
//! hanging up and transfers stay with the scenario's global intents.

use super::scenario::{Scenario, ScenarioDialogue};
use super::text::tokens;
use super::{Dialogue, Input, Reply, TurnHint};
use crate::nbest::Hypothesis;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;
use std::time::Duration;

/// Most bytes read of one streamed answer.
pub const MAX_STREAM_BYTES: u64 = 1 << 20;

/// Where and how to ask the model.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    /// Base URL up to and including `/v1`, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// Model name.
    pub model: String,
    /// Bearer token, if the server wants one (never logged).
    pub api_key: Option<String>,
    /// System prompt: role, tone, rules.
    pub system_prompt: String,
    /// Longest wait for the response headers and between chunks.
    pub first_token_timeout: Duration,
    /// Longest whole answer.
    pub total_timeout: Duration,
    /// Token limit of one answer.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: f32,
    /// Messages of the conversation sent with each request, besides the
    /// system prompt: the oldest go first, so a long call's requests (and
    /// their latency) stop growing.
    pub max_history: usize,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8000/v1".into(),
            model: "default".into(),
            api_key: None,
            system_prompt: "Du bist die freundliche Telefonassistenz einer Arztpraxis. Antworte auf Deutsch, kurz (ein bis zwei Sätze), ohne Aufzählungen und ohne Sonderzeichen, denn deine Antwort wird vorgelesen.".into(),
            first_token_timeout: Duration::from_secs(3),
            total_timeout: Duration::from_secs(15),
            max_tokens: 120,
            temperature: 0.3,
            max_history: 16,
        }
    }
}

/// Why the model gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// Connect, read or timeout.
    #[error("LLM request failed: {0}")]
    Transport(String),
    /// The server answered with an error status.
    #[error("LLM server returned HTTP {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Start of the body.
        body: String,
    },
    /// The event stream broke the wire format.
    #[error("LLM stream malformed: {0}")]
    Stream(String),
    /// The turn was cancelled by the caller (barge-in, hangup).
    #[error("cancelled")]
    Cancelled,
}

/// One chat message.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: &'static str,
    /// Text.
    pub content: String,
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    messages: &'a [Message],
    stream: bool,
    max_tokens: u32,
    temperature: f32,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Delta,
}

#[derive(Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

/// A client for one server (cheap to clone: the connection pool is shared).
#[derive(Clone)]
pub struct LlmClient {
    http: reqwest::blocking::Client,
    config: Arc<LlmConfig>,
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmClient")
            .field("base_url", &self.config.base_url)
            .field("model", &self.config.model)
            .field(
                "api_key",
                &self.config.api_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl LlmClient {
    /// A client for `config`.
    pub fn new(config: LlmConfig) -> Result<Self, LlmError> {
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(config.first_token_timeout)
            // The blocking client applies this to the headers and to each
            // read of the body: the wait for the first and every next chunk.
            .timeout(config.first_token_timeout);
        let http = crate::http::build_blocking(http).map_err(LlmError::Transport)?;
        Ok(Self {
            http,
            config: Arc::new(config),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// Streams an answer to `messages`; `on_text` gets each content delta
    /// and returns `false` to stop. The whole answer comes back.
    pub fn stream(
        &self,
        messages: &[Message],
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<String, LlmError> {
        let url = format!(
            "{}/chat/completions",
            self.config.base_url.trim_end_matches('/')
        );
        let mut request = self.http.post(url).json(&Request {
            model: &self.config.model,
            messages,
            stream: true,
            max_tokens: self.config.max_tokens,
            temperature: self.config.temperature,
        });
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .map_err(|e| LlmError::Transport(e.to_string()))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let mut body = String::new();
            let _ = response.take(512).read_to_string(&mut body);
            return Err(LlmError::Status { status, body });
        }
        let deadline = std::time::Instant::now() + self.config.total_timeout;
        let mut timed_out = false;
        // A spoken answer is a few hundred bytes; a stream past the bound
        // is cut (and then fails for want of its end) instead of buffered.
        let bounded = response.take(MAX_STREAM_BYTES);
        let answer = read_events(BufReader::new(bounded), &mut |text| {
            timed_out = std::time::Instant::now() > deadline;
            !timed_out && on_text(text)
        });
        match answer {
            Err(LlmError::Cancelled) if timed_out => Err(LlmError::Transport(format!(
                "answer took longer than {:?}",
                self.config.total_timeout
            ))),
            other => other,
        }
    }
}

/// Reads an OpenAI-style event stream: `data: {json}` events separated by
/// blank lines, ending with `data: [DONE]`. Comments (`:`) and other
/// fields are skipped; a data line that is not a chunk is an error.
pub fn read_events(
    reader: impl BufRead,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<String, LlmError> {
    let mut answer = String::new();
    let mut data = String::new();
    let mut done = false;
    let mut lines = reader.lines();
    loop {
        let line = match lines.next() {
            Some(Ok(l)) => Some(l),
            Some(Err(e)) => return Err(LlmError::Transport(e.to_string())),
            None => None,
        };
        let at_end = line.is_none();
        let line = line.unwrap_or_default();
        let line = line.strip_suffix('\r').unwrap_or(&line);
        if line.is_empty() {
            // Dispatch the event.
            if !data.is_empty() {
                if data == "[DONE]" {
                    done = true;
                    break;
                }
                let chunk: Chunk = serde_json::from_str(&data).map_err(|e| {
                    LlmError::Stream(format!(
                        "{e} in `{}`",
                        data.chars().take(80).collect::<String>()
                    ))
                })?;
                if let Some(text) = chunk
                    .choices
                    .first()
                    .and_then(|c| c.delta.content.as_deref())
                {
                    if !text.is_empty() {
                        answer.push_str(text);
                        if !on_text(text) {
                            return Err(LlmError::Cancelled);
                        }
                    }
                }
                data.clear();
            }
            if at_end {
                break;
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        if field == "data" {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value);
        }
    }
    if !done {
        return Err(LlmError::Stream("stream ended without [DONE]".into()));
    }
    Ok(answer)
}

/// Cuts streamed text into sentences: at `.`, `!`, `?` or `:` followed by
/// a space, but not after a digit ("am 3. Dezember") or a short
/// abbreviation ("Dr.", "z.B.").
#[derive(Debug, Default)]
pub struct SentenceCutter {
    pending: String,
}

impl SentenceCutter {
    /// Adds text; calls `emit` for each finished sentence.
    pub fn push(&mut self, text: &str, emit: &mut dyn FnMut(&str) -> bool) -> bool {
        self.pending.push_str(text);
        loop {
            let Some(cut) = self.boundary() else {
                return true;
            };
            let sentence: String = self.pending.drain(..cut).collect();
            let sentence = sentence.trim();
            if !sentence.is_empty() && !emit(sentence) {
                return false;
            }
        }
    }

    /// Emits what is left.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&str) -> bool) -> bool {
        let rest = std::mem::take(&mut self.pending);
        let rest = rest.trim();
        rest.is_empty() || emit(rest)
    }

    fn boundary(&self) -> Option<usize> {
        let s = &self.pending;
        let chars: Vec<(usize, char)> = s.char_indices().collect();
        for (k, &(i, c)) in chars.iter().enumerate() {
            if !matches!(c, '.' | '!' | '?') {
                continue;
            }
            let next = chars.get(k + 1).map(|x| x.1);
            if next.is_none_or(|n| !n.is_whitespace()) {
                continue;
            }
            if c == '.' {
                let word: String = s[..i]
                    .chars()
                    .rev()
                    .take_while(|ch| !ch.is_whitespace())
                    .collect();
                let prev = s[..i].chars().next_back();
                if prev.is_some_and(|p| p.is_ascii_digit())
                    || (word.chars().count() <= 3
                        && word.chars().any(|ch| ch.is_uppercase() || ch == '.'))
                {
                    continue;
                }
            }
            return Some(i + c.len_utf8());
        }
        None
    }
}

/// A call's dialogue with the model; the scenario supplies the greeting,
/// the global intents with actions (a human, goodbye) and the fallback.
pub struct LlmDialogue {
    client: LlmClient,
    scenario: ScenarioDialogue,
    history: Vec<Message>,
}

impl LlmDialogue {
    /// A new call: `context` (opening hours, practice facts) joins the system prompt.
    pub fn new(client: LlmClient, scenario: &Arc<Scenario>, context: &str) -> Self {
        let mut system = client.config().system_prompt.clone();
        if !context.is_empty() {
            system.push_str("\n\n");
            system.push_str(context);
        }
        Self {
            client,
            scenario: scenario.session(),
            history: vec![Message {
                role: "system",
                content: system,
            }],
        }
    }

    /// The conversation so far.
    pub fn history(&self) -> &[Message] {
        &self.history
    }

    fn ask(&mut self, user: String, today: NaiveDate, say: &mut dyn FnMut(&str) -> bool) -> Reply {
        // Bounded: the system prompt plus the latest exchanges, starting
        // with a user message.
        let keep = self.client.config().max_history.max(1);
        while self.history.len() > keep {
            self.history.remove(1);
            while self.history.get(1).is_some_and(|m| m.role != "user") {
                self.history.remove(1);
            }
        }
        self.history.push(Message {
            role: "user",
            content: format!("{user}\n(Heute ist {}.)", super::when::speak_date(today)),
        });
        let mut cutter = SentenceCutter::default();
        let mut spoken = true;
        let result = self.client.stream(&self.history, &mut |delta| {
            spoken = cutter.push(delta, say);
            spoken
        });
        match result {
            Ok(answer) => {
                if spoken {
                    cutter.finish(say);
                }
                // The user message keeps its date note only for this turn.
                if let Some(last) = self.history.last_mut() {
                    last.content = user;
                }
                self.history.push(Message {
                    role: "assistant",
                    content: answer.trim().to_owned(),
                });
                Reply {
                    text: answer.trim().to_owned(),
                    ..Reply::default()
                }
            }
            Err(e) => {
                self.history.pop();
                if matches!(e, LlmError::Cancelled) {
                    return Reply::default();
                }
                tracing::warn!(error = %e, "LLM failed; falling back to the scenario's reprompt");
                let text = self.scenario.reprompt_text();
                say(&text);
                Reply {
                    text,
                    ..Reply::default()
                }
            }
        }
    }
}

impl Dialogue for LlmDialogue {
    fn respond(
        &mut self,
        input: Input<'_>,
        today: NaiveDate,
        say: &mut dyn FnMut(&str) -> bool,
    ) -> Reply {
        match input {
            Input::Start => {
                let reply = self.scenario.respond(Input::Start, today, say);
                self.history.push(Message {
                    role: "assistant",
                    content: reply.text.clone(),
                });
                reply
            }
            // The model reads the decoded text; weighing readings is the
            // scenario's business.
            Input::Readings([Hypothesis { text, .. }, ..]) => {
                self.respond(Input::Speech(text), today, say)
            }
            Input::Speech(text) => {
                if let Some(reply) = self.scenario.global_action(&tokens(text), today, say) {
                    return reply;
                }
                self.ask(text.trim().to_owned(), today, say)
            }
            Input::Dtmf(keys) => self.ask(
                format!("(Der Anrufer hat die Tasten {keys} gedrückt.)"),
                today,
                say,
            ),
            Input::Silence | Input::Readings([]) => {
                self.ask("(Der Anrufer schweigt.)".into(), today, say)
            }
        }
    }

    fn hint(&self, partial: &str) -> TurnHint {
        let h = super::hint::by_words(partial);
        if h == TurnHint::Unknown && partial.trim_end().ends_with('?') {
            return TurnHint::Complete;
        }
        h
    }

    fn vocabulary(&self) -> Option<String> {
        self.scenario.vocabulary()
    }

    fn outcome(&self) -> Option<&str> {
        self.scenario.outcome()
    }

    fn slots(&self) -> Vec<(&'static str, String)> {
        self.scenario.slots().values()
    }
}
