//! An LLM as the dialogue: OpenAI-compatible `/v1/chat/completions` with
//! `stream: true` (server-sent events). Deltas are cut into sentences as
//! they arrive, so TTS starts on the first sentence while the model is
//! still writing. A timeout or error falls back to the scenario's reprompt;
//! hanging up and transfers stay with the scenario's global intents.
//!
//! Tools: the declared endpoints ([`super::tools`]) and the built-ins
//! (transfer, hang up, send DTMF) are offered as OpenAI `tools`; streamed
//! tool calls are collected, carried out, answered with `tool` messages,
//! and the model is asked again for what to say (a few rounds at most).

use super::scenario::{Scenario, ScenarioDialogue};
use super::text::tokens;
use super::tools::{built_in_tools, ToolContext, ToolError, Toolbox};
use super::{Action, CallContext, Dialogue, Input, Reply, TurnHint};
use aiagc_models::nbest::Hypothesis;
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
    /// `system`, `user`, `assistant` or `tool`.
    pub role: &'static str,
    /// Text.
    pub content: String,
    /// The assistant's tool calls.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The call a `tool` message answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A plain text message.
    pub fn new(role: &'static str, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A tool call the model made (as sent back in the history).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ToolCall {
    /// Its id (answered by a `tool` message).
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// What to call.
    pub function: FunctionCall,
}

/// Name and JSON arguments of a tool call.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FunctionCall {
    /// Tool name.
    pub name: String,
    /// Arguments as JSON text (as the model wrote them).
    pub arguments: String,
}

/// What a streamed answer brought: text and tool calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Streamed {
    /// Content.
    pub text: String,
    /// Tool calls, in the order of their index.
    pub tool_calls: Vec<ToolCall>,
}

/// Most tool calls in one answer.
pub const MAX_TOOL_CALLS: usize = 4;
/// Most rounds of tool calls in one turn.
pub const MAX_TOOL_ROUNDS: usize = 3;

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    messages: &'a [Message],
    stream: bool,
    max_tokens: u32,
    temperature: f32,
    #[serde(skip_serializing_if = "<[serde_json::Value]>::is_empty")]
    tools: &'a [serde_json::Value],
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
    #[serde(default)]
    tool_calls: Vec<DeltaToolCall>,
}

#[derive(Deserialize)]
struct DeltaToolCall {
    #[serde(default)]
    index: usize,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<DeltaFunction>,
}

