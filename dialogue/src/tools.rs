//! Tools: the operator's HTTP endpoints the agent acts through (book a
//! slot, look up a free time). Declared in configuration with a JSON
//! schema of their arguments; called by the scenario from a transition and
//! offered to the LLM through the OpenAI `tools` interface.
//!
//! A call blocks the speech worker that answers the turn (as the LLM does)
//! but never longer than the tool's timeout, and it gives up at once when
//! the turn is cancelled (barge-in, hangup): the request runs on its own
//! thread and the worker stops waiting for it. Each request carries an
//! idempotency key (call, turn, tool) so that an endpoint which was
//! reached although we stopped waiting can tell a retry from a new action.

use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Longest JSON arguments sent, bytes.
pub const MAX_ARGUMENTS: usize = 4096;
/// Longest answer read, bytes.
pub const MAX_ANSWER: u64 = 16 * 1024;
/// Longest text of an answer the agent speaks, characters.
pub const MAX_SPOKEN: usize = 300;

/// One declared tool.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    /// Name the scenario and the model use (`[a-zA-Z0-9_-]`, ≤ 64).
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON schema of the arguments (an object schema).
    pub parameters: Value,
    /// Endpoint.
    pub url: String,
    /// `POST` (arguments as the JSON body) or `GET` (as query parameters).
    pub method: String,
    /// Longest wait for the answer.
    pub timeout: Duration,
    /// Extra headers (e.g. `Authorization` from the environment).
    pub headers: Vec<(String, String)>,
}

/// Why a tool gave no usable answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ToolError {
    /// No tool of that name is declared.
    #[error("no tool `{0}`")]
    Unknown(String),
    /// The declaration is unusable (bad schema, name, method).
    #[error("tool `{name}`: {why}")]
    Invalid {
        /// Tool.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// The arguments break the schema or the size bound.
    #[error("arguments of `{name}` rejected: {why}")]
    Arguments {
        /// Tool.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// No answer within the timeout.
    #[error("`{0}` did not answer in time")]
    Timeout(String),
    /// Connect or read failed.
    #[error("`{name}` unreachable: {why}")]
    Transport {
        /// Tool.
        name: String,
        /// What failed.
        why: String,
    },
    /// The endpoint answered with an error status.
    #[error("`{name}` answered HTTP {status}")]
    Status {
        /// Tool.
        name: String,
        /// HTTP status.
        status: u16,
    },
    /// The answer is not a JSON object within the bound.
    #[error("`{name}` answered something unusable: {why}")]
    Answer {
        /// Tool.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// The turn was cancelled while waiting.
    #[error("cancelled")]
    Cancelled,
}

/// What an endpoint answered.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolAnswer {
    /// The answer object.
    pub value: Value,
}

impl ToolAnswer {
    /// The endpoint declined the action (`"ok": false`: the slot is taken).
    pub fn declined(&self) -> bool {
        self.value.get("ok").and_then(Value::as_bool) == Some(false)
    }

    /// What the endpoint wants said (`"say"`), bounded and cleaned.
    pub fn say(&self) -> Option<String> {
        let s = self.value.get("say")?.as_str()?;
        let clean: String = s
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_SPOKEN)
            .collect();
        let clean = clean.trim().to_owned();
        (!clean.is_empty()).then_some(clean)
    }

    /// A top-level field as text (`{tool.booking_id}` in a scenario).
    pub fn field(&self, name: &str) -> Option<String> {
        match self.value.get(name)? {
            Value::String(s) => Some(
                s.chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_SPOKEN)
                    .collect(),
            ),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(if *b { "ja" } else { "nein" }.into()),
            _ => None,
        }
    }
}

/// Who is asking, and whether they still wait.
pub struct ToolContext<'a> {
    /// Idempotency key of this action.
    pub key: String,
    /// True once the turn is cancelled (checked while waiting).
    pub cancelled: &'a dyn Fn() -> bool,
}

