//! Tools: a scenario that checks a free time and books through loopback
//! endpoints (declined, answered, failing, slow, cancelled), and the LLM
//! calling declared and built-in tools in the streamed OpenAI format.

use aiagc_dialogue::llm::{LlmClient, LlmConfig, LlmDialogue};
use aiagc_dialogue::scenario::Scenario;
use aiagc_dialogue::tools::{ToolSpec, Toolbox};
use aiagc_dialogue::{Action, CallContext, Dialogue, Input, Reply};
use chrono::NaiveDate;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Tuesday, 24 November 2026.
fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
}

fn say(d: &mut dyn Dialogue, input: Input<'_>) -> Reply {
    let mut said = Vec::new();
    let reply = d.respond(input, today(), &mut |s| {
        said.push(s.to_owned());
        true
    });
    let bare = |t: &str| t.split_whitespace().collect::<String>();
    assert_eq!(
        bare(&said.concat()),
        bare(&reply.text),
        "callback and reply agree"
    );
    reply
}

/// A request as the server saw it.
#[derive(Debug)]
struct Seen {
    path: String,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Answers one scripted response per connection: status, body, delay
/// before the body. Returns the base URL and the requests.
fn server(responses: Vec<(u16, String, Duration)>) -> (String, Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (status, body, delay) in responses {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            reader.read_line(&mut first).ok();
            let path = first.split_whitespace().nth(1).unwrap_or("").to_owned();
            let mut headers = Vec::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
                    if k == "content-length" {
                        length = v.parse().unwrap_or(0);
                    }
                    headers.push((k, v));
                }
            }
            let mut request = vec![0; length];
            reader.read_exact(&mut request).ok();
            let _ = tx.send(Seen {
                path,
                headers,
                body: serde_json::from_slice(&request).unwrap_or_default(),
            });
            let mut stream = stream;
            let kind = if body.starts_with("data:") {
                "text/event-stream"
            } else {
                "application/json"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: {kind}\r\nconnection: close\r\n\r\n"
            );
            std::thread::sleep(delay);
            for part in body.split_inclusive("\n\n") {
                if stream.write_all(part.as_bytes()).is_err() {
                    break;
                }
                let _ = stream.flush();
            }
        }
    });
    (format!("http://{addr}"), rx)
}

const SCENARIO: &str = r#"
name = "buchung"
greeting = "Hallo."
start = "menu"
fallback = { say = "Ich verbinde Sie mit dem Team.", action = "transfer", outcome = "transferred" }

[transfer]
context = "team"

[intents]
book = ["termin"]

[states.menu]
prompt = "Was kann ich für Sie tun?"
on.book = { goto = "when" }

[states.when]
prompt = "An welchem Tag und um wie viel Uhr?"
collect = ["date", "time"]
ask = { time = "Um wie viel Uhr dann?" }
next = { tool = "check_free", goto = "confirm", rejected = { say = "{tool.say}", clear = ["time"] } }

[states.confirm]
prompt = "Also am {date} um {time}. Richtig?"
yes = { tool = "book", say = "Eingetragen. Ihre Buchungsnummer ist {tool.booking_id}.", outcome = "booked", action = "hangup" }
no = { say = "Gut.", goto = "when", clear = ["date", "time"] }
"#;

fn tool(name: &str, url: &str, timeout_ms: u64) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: format!("{name} im Buchungssystem"),
        parameters: json!({"type": "object", "properties": {
            "date": {"type": "string"}, "time": {"type": "string", "pattern": "^[0-9]{2}:[0-9]{2}$"},
            "caller": {"type": "string"}}, "required": ["date", "time"], "additionalProperties": false}),
        url: format!("{url}/{name}"),
        method: "POST".into(),
        timeout: Duration::from_millis(timeout_ms),
        headers: vec![("authorization".into(), "Bearer praxis-token".into())],
    }
}

fn attach(d: &mut dyn Dialogue, cancelled: Arc<AtomicBool>) {
    d.attach(CallContext {
        call: "1795.7".into(),
        caller: "+4930123456".into(),
        cancelled: Arc::new(move || cancelled.load(Ordering::SeqCst)),
    });
}

