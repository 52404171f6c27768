//! A tool through the whole app: a simulated caller presses a key, the
//! scenario calls the operator's endpoint (a loopback server) with the
//! caller's number; a slow endpoint gets the filler once, a hangup cancels
//! the wait, a failing one an apology and the transfer.

mod common;
use common::webhook::{Behaviour, Webhook};
use common::*;

use aiagc::runtime::app::App;
use aiagc::runtime::media::{CallSummary, DialogueFactory, MediaConfig};
use aiagc::runtime::speech::SpeechPool;
use aiagc_ari::controller::ControllerConfig;
use aiagc_ari::ports::PortRange;
use aiagc_ari::sim::{CallerScript, SimConfig, Simulator};
use aiagc_dialogue::scenario::Scenario;
use aiagc_dialogue::tools::{ToolSpec, Toolbox};
use aiagc_models::stt::{SttConfig, WhisperModel};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SCENARIO: &str = r#"
name = "tasten"
greeting = "Guten Tag."
start = "menu"
fallback = { say = "Ich verbinde Sie mit dem Team.", action = "transfer", outcome = "transferred" }

[transfer]
context = "from-ai-agent"

[states.menu]
prompt = "Zum Buchen drücken Sie die Eins."
dtmf.1 = { tool = "book", say = "Gebucht, Ihre Nummer ist {tool.booking_id}. Auf Wiederhören.", outcome = "booked", action = "hangup" }
"#;

fn dialogues(url: &str) -> DialogueFactory {
    let tools = Toolbox::new(vec![ToolSpec {
        name: "book".into(),
        description: "Bucht".into(),
        parameters: serde_json::json!({"type": "object", "properties": {"caller": {"type": "string"}},
            "required": ["caller"]}),
        url: url.to_owned(),
        method: "POST".into(),
        timeout: Duration::from_secs(5),
        headers: vec![],
    }])
    .unwrap();
    let scenario = Scenario::from_toml(SCENARIO).unwrap();
    Arc::new(move || Box::new(scenario.session().with_tools(tools.clone())))
}

async fn start(
    ports: std::ops::RangeInclusive<u16>,
    url: &str,
) -> (Simulator, App, crossbeam_channel::Receiver<CallSummary>) {
    let model = Arc::new(
        WhisperModel::load(
            &aiagc_models::manifest::default_dir().join(aiagc_models::WHISPER_DEFAULT),
        )
        .expect("model (run scripts/setup.sh)"),
    );
    let pool = SpeechPool::start(model, 1, 8, SttConfig::default()).unwrap();
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let app = App::start(
        sim.client_config("aiagc"),
        PortRange::new("127.0.0.1".parse().unwrap(), ports),
        MediaConfig {
            filler_after: Some(Duration::from_millis(1000)),
            ..MediaConfig::default()
        },
        ControllerConfig::default(),
        pool,
        dialogues(url),
        Some(tx),
    )
    .unwrap();
    let t = Instant::now();
    while sim.connections() == 0 {
        assert!(t.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (sim, app, rx)
}

/// Places a call from `number` and presses 1 once the greeting has played.
async fn press_one(sim: &Simulator, number: &str) -> String {
    let caller = sim
        .place_call(
            "aiagc",
            CallerScript {
                number: number.into(),
                ..CallerScript::default()
            },
        )
        .unwrap();
    agent_spoke(sim, &caller, Instant::now()).await;
    assert!(sim.send_dtmf(&caller, '1'));
    caller
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_gets_the_filler_once_and_its_answer_is_spoken() {
    let hook = Webhook::start(
        b"",
        Behaviour {
            unsigned: true,
            delay: Duration::from_millis(2500),
            answer: Some(r#"{"ok": true, "booking_id": "B-17"}"#.into()),
            ..Behaviour::default()
        },
    )
    .await;
    let (sim, _app, summaries) = start(33000..=33099, &hook.url()).await;
    let caller = press_one(&sim, "+49301111").await;
    let summary = summary_of(&summaries, &mut Vec::new(), &caller).await;
    assert_eq!(summary.outcome.as_deref(), Some("booked"));
    assert_eq!(summary.ended_by, "hangup");
    assert_eq!(summary.fillers, 1, "one filler while the tool ran");
    let turn = summary.turns.iter().find(|t| t.input == "dtmf").unwrap();
    assert_eq!(
        turn.reply,
        "Gebucht, Ihre Nummer ist B-17. Auf Wiederhören."
    );
    let posts = hook.posts();
    assert_eq!(posts.len(), 1);
    let args: serde_json::Value = serde_json::from_slice(&posts[0].body).unwrap();
    assert_eq!(args["caller"], "+49301111");
    assert_eq!(posts[0].key, format!("{caller}-2-book"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hangup_cancels_the_wait_and_a_failure_is_apologised_for() {
    let hook = Webhook::start(
        b"",
        Behaviour {
            unsigned: true,
            delay: Duration::from_secs(4),
            answer: Some(r#"{"ok": true, "booking_id": "zu-spaet"}"#.into()),
            ..Behaviour::default()
        },
    )
    .await;
    let (sim, app, summaries) = start(33100..=33199, &hook.url()).await;
    let mut seen = Vec::new();
    let caller = press_one(&sim, "+49302222").await;
    // The key reaches the scenario at once; its request then sleeps at
    // the endpoint.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sim.hangup(&caller);
    let summary = summary_of(&summaries, &mut seen, &caller).await;
    assert_eq!(
        summary.outcome, None,
        "nothing booked for a caller who left"
    );
    assert!(summary.turns.iter().all(|t| !t.reply.contains("Gebucht")));

    // The next caller, on the same single worker: its endpoint fails.
    hook.set(Behaviour {
        unsigned: true,
        script: [500].into(),
        ..Behaviour::default()
    });
    let next = press_one(&sim, "+49303333").await;
    let summary = summary_of(&summaries, &mut seen, &next).await;
    let turn = summary.turns.iter().find(|t| t.input == "dtmf").unwrap();
    assert_eq!(
        turn.reply,
        "Entschuldigung, das hat gerade nicht geklappt. Ich verbinde Sie mit dem Team."
    );
    assert_eq!(summary.outcome.as_deref(), Some("transferred"));
    assert_eq!(summary.ended_by, "transfer");
    assert_eq!(app.drain(Duration::from_secs(2)).await, 0);
}