struct Tool {
    spec: ToolSpec,
    validator: jsonschema::Validator,
}

/// The declared tools with one HTTP client (cheap to clone).
#[derive(Clone)]
pub struct Toolbox {
    tools: Arc<Vec<Tool>>,
    http: reqwest::blocking::Client,
}

impl std::fmt::Debug for Toolbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.tools.iter().map(|t| &t.spec.name))
            .finish()
    }
}

/// How often a waiting call looks at the cancellation.
const POLL: Duration = Duration::from_millis(10);

/// Checks declarations without building a client (for configuration checks).
pub fn check(specs: &[ToolSpec]) -> Result<(), ToolError> {
    compile(specs.to_vec()).map(|_| ())
}

fn compile(specs: Vec<ToolSpec>) -> Result<Vec<Tool>, ToolError> {
    let mut tools = Vec::new();
    for spec in specs {
        let invalid = |why: String| ToolError::Invalid {
            name: spec.name.clone(),
            why,
        };
        if spec.name.is_empty()
            || spec.name.len() > 64
            || !spec
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid("name must be 1–64 of [a-zA-Z0-9_-]".into()));
        }
        if tools.iter().any(|t: &Tool| t.spec.name == spec.name)
            || BUILT_IN.contains(&spec.name.as_str())
        {
            return Err(invalid("declared twice or the name of a built-in".into()));
        }
        if !matches!(spec.method.as_str(), "POST" | "GET") {
            return Err(invalid(format!(
                "method {:?} (use POST or GET)",
                spec.method
            )));
        }
        if !spec.url.starts_with("http://") && !spec.url.starts_with("https://") {
            return Err(invalid(format!(
                "url {:?} (use http:// or https://)",
                spec.url
            )));
        }
        if spec.parameters.get("type").and_then(Value::as_str) != Some("object") {
            return Err(invalid("parameters must be an object schema".into()));
        }
        let validator = jsonschema::validator_for(&spec.parameters)
            .map_err(|e| invalid(format!("schema: {e}")))?;
        tools.push(Tool { spec, validator });
    }
    Ok(tools)
}

impl Toolbox {
    /// Checks the declarations (names, methods, schemas).
    pub fn new(specs: Vec<ToolSpec>) -> Result<Self, ToolError> {
        let tools = compile(specs)?;
        let http = aiagc_models::http::build_blocking(reqwest::blocking::Client::builder())
            .map_err(|why| ToolError::Invalid {
                name: "*".into(),
                why,
            })?;
        Ok(Self {
            tools: Arc::new(tools),
            http,
        })
    }

    /// The declarations.
    pub fn specs(&self) -> impl Iterator<Item = &ToolSpec> {
        self.tools.iter().map(|t| &t.spec)
    }