/// A session at the confirmation of Thursday 14:30 whose `check_free` was
/// answered `answers[0]`, the rest left for `book`.
fn at_confirmation(
    answers: Vec<(u16, String, Duration)>,
    book_timeout_ms: u64,
) -> (Box<dyn Dialogue>, Receiver<Seen>, Arc<AtomicBool>) {
    let (url, seen) = server(answers);
    let tools = Toolbox::new(vec![
        tool("check_free", &url, 1000),
        tool("book", &url, book_timeout_ms),
    ])
    .unwrap();
    let scenario = Scenario::from_toml(SCENARIO).unwrap();
    assert_eq!(scenario.tools_used(), ["book", "check_free"]);
    let mut d: Box<dyn Dialogue> = Box::new(scenario.session().with_tools(tools));
    let cancelled = Arc::new(AtomicBool::new(false));
    attach(d.as_mut(), cancelled.clone());
    say(d.as_mut(), Input::Start);
    say(d.as_mut(), Input::Speech("Ich brauche einen Termin."));
    let r = say(d.as_mut(), Input::Speech("Am Donnerstag um halb drei."));
    assert_eq!(
        r.text,
        "Also am Donnerstag, den 26. November um 14 Uhr 30. Richtig?"
    );
    let check = seen.recv_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!(check.path, "/check_free");
    assert_eq!(
        check.body,
        json!({"date": "2026-11-26", "time": "14:30", "caller": "+4930123456"})
    );
    assert_eq!(check.header("authorization"), Some("Bearer praxis-token"));
    assert_eq!(check.header("idempotency-key"), Some("1795.7-3-check_free"));
    (d, seen, cancelled)
}

#[test]
fn a_declined_time_is_asked_again_and_a_free_one_is_booked_through_the_endpoint() {
    let (url, seen) = server(vec![
        (
            200,
            r#"{"ok": false, "say": "Um 14:30 Uhr ist leider schon belegt."}"#.into(),
            Duration::ZERO,
        ),
        (200, r#"{"ok": true}"#.into(), Duration::ZERO),
        (
            200,
            r#"{"ok": true, "booking_id": "B-4711"}"#.into(),
            Duration::ZERO,
        ),
    ]);
    let tools = Toolbox::new(vec![
        tool("check_free", &url, 1000),
        tool("book", &url, 1000),
    ])
    .unwrap();
    let mut d = Scenario::from_toml(SCENARIO)
        .unwrap()
        .session()
        .with_tools(tools);
    attach(&mut d, Arc::default());
    say(&mut d, Input::Start);
    say(&mut d, Input::Speech("Ich brauche einen Termin."));
    let r = say(&mut d, Input::Speech("Am Donnerstag um halb drei."));
    assert_eq!(
        r.text,
        "Um 14:30 Uhr ist leider schon belegt. Um wie viel Uhr dann?"
    );
    assert!(r.outcome.is_none());
    let r = say(&mut d, Input::Speech("Um vier."));
    assert_eq!(
        r.text,
        "Also am Donnerstag, den 26. November um 16 Uhr. Richtig?"
    );
    let r = say(&mut d, Input::Speech("Ja, genau."));
    assert_eq!(r.text, "Eingetragen. Ihre Buchungsnummer ist B-4711.");
    assert_eq!(r.outcome.as_deref(), Some("booked"));
    assert_eq!(r.action, Some(Action::Hangup));
    let requests: Vec<Seen> = seen.try_iter().collect();
    assert_eq!(
        requests.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(),
        ["/check_free", "/check_free", "/book"]
    );
    assert_eq!(requests[2].body["time"], "16:00");
}

#[test]
fn a_failing_endpoint_gets_an_apology_and_the_fallback_not_a_booking() {
    for (answer, timeout_ms) in [
        ((500, "{}".to_owned(), Duration::ZERO), 1000),
        ((200, "kein json".to_owned(), Duration::ZERO), 1000),
        ((200, "[1, 2]".to_owned(), Duration::ZERO), 1000),
        // Slower than the tool's timeout.
        (
            (
                200,
                r#"{"ok": true}"#.to_owned(),
                Duration::from_millis(800),
            ),
            200,
        ),
    ] {
        let (mut d, _seen, _) = at_confirmation(
            vec![
                (200, r#"{"ok": true}"#.into(), Duration::ZERO),
                answer.clone(),
            ],
            timeout_ms,
        );
        let r = say(d.as_mut(), Input::Speech("Ja."));
        assert_eq!(
            r.text, "Entschuldigung, das hat gerade nicht geklappt. Ich verbinde Sie mit dem Team.",
            "{answer:?}"
        );
        assert_eq!(r.outcome.as_deref(), Some("transferred"), "{answer:?}");
        assert!(matches!(r.action, Some(Action::Transfer { .. })));
        assert!(
            d.slots().iter().any(|(k, _)| *k == "date"),
            "slots kept for the person"
        );
    }
}

#[test]
fn a_cancelled_turn_stops_waiting_for_the_tool_and_books_nothing() {
    let (mut d, _seen, cancelled) = at_confirmation(
        vec![
            (200, r#"{"ok": true}"#.into(), Duration::ZERO),
            (
                200,
                r#"{"ok": true, "booking_id": "late"}"#.into(),
                Duration::from_secs(2),
            ),
        ],
        3000,
    );
    let flag = cancelled.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        flag.store(true, Ordering::SeqCst);
    });
    let t = Instant::now();
    let r = say(d.as_mut(), Input::Speech("Ja."));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "waited for the cancelled tool"
    );
    assert_eq!(r.text, "");
    assert!(r.outcome.is_none() && r.action.is_none(), "{r:?}");
    assert_eq!(d.outcome(), None);
}