#[derive(Deserialize)]
struct DeltaFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// A client for one server (cheap to clone: the connection pool is shared).
#[derive(Clone)]
pub struct LlmClient {
    http: reqwest::blocking::Client,
    config: Arc<LlmConfig>,
    /// The server refused a request with `tools` (some local servers do):
    /// they are not offered again.
    no_tools: Arc<std::sync::atomic::AtomicBool>,
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
        let http = aiagc_models::http::build_blocking(http).map_err(LlmError::Transport)?;
        Ok(Self {
            http,
            config: Arc::new(config),
            no_tools: Arc::default(),
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
        self.stream_with_tools(messages, &[], on_text)
            .map(|s| s.text)
    }

    /// [`LlmClient::stream`] offering `tools` (OpenAI `tools` array).
    pub fn stream_with_tools(
        &self,
        messages: &[Message],
        tools: &[serde_json::Value],
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Streamed, LlmError> {
        use std::sync::atomic::Ordering;
        let offered = !tools.is_empty() && !self.no_tools.load(Ordering::Relaxed);
        match self.request(messages, if offered { tools } else { &[] }, on_text) {
            // Refused before any text: the same request without tools.
            Err(LlmError::Status { status, body }) if offered && (400..=422).contains(&status) => {
                tracing::warn!(status, body = %body, "the LLM server refuses `tools`: asking without them from now on");
                self.no_tools.store(true, Ordering::Relaxed);
                self.request(messages, &[], on_text)
            }
            other => other,
        }
    }

    fn request(
        &self,
        messages: &[Message],
        tools: &[serde_json::Value],
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Streamed, LlmError> {
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
            tools,
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
        let answer = read_stream(BufReader::new(bounded), &mut |text| {
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
    read_stream(reader, on_text).map(|s| s.text)
}

/// [`read_events`] that also collects streamed tool calls (their id and
/// name in the first delta of each index, the arguments in pieces).
pub fn read_stream(
    reader: impl BufRead,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<Streamed, LlmError> {
    let mut calls: Vec<(usize, String, String, String)> = Vec::new();
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
                for call in chunk
                    .choices
                    .first()
                    .map(|c| c.delta.tool_calls.as_slice())
                    .unwrap_or_default()
                {
                    let i = match calls.iter().position(|c| c.0 == call.index) {
                        Some(i) => i,
                        None if calls.len() < MAX_TOOL_CALLS => {
                            calls.push((call.index, String::new(), String::new(), String::new()));
                            calls.len() - 1
                        }
                        None => {
                            return Err(LlmError::Stream(format!(
                                "more than {MAX_TOOL_CALLS} tool calls"
                            )))
                        }
                    };
                    let c = &mut calls[i];
                    if let Some(id) = &call.id {
                        c.1 = id.clone();
                    }
                    if let Some(f) = &call.function {
                        if let Some(n) = &f.name {
                            c.2.push_str(n);
                        }
                        if let Some(a) = &f.arguments {
                            c.3.push_str(a);
                        }
                    }
                    if c.2.len() > 64 || c.3.len() > super::tools::MAX_ARGUMENTS {
                        return Err(LlmError::Stream("tool call beyond its bound".into()));
                    }
                }
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
    calls.sort_by_key(|c| c.0);
    let tool_calls = calls
        .into_iter()
        .map(|(index, id, name, arguments)| {
            if name.is_empty() {
                return Err(LlmError::Stream(format!("tool call {index} has no name")));
            }
            Ok(ToolCall {
                id: if id.is_empty() {
                    format!("call_{index}")
                } else {
                    id
                },
                kind: "function",
                function: FunctionCall { name, arguments },
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Streamed {
        text: answer,
        tool_calls,
    })
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
    tools: Option<Toolbox>,
    /// Inputs answered (tool calls' keys name the input).
    inputs: u64,
}

/// What carrying out one tool call gave.
enum Outcome {
    /// The text for the model's `tool` message, and what the call does.
    Done(String, Option<Action>),
    /// The turn was cancelled while waiting.
    Cancelled,
    /// The endpoint failed: apology and fallback.
    Failed,
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
            history: vec![Message::new("system", system)],
            tools: None,
            inputs: 0,
        }
    }

    /// Offers the built-in tools and `tools` to the model.
    pub fn with_tools(mut self, tools: Toolbox) -> Self {
        self.tools = Some(tools);
        self
    }

    /// The tools offered: the built-ins always (they only act on this
    /// call), the declared ones when there are any.
    fn offered(&self) -> Vec<serde_json::Value> {
        let mut all = built_in_tools();
        if let Some(t) = &self.tools {
            all.extend(t.openai_tools());
        }
        all
    }

    fn carry_out(&self, call: &ToolCall) -> Outcome {
        let error = |why: &str| {
            Outcome::Done(
                serde_json::json!({"ok": false, "error": why}).to_string(),
                None,
            )
        };
        let args: serde_json::Value =
            match serde_json::from_str(if call.function.arguments.trim().is_empty() {
                "{}"
            } else {
                &call.function.arguments
            }) {
                Ok(v) => v,
                Err(_) => return error("arguments are not JSON"),
            };
        let ok = r#"{"ok":true}"#.to_owned();
        match call.function.name.as_str() {
            "hang_up" => Outcome::Done(ok, Some(Action::Hangup)),
            "transfer" => match self.scenario.transfer_action() {
                Some(a) => Outcome::Done(ok, Some(a)),
                None => error("no transfer target is configured"),
            },
            "send_dtmf" => {
                let digits = args
                    .get("digits")
                    .and_then(|d| d.as_str())
                    .unwrap_or_default();
                if digits.is_empty()
                    || digits.len() > 20
                    || !digits
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
                {
                    return error("digits must be 1-20 of 0-9 * #");
                }
                Outcome::Done(ok, Some(Action::SendDtmf(digits.to_owned())))
            }
            name => {
                let Some(tools) = self.tools.as_ref().filter(|t| t.has(name)) else {
                    return error("no such tool");
                };
                let context = self.scenario.call();
                let call_id = context.map(|c| c.call.as_str()).unwrap_or("call");
                let never = || false;
                let cancelled: &dyn Fn() -> bool = match context {
                    Some(c) => &*c.cancelled,
                    None => &never,
                };
                let key = format!("{call_id}-{}-{name}", self.inputs);
                match tools.call(name, &args, &ToolContext { key, cancelled }) {
                    Ok(answer) => {
                        tracing::info!(call = %call_id, tool = name, declined = answer.declined(), "tool answered");
                        Outcome::Done(answer.value.to_string(), None)
                    }
                    Err(ToolError::Cancelled) => Outcome::Cancelled,
                    // The model's mistake: it may correct itself.
                    Err(e @ ToolError::Arguments { .. }) => error(&e.to_string()),
                    Err(e) => {
                        tracing::warn!(call = %call_id, tool = name, error = %e, "tool failed: apology and fallback");
                        Outcome::Failed
                    }
                }
            }
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
        self.inputs += 1;
        let mark = self.history.len();
        self.history.push(Message::new(
            "user",
            format!("{user}\n(Heute ist {}.)", super::when::speak_date(today)),
        ));
        let offered = self.offered();
        let mut text = String::new();
        let mut action = None;
        for round in 0..MAX_TOOL_ROUNDS {
            let mut cutter = SentenceCutter::default();
            let mut spoken = true;
            // The last round offers no tools: the model has to speak.
            let tools = if round + 1 < MAX_TOOL_ROUNDS {
                &offered[..]
            } else {
                &[]
            };
            let result = self
                .client
                .stream_with_tools(&self.history, tools, &mut |delta| {
                    spoken = cutter.push(delta, say);
                    spoken
                });
            let streamed = match result {
                Ok(s) => s,
                Err(e) => {
                    self.history.truncate(mark);
                    if matches!(e, LlmError::Cancelled) {
                        return Reply::default();
                    }
                    tracing::warn!(error = %e, "LLM failed; falling back to the scenario's reprompt");
                    let text = self.scenario.reprompt_text();
                    say(&text);
                    return Reply {
                        text,
                        ..Reply::default()
                    };
                }
            };
            if spoken {
                cutter.finish(say);
            }
            let said = streamed.text.trim().to_owned();
            if !said.is_empty() {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(&said);
            }
            let mut message = Message::new("assistant", said);
            message.tool_calls = streamed.tool_calls.clone();
            self.history.push(message);
            if streamed.tool_calls.is_empty() {
                break;
            }
            for call in &streamed.tool_calls {
                match self.carry_out(call) {
                    Outcome::Done(content, act) => {
                        let mut answer = Message::new("tool", content);
                        answer.tool_call_id = Some(call.id.clone());
                        self.history.push(answer);
                        action = act.or(action);
                    }
                    Outcome::Cancelled => {
                        self.history.truncate(mark);
                        return Reply::default();
                    }
                    Outcome::Failed => {
                        self.history.truncate(mark);
                        return self.scenario.tool_failed(today, say);
                    }
                }
            }
            // Hanging up or transferring ends the turn (after what was said).
            if matches!(action, Some(Action::Hangup | Action::Transfer { .. })) {
                if text.is_empty() {
                    let bye = match action {
                        Some(Action::Hangup) => "Auf Wiederhören.",
                        _ => "Einen Moment bitte, ich verbinde Sie.",
                    };
                    say(bye);
                    text = bye.to_owned();
                }
                break;
            }
        }
        // The user message keeps its date note only for this turn.
        if let Some(m) = self.history.get_mut(mark) {
            m.content = user;
        }
        Reply {
            text,
            outcome: matches!(action, Some(Action::Transfer { .. }))
                .then(|| "transferred".to_owned()),
            action,
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
                self.history
                    .push(Message::new("assistant", reply.text.clone()));
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

    fn attach(&mut self, call: CallContext) {
        self.scenario.attach(call);
    }
}