    /// Whether `name` is declared.
    pub fn has(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t.spec.name == name)
    }

    /// The tools as the OpenAI `tools` array.
    pub fn openai_tools(&self) -> Vec<Value> {
        self.specs()
            .map(|s| {
                serde_json::json!({"type": "function", "function": {
                    "name": s.name, "description": s.description, "parameters": s.parameters}})
            })
            .collect()
    }

    /// Checks `args` against `name`'s schema and bound.
    pub fn validate(&self, name: &str, args: &Value) -> Result<(), ToolError> {
        let tool = self
            .tools
            .iter()
            .find(|t| t.spec.name == name)
            .ok_or_else(|| ToolError::Unknown(name.to_owned()))?;
        let bad = |why: String| ToolError::Arguments {
            name: name.to_owned(),
            why,
        };
        let size = serde_json::to_vec(args)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_ARGUMENTS {
            return Err(bad(format!("{size} bytes (at most {MAX_ARGUMENTS})")));
        }
        if let Some(e) = tool.validator.iter_errors(args).next() {
            return Err(bad(format!("{e} at {}", e.instance_path())));
        }
        Ok(())
    }

    /// Calls `name` with `args` (validated first); waits at most the
    /// tool's timeout, and not at all once `ctx.cancelled()`.
    pub fn call(
        &self,
        name: &str,
        args: &Value,
        ctx: &ToolContext<'_>,
    ) -> Result<ToolAnswer, ToolError> {
        self.validate(name, args)?;
        let Some(tool) = self.tools.iter().find(|t| t.spec.name == name) else {
            return Err(ToolError::Unknown(name.to_owned()));
        };
        let spec = tool.spec.clone();
        let mut request = match spec.method.as_str() {
            "GET" => {
                let query: Vec<(String, String)> = args
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| {
                        let v = v
                            .as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string());
                        (k.clone(), v)
                    })
                    .collect();
                self.http.get(&spec.url).query(&query)
            }
            _ => self.http.post(&spec.url).json(args),
        }
        .timeout(spec.timeout)
        .header("idempotency-key", &ctx.key);
        for (k, v) in &spec.headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let tool_name = spec.name.clone();
        std::thread::spawn(move || {
            let _ = tx.send(fetch(request, &tool_name));
        });
        let deadline = std::time::Instant::now() + spec.timeout + Duration::from_millis(200);
        loop {
            if (ctx.cancelled)() {
                return Err(ToolError::Cancelled);
            }
            match rx.recv_timeout(POLL) {
                Ok(result) => return result,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                    if std::time::Instant::now() < deadline => {}
                Err(_) => return Err(ToolError::Timeout(spec.name)),
            }
        }
    }
}

/// The built-in tools the model can use (carried out by the call itself).
pub const BUILT_IN: [&str; 3] = ["transfer", "hang_up", "send_dtmf"];

/// The built-ins as the OpenAI `tools` array.
pub fn built_in_tools() -> Vec<Value> {
    serde_json::json!([
        {"type": "function", "function": {"name": "transfer",
            "description": "Verbindet den Anrufer mit einem Menschen aus dem Team, nachdem du es angekündigt hast.",
            "parameters": {"type": "object", "properties": {}, "additionalProperties": false}}},
        {"type": "function", "function": {"name": "hang_up",
            "description": "Beendet das Gespräch, nachdem du dich verabschiedet hast.",
            "parameters": {"type": "object", "properties": {}, "additionalProperties": false}}},
        {"type": "function", "function": {"name": "send_dtmf",
            "description": "Sendet Tastentöne in die Leitung (z. B. an ein Sprachmenü).",
            "parameters": {"type": "object", "properties": {"digits": {"type": "string", "pattern": "^[0-9*#]{1,20}$"}},
                "required": ["digits"], "additionalProperties": false}}}
    ])
    .as_array()
    .cloned()
    .unwrap_or_default()
}