#[test]
fn a_scenario_calling_an_undeclared_tool_or_misusing_rejected_is_refused() {
    let base = SCENARIO.replace(
        "rejected = { say = \"{tool.say}\", clear = [\"time\"] }",
        "rejected = { tool = \"x\" }",
    );
    let e = Scenario::from_toml(&base).unwrap_err().to_string();
    assert!(e.contains("cannot call a tool"), "{e}");
    let e = Scenario::from_toml(&SCENARIO.replace("tool = \"check_free\", ", ""))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`rejected` but no `tool`"), "{e}");
    let e = Scenario::from_toml(&SCENARIO.replace(
        "action = \"transfer\", outcome = \"transferred\" }",
        "action = \"transfer\", outcome = \"transferred\", tool = \"book\" }",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("fallback"), "{e}");
    // Without a toolbox a tool fails like a broken endpoint.
    let mut d = Scenario::from_toml(SCENARIO).unwrap().session();
    say(&mut d, Input::Start);
    say(&mut d, Input::Speech("Ich brauche einen Termin."));
    let r = say(&mut d, Input::Speech("Am Donnerstag um halb drei."));
    assert!(r.text.starts_with("Entschuldigung"), "{}", r.text);
}

fn sse_tool_call(id: &str, name: &str, pieces: &[&str], text: &str) -> String {
    let mut body = String::new();
    if !text.is_empty() {
        let c = json!({"choices":[{"index":0,"delta":{"role":"assistant","content":text}}]});
        body.push_str(&format!("data: {c}\n\n"));
    }
    let first = json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":id,"type":"function","function":{"name":name,"arguments":""}}]}}]});
    body.push_str(&format!("data: {first}\n\n"));
    for p in pieces {
        let c = json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":p}}]}}]});
        body.push_str(&format!("data: {c}\n\n"));
    }
    let end = json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]});
    body.push_str(&format!("data: {end}\n\ndata: [DONE]\n\n"));
    body
}

fn sse_text(text: &str) -> String {
    let c = json!({"choices":[{"index":0,"delta":{"content":text}}]});
    format!("data: {c}\n\ndata: [DONE]\n\n")
}

fn llm(url: &str) -> LlmClient {
    LlmClient::new(LlmConfig {
        base_url: format!("{url}/v1"),
        model: "m".into(),
        first_token_timeout: Duration::from_millis(800),
        total_timeout: Duration::from_secs(3),
        ..LlmConfig::default()
    })
    .unwrap()
}

#[test]
fn the_model_books_through_a_declared_tool_and_speaks_its_answer() {
    let (llm_url, llm_seen) = server(vec![
        (
            200,
            sse_tool_call(
                "call_7",
                "book",
                &["{\"date\": \"2026-11-26\",", " \"time\": \"14:30\"}"],
                "Einen Moment.",
            ),
            Duration::ZERO,
        ),
        (
            200,
            sse_text("Ihr Termin ist eingetragen, Nummer B-12."),
            Duration::ZERO,
        ),
    ]);
    let (tool_url, tool_seen) = server(vec![(
        200,
        r#"{"ok": true, "booking_id": "B-12"}"#.into(),
        Duration::ZERO,
    )]);
    let tools = Toolbox::new(vec![tool("book", &tool_url, 1000)]).unwrap();
    let scenario = Scenario::from_toml(SCENARIO).unwrap();
    let mut d = LlmDialogue::new(llm(&llm_url), &scenario, "").with_tools(tools);
    attach(&mut d, Arc::default());
    let r = say(&mut d, Input::Speech("Donnerstag halb drei bitte."));
    assert_eq!(
        r.text,
        "Einen Moment. Ihr Termin ist eingetragen, Nummer B-12."
    );
    assert!(r.action.is_none());
    let first = llm_seen.recv_timeout(Duration::from_secs(2)).unwrap();
    let names: Vec<&str> = first.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert_eq!(names, ["transfer", "hang_up", "send_dtmf", "book"]);
    let booked = tool_seen.recv_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!(booked.body, json!({"date": "2026-11-26", "time": "14:30"}));
    assert_eq!(booked.header("idempotency-key"), Some("1795.7-1-book"));
    let second = llm_seen.recv_timeout(Duration::from_secs(2)).unwrap();
    let messages = second.body["messages"].as_array().unwrap();
    let n = messages.len();
    assert_eq!(messages[n - 2]["role"], "assistant");
    assert_eq!(messages[n - 2]["tool_calls"][0]["id"], "call_7");
    assert_eq!(messages[n - 2]["tool_calls"][0]["function"]["name"], "book");
    assert_eq!(messages[n - 1]["role"], "tool");
    assert_eq!(messages[n - 1]["tool_call_id"], "call_7");
    assert!(messages[n - 1]["content"]
        .as_str()
        .unwrap()
        .contains("B-12"));
}

