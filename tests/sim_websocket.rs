//! Whole calls over the WebSocket media transport through the simulator
//! (which speaks chan_websocket's protocol, checked against the real
//! Asterisk by `tests/asterisk_diff.rs`): greeting and reply heard in
//! wideband, barge-in flushes Asterisk's queue, a key press and a hangup
//! behave as over RTP, and nothing is left behind.

mod common;
use common::*;

use aiagc::runtime::app::App;
use aiagc::runtime::media::{CallSummary, MediaConfig};
use aiagc::runtime::speech::SpeechPool;
use aiagc_ari::controller::{ControllerConfig, MediaTransport};
use aiagc_ari::ports::PortRange;
use aiagc_ari::sim::{Alive, CallerScript, SimConfig, Simulator};
use aiagc_models::stt::{SttConfig, WhisperModel};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn pool() -> SpeechPool {
    let model = Arc::new(
        WhisperModel::load(
            &aiagc_models::manifest::default_dir().join(aiagc_models::WHISPER_DEFAULT),
        )
        .expect("model (run scripts/setup.sh)"),
    );
    SpeechPool::start(model, 1, 8, SttConfig::default()).unwrap()
}

async fn start() -> (Simulator, App, crossbeam_channel::Receiver<CallSummary>) {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let app = App::start(
        sim.client_config("aiagc"),
        // No UDP port is used over the WebSocket; the range stays valid.
        PortRange::new("127.0.0.1".parse().unwrap(), 36000..=36009),
        MediaConfig {
            filler_after: None,
            ..MediaConfig::default()
        },
        ControllerConfig {
            transport: MediaTransport::WebSocket,
            format: aiagc_engine::Codec::Slin16,
            ..ControllerConfig::default()
        },
        pool(),
        praxis(),
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

async fn nothing_left(sim: &Simulator) {
    let t = Instant::now();
    while sim.alive() != Alive::default() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "left behind: {:?}",
            sim.alive()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `caller` hears the agent's first loud frame.
async fn greeting_heard(sim: &Simulator, caller: &str) {
    let t = Instant::now();
    while !sim.received_for_caller(caller).iter().any(loud) {
        assert!(t.elapsed() < Duration::from_secs(10), "no greeting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pcm_of(records: &[aiagc_ari::sim::RtpRecord]) -> Vec<i16> {
    records.iter().flat_map(|r| r.pcm.iter().copied()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_over_the_websocket_is_greeted_understood_and_answered_in_wideband() {
    let (sim, app, summaries) = start().await;
    // Quiet through the greeting, one sentence, quiet through the reply.
    let mut audio = vec![0i16; 16000 * 11];
    audio.extend(wav16("book_01_v0_r150_16k.wav"));
    audio.extend(vec![0i16; 16000 * 4]);
    let caller = sim
        .place_call(
            "aiagc",
            CallerScript {
                audio,
                hangup_after: Some(Duration::from_millis(200)),
                ..CallerScript::default()
            },
        )
        .unwrap();
    // What the caller hears, gathered while the call lasts (the simulator
    // forgets a call's media when it ends).
    let mut heard = Vec::new();
    let t = Instant::now();
    let summary = loop {
        heard.extend(sim.take_received_for_caller(&caller));
        if let Ok(s) = summaries.try_recv() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "the call did not end"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(summary.call, caller);
    let greeting = summary
        .turns
        .iter()
        .find(|t| t.input == "start")
        .expect("a greeting");
    assert!(!greeting.interrupted, "{:?}", summary.turns);
    let turn = summary
        .turns
        .iter()
        .find(|t| t.input == "speech")
        .unwrap_or_else(|| panic!("no caller turn: {:?}", summary.turns));
    assert!(turn.reply.contains("welchem Tag"), "{turn:?}");
    // Marks tell when the simulated Asterisk began to play the reply.
    let (Some(heard_after), Some(out)) = (turn.heard_after, turn.from_speech_end) else {
        panic!("no mark-measured reply start: {turn:?}");
    };
    assert!(heard_after >= out && heard_after < out + Duration::from_millis(200));
    let loud = heard.iter().filter(|r| r.loud()).count();
    let high = share_above_4k(&pcm_of(&heard));
    eprintln!(
        "over the simulator's WebSocket: {} frames played to the caller, {loud} loud, {:.3} of \
         the energy above 4 kHz; aiagc heard {:?}; reply handed out {:?}, played {:?} after the \
         speech end; counters {:?}",
        heard.len(),
        high,
        turn.transcript,
        turn.from_speech_end,
        turn.heard_after,
        summary.rtp
    );
    assert!(loud > 200, "greeting and reply reached the caller: {loud}");
    assert!(high > 0.005, "16 kHz both ways: {high:.4} above 4 kHz");
    // Played at Asterisk's pace: 20 ms a frame, never two at once.
    let spacing: Vec<Duration> = heard
        .windows(2)
        .map(|w| w[1].at.saturating_duration_since(w[0].at))
        .collect();
    assert!(
        spacing.iter().all(|d| *d >= Duration::from_millis(15)),
        "frames closer than the 20 ms clock"
    );
    assert_eq!(summary.rtp.underruns, 0);
    nothing_left(&sim).await;
    app.drain(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_over_the_websocket_stops_what_asterisk_has_queued() {
    let (sim, app, summaries) = start().await;
    let caller = sim.place_call("aiagc", CallerScript::default()).unwrap();
    greeting_heard(&sim, &caller).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The caller talks over the greeting.
    let said = Instant::now();
    assert!(sim.say(&caller, &wav16("book_01_v0_r150_16k.wav")));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let heard = sim.received_for_caller(&caller);
    let last_greeting = heard
        .iter()
        .filter(|r| r.loud() && r.at < said + Duration::from_millis(2500))
        .map(|r| r.at)
        .max()
        .expect("greeting frames");
    let stopped = last_greeting.saturating_duration_since(said);
    eprintln!("barge-in over the simulator's WebSocket: the greeting stopped {stopped:?} after the caller began");
    // Without FLUSH_MEDIA the queued lead would play on; the endpointer
    // needs its 100–200 ms of speech first.
    assert!(stopped < Duration::from_millis(600), "{stopped:?}");
    assert!(sim.hangup(&caller));
    let summary = summary_of(&summaries, &mut Vec::new(), &caller).await;
    assert!(summary.turns[0].interrupted, "{:?}", summary.turns);
    assert!(summary.rtp.replies_interrupted >= 1, "{:?}", summary.rtp);
    nothing_left(&sim).await;
    app.drain(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_the_websocket_transfers_and_a_hangup_mid_reply_tears_down() {
    let (sim, app, summaries) = start().await;
    let caller = sim.place_call("aiagc", CallerScript::default()).unwrap();
    greeting_heard(&sim, &caller).await;
    assert!(sim.send_dtmf(&caller, '0'));
    let summary = summary_of(&summaries, &mut Vec::new(), &caller).await;
    assert_eq!(summary.dtmf, vec!["0".to_owned()]);
    assert_eq!(summary.outcome.as_deref(), Some("transferred"));
    // The caller went on into the dialplan; ours is gone.
    assert!(sim.hangup(&caller));
    nothing_left(&sim).await;

    // Another caller hangs up while the greeting plays.
    let gone = sim.place_call("aiagc", CallerScript::default()).unwrap();
    greeting_heard(&sim, &gone).await;
    assert!(sim.hangup(&gone));
    let summary = summary_of(&summaries, &mut Vec::new(), &gone).await;
    assert_eq!(summary.ended_by, "caller", "{summary:?}");
    nothing_left(&sim).await;
    app.drain(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_websocket_dropped_mid_call_keeps_a_websocket_call() {
    let (sim, app, summaries) = start().await;
    // Quiet through the greeting, then one sentence after the drop.
    let caller = sim.place_call("aiagc", CallerScript::default()).unwrap();
    greeting_heard(&sim, &caller).await;
    let connections = sim.connections();
    // Only the events connection goes; the media connection stays.
    sim.close_websockets();
    let t = Instant::now();
    while sim.connections() <= connections {
        assert!(t.elapsed() < Duration::from_secs(10), "the app reconnected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The call goes on: after the greeting the caller is heard and answered.
    agent_spoke(&sim, &caller, Instant::now()).await;
    assert!(sim.say(&caller, &wav16("book_01_v0_r150_16k.wav")));
    let said = Instant::now();
    agent_spoke(&sim, &caller, said).await;
    assert!(sim.hangup(&caller));
    let summary = summary_of(&summaries, &mut Vec::new(), &caller).await;
    assert!(
        summary
            .turns
            .iter()
            .any(|t| t.input == "speech" && t.reply.contains("welchem Tag")),
        "answered after the reconnect: {:?}",
        summary.turns
    );
    assert_eq!(app.controller.active_calls(), 0);
    nothing_left(&sim).await;
    app.drain(Duration::from_secs(2)).await;
}