fn fetch(request: reqwest::blocking::RequestBuilder, name: &str) -> Result<ToolAnswer, ToolError> {
    use std::io::Read;
    let response = request.send().map_err(|e| {
        if e.is_timeout() {
            ToolError::Timeout(name.to_owned())
        } else {
            ToolError::Transport {
                name: name.to_owned(),
                why: e.to_string(),
            }
        }
    })?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(ToolError::Status {
            name: name.to_owned(),
            status,
        });
    }
    let mut body = Vec::new();
    response
        .take(MAX_ANSWER + 1)
        .read_to_end(&mut body)
        .map_err(|e| ToolError::Transport {
            name: name.to_owned(),
            why: e.to_string(),
        })?;
    let answer = |why: String| ToolError::Answer {
        name: name.to_owned(),
        why,
    };
    if body.len() as u64 > MAX_ANSWER {
        return Err(answer(format!("more than {MAX_ANSWER} bytes")));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        // 204 or an empty 200: done, nothing to say.
        return Ok(ToolAnswer {
            value: Value::Object(Default::default()),
        });
    }
    let value: Value = serde_json::from_slice(&body).map_err(|e| answer(e.to_string()))?;
    if !value.is_object() {
        return Err(answer("not a JSON object".into()));
    }
    Ok(ToolAnswer { value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(name: &str) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            description: "Termin eintragen".into(),
            parameters: json!({"type": "object", "properties": {
                "date": {"type": "string", "format": "date"},
                "time": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"}},
                "required": ["date", "time"], "additionalProperties": false}),
            url: "http://127.0.0.1:9/book".into(),
            method: "POST".into(),
            timeout: Duration::from_millis(300),
            headers: vec![],
        }
    }

    #[test]
    fn arguments_are_checked_against_the_schema_and_the_bound() {
        let b = Toolbox::new(vec![spec("book")]).unwrap();
        b.validate("book", &json!({"date": "2026-12-03", "time": "14:30"}))
            .unwrap();
        for bad in [
            json!({"date": "2026-12-03"}),
            json!({"date": "2026-12-03", "time": "halb drei"}),
            json!({"date": "2026-12-03", "time": "14:30", "drop": "table"}),
            json!(["2026-12-03"]),
            json!({"date": 5, "time": "14:30"}),
        ] {
            assert!(
                matches!(b.validate("book", &bad), Err(ToolError::Arguments { .. })),
                "{bad}"
            );
        }
        let huge = json!({"date": "x".repeat(5000), "time": "14:30"});
        let e = b.validate("book", &huge).unwrap_err();
        assert!(e.to_string().contains("bytes"), "{e}");
        assert_eq!(
            b.validate("nope", &json!({})),
            Err(ToolError::Unknown("nope".into()))
        );
    }

    #[test]
    fn bad_declarations_are_named() {
        for (mutate, says) in [
            (
                Box::new(|s: &mut ToolSpec| s.name = "a b".into()) as Box<dyn Fn(&mut ToolSpec)>,
                "name",
            ),
            (
                Box::new(|s: &mut ToolSpec| s.name = "transfer".into()),
                "built-in",
            ),
            (
                Box::new(|s: &mut ToolSpec| s.method = "DELETE".into()),
                "method",
            ),
            (Box::new(|s: &mut ToolSpec| s.url = "ftp://x".into()), "url"),
            (
                Box::new(|s: &mut ToolSpec| s.parameters = json!({"type": "string"})),
                "object",
            ),
            (
                Box::new(|s: &mut ToolSpec| {
                    s.parameters = json!({"type": "object", "properties": {"a": {"type": 7}}})
                }),
                "schema",
            ),
        ] {
            let mut s = spec("book");
            mutate(&mut s);
            let e = Toolbox::new(vec![s]).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
        assert!(Toolbox::new(vec![spec("a"), spec("a")]).is_err());
    }

    #[test]
    fn an_unreachable_endpoint_fails_and_a_cancelled_wait_returns_at_once() {
        let b = Toolbox::new(vec![spec("book")]).unwrap();
        let args = json!({"date": "2026-12-03", "time": "14:30"});
        let e = b
            .call(
                "book",
                &args,
                &ToolContext {
                    key: "k".into(),
                    cancelled: &|| false,
                },
            )
            .unwrap_err();
        assert!(
            matches!(e, ToolError::Transport { .. } | ToolError::Timeout(_)),
            "{e}"
        );
        let e = b
            .call(
                "book",
                &args,
                &ToolContext {
                    key: "k".into(),
                    cancelled: &|| true,
                },
            )
            .unwrap_err();
        assert_eq!(e, ToolError::Cancelled);
    }

    #[test]
    fn answers_say_bounded_clean_text() {
        let a = ToolAnswer {
            value: json!({"ok": false, "say": format!("Leider\u{7} vergeben. {}", "x".repeat(400)), "id": 4711}),
        };
        assert!(a.declined());
        let said = a.say().unwrap();
        assert!(said.starts_with("Leider vergeben.") && said.chars().count() <= MAX_SPOKEN);
        assert_eq!(a.field("id").as_deref(), Some("4711"));
        assert_eq!(a.field("missing"), None);
        assert!(!ToolAnswer { value: json!({}) }.declined());
    }
}