#[test]
fn the_model_hangs_up_and_sends_tones_with_the_built_ins() {
    let (url, seen) = server(vec![
        (
            200,
            sse_tool_call("c1", "hang_up", &["{}"], "Auf Wiederhören."),
            Duration::ZERO,
        ),
        (
            200,
            sse_tool_call("c2", "send_dtmf", &["{\"digits\": \"12#\"}"], ""),
            Duration::ZERO,
        ),
        (200, sse_text("Ich habe die Eins gewählt."), Duration::ZERO),
        // Digits outside 0-9*#: the model is told, not obeyed.
        (
            200,
            sse_tool_call("c3", "send_dtmf", &["{\"digits\": \"1; rm\"}"], ""),
            Duration::ZERO,
        ),
        (200, sse_text("Das ging nicht."), Duration::ZERO),
    ]);
    let scenario = Scenario::from_toml(SCENARIO).unwrap();
    let mut d = LlmDialogue::new(llm(&url), &scenario, "");
    let r = say(&mut d, Input::Speech("Danke, das war alles."));
    assert_eq!(r.text, "Auf Wiederhören.");
    assert_eq!(r.action, Some(Action::Hangup));
    let r = say(&mut d, Input::Speech("Wählen Sie eins."));
    assert_eq!(r.action, Some(Action::SendDtmf("12#".into())));
    assert_eq!(r.text, "Ich habe die Eins gewählt.");
    let r = say(&mut d, Input::Speech("Nochmal."));
    assert_eq!(r.action, None);
    assert_eq!(r.text, "Das ging nicht.");
    let requests: Vec<Seen> = seen.try_iter().collect();
    let last = requests.last().unwrap();
    let tool_answer = last.body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(
        tool_answer["content"]
            .as_str()
            .unwrap()
            .contains("digits must be"),
        "{tool_answer}"
    );
}

#[test]
fn a_server_that_refuses_tools_is_asked_without_them() {
    let (url, seen) = server(vec![
        (
            400,
            r#"{"error": "tools not supported"}"#.into(),
            Duration::ZERO,
        ),
        (200, sse_text("Gerne."), Duration::ZERO),
        (200, sse_text("Bitte."), Duration::ZERO),
    ]);
    let scenario = Scenario::from_toml(SCENARIO).unwrap();
    let mut d = LlmDialogue::new(llm(&url), &scenario, "");
    assert_eq!(say(&mut d, Input::Speech("Hallo?")).text, "Gerne.");
    assert_eq!(say(&mut d, Input::Speech("Noch was.")).text, "Bitte.");
    let requests: Vec<Seen> = seen.try_iter().collect();
    assert!(requests[0].body.get("tools").is_some());
    assert!(requests[1].body.get("tools").is_none());
    assert!(requests[2].body.get("tools").is_none(), "not offered again");
}

#[test]
fn a_failing_tool_of_the_model_gets_the_apology_and_the_fallback() {
    let (llm_url, _llm_seen) = server(vec![(
        200,
        sse_tool_call(
            "c9",
            "book",
            &["{\"date\": \"2026-11-26\", \"time\": \"14:30\"}"],
            "",
        ),
        Duration::ZERO,
    )]);
    let (tool_url, _t) = server(vec![(503, "{}".into(), Duration::ZERO)]);
    let tools = Toolbox::new(vec![tool("book", &tool_url, 1000)]).unwrap();
    let scenario = Scenario::from_toml(SCENARIO).unwrap();
    let mut d = LlmDialogue::new(llm(&llm_url), &scenario, "").with_tools(tools);
    let r = say(&mut d, Input::Speech("Buchen Sie Donnerstag."));
    assert_eq!(
        r.text,
        "Entschuldigung, das hat gerade nicht geklappt. Ich verbinde Sie mit dem Team."
    );
    assert!(matches!(r.action, Some(Action::Transfer { .. })));
    assert_eq!(d.history().len(), 1, "the failed turn leaves no trace");
}
