//! Whole calls through the simulator: ARI controller, engine-driven media
//! on real UDP sockets, whisper STT, the practice scenario and espeak-ng
//! TTS; what the caller hears, what the call leaves behind, DTMF,
//! transfer, draining, and the cancellation of stale speech jobs.

mod common;
use common::*;

use aiagc::runtime::app::App;
use aiagc::runtime::media::{CallSummary, MediaConfig};
use aiagc::runtime::metrics::Metrics;
use aiagc::runtime::speech::{CallShared, Job, SpeechOut, SpeechPool, Work};
use aiagc_ari::controller::ControllerConfig;
use aiagc_ari::ports::PortRange;
use aiagc_ari::sim::{Alive, CallerScript, SimConfig, Simulator};
use aiagc_dialogue::scenario::Scenario;
use aiagc_models::stt::{SttConfig, WhisperModel};
use std::sync::atomic::Ordering;
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

async fn start(
    ports: std::ops::RangeInclusive<u16>,
    records: Option<std::path::PathBuf>,
) -> (
    Simulator,
    App,
    crossbeam_channel::Receiver<CallSummary>,
    Arc<Metrics>,
) {
    start_with(ports, records, pool(), SimConfig::default(), None).await
}

async fn start_with(
    ports: std::ops::RangeInclusive<u16>,
    records: Option<std::path::PathBuf>,
    pool: SpeechPool,
    sim_config: SimConfig,
    delivery: Option<aiagc::delivery::Delivery>,
) -> (
    Simulator,
    App,
    crossbeam_channel::Receiver<CallSummary>,
    Arc<Metrics>,
) {
    let sim = Simulator::start(sim_config).await.unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let metrics = Arc::new(Metrics::default());
    if let Some(d) = &delivery {
        metrics.set_delivery_source(d.stats());
    }
    let app = App::start_with_metrics(
        sim.client_config("aiagc"),
        PortRange::new("127.0.0.1".parse().unwrap(), ports),
        MediaConfig {
            record_audio: records.is_some(),
            records_dir: records,
            // Replies are awaited here however slow the machine; the
            // filler has its own test (tests/faults.rs).
            filler_after: None,
            delivery,
            ..MediaConfig::default()
        },
        ControllerConfig::default(),
        pool,
        praxis(),
        Some(tx),
        Some(metrics.clone()),
    )
    .unwrap();
    let t = Instant::now();
    while sim.connections() == 0 {
        assert!(t.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    (sim, app, rx, metrics)
}

/// `GET path` on `addr`: status code and body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The samples of a Prometheus text exposition: `name{labels}` → value.
fn samples(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_is_greeted_understood_answered_recorded_and_delivered() {
    let records = std::env::temp_dir().join(format!("aiagc-records-{}", std::process::id()));
    let hook = webhook::Webhook::start(b"geheim", webhook::Behaviour::default()).await;
    let (delivery, _sender) = aiagc::delivery::Delivery::start(
        aiagc::delivery::DeliveryConfig {
            url: hook.url(),
            secret: b"geheim".to_vec(),
            spool_dir: records.join("spool"),
            timeout: Duration::from_secs(2),
            concurrency: 2,
            backoff_first: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
        },
        aiagc::delivery::Mode::Serve,
    )
    .unwrap();
    let (sim, app, summaries, metrics) = start_with(
        31000..=31499,
        Some(records.clone()),
        pool(),
        SimConfig::default(),
        Some(delivery),
    )
    .await;
    let controller = app.controller.clone();
    let web = aiagc::runtime::metrics::serve(
        "127.0.0.1:0".parse().unwrap(),
        metrics,
        Arc::new(move || controller.admits()),
    )
    .await
    .unwrap();
    assert_eq!(http_get(web, "/healthz").await.0, 200);
    assert_eq!(
        http_get(web, "/readyz").await.0,
        200,
        "ARI events connected"
    );
    let caller = sim
        .place_call(
            "aiagc",
            CallerScript {
                number: "+4930123456".into(),
                ..CallerScript::default()
            },
        )
        .unwrap();
    let bridged = Instant::now();
    let greeting = agent_spoke(&sim, &caller, bridged).await;
    assert!(
        greeting.duration_since(bridged) < Duration::from_secs(2),
        "greeting on answer"
    );
    assert!(sim.say(&caller, &wav16("book_01_v2_r150_16k.wav")));
    let said = Instant::now();
    agent_spoke(&sim, &caller, said + Duration::from_millis(500)).await;
    sim.hangup(&caller);
    let summary = summary_of(&summaries, &mut Vec::new(), &caller).await;
    let turns: Vec<_> = summary
        .turns
        .iter()
        .map(|t| (t.input, t.reply.as_str()))
        .collect();
    assert_eq!(turns[0].0, "start");
    assert!(turns[0].1.starts_with("Praxis Doktor Sommer"), "{turns:?}");
    let answer = summary
        .turns
        .iter()
        .find(|t| t.input == "speech")
        .expect("a spoken turn");
    assert!(
        answer.transcript.to_lowercase().contains("termin"),
        "{answer:?}"
    );
    assert_eq!(
        answer.reply,
        "Gerne. An welchem Tag und um wie viel Uhr möchten Sie kommen?"
    );
    // The server-side turn latency spans the wait for the turn's end too.
    let (handover, speech_end) = (
        answer.to_first_packet.expect("reply sent"),
        answer.from_speech_end.expect("speech end dated"),
    );
    assert!(
        speech_end > handover && speech_end < Duration::from_secs(3),
        "{speech_end:?} {handover:?}"
    );
    assert_eq!(summary.ended_by, "caller");
    // What the turn cost: its utterance decoded at least once (whole, at
    // its pause or at its end), the decode timed, its reply synthesized.
    let cost = answer.cost;
    assert!(cost.pause_decodes + cost.final_decodes >= 1, "{cost:?}");
    assert!(cost.audio_ms > 1000.0, "book_01 is over a second: {cost:?}");
    assert!(
        cost.stt_ms > 0.0 && cost.stt_cpu_ms >= cost.stt_ms,
        "{cost:?}"
    );
    assert!(cost.tts_ms > 0.0 && cost.cpu_ms() > cost.stt_ms, "{cost:?}");
    // The JSON-lines record: one line per turn, then the call.
    let file = std::fs::read_to_string(records.join(format!("{caller}.jsonl"))).unwrap();
    let lines: Vec<serde_json::Value> = file
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), summary.turns.len() + 1);
    assert_eq!(lines[1]["turn"]["reply"], answer.reply.as_str());
    assert!(lines[1]["turn"]["cost"]["stt_ms"]
        .as_f64()
        .is_some_and(|ms| ms > 0.0));
    assert_eq!(lines.last().unwrap()["type"], "call");
    assert!(lines.last().unwrap()["rtp"]["received"].as_u64().unwrap() > 50);
    // Both directions as WAV: the caller's speech in, the agent's replies out.
    let level = |name: String| {
        let mut r = hound::WavReader::open(records.join(name)).unwrap();
        let rate = r.spec().sample_rate;
        let s: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
        (
            s.len() as f64 / rate as f64,
            s.iter().filter(|x| x.unsigned_abs() > 1000).count() as f64 / rate as f64,
        )
    };
    let (in_len, in_loud) = level(format!("{caller}.in.wav"));
    let (out_len, out_loud) = level(format!("{caller}.out.wav"));
    let call_len = said.elapsed().as_secs_f64();
    assert!(
        in_len > call_len && out_len > call_len,
        "{in_len} {out_len} {call_len}"
    );
    assert!(
        in_loud > 0.3 && out_loud > 1.0,
        "speech in both: {in_loud} s in, {out_loud} s out"
    );
    // What the caller heard is at telephone level and never at full scale.
    let mut r = hound::WavReader::open(records.join(format!("{caller}.out.wav"))).unwrap();
    let rate = r.spec().sample_rate;
    let heard: Vec<f32> = r
        .samples::<i16>()
        .map(|s| s.unwrap() as f32 / 32768.0)
        .collect();
    let lufs = aiagc_models::level::loudness(&heard, rate).unwrap();
    assert!(
        (lufs - aiagc_models::level::TARGET_LUFS).abs() <= 2.0,
        "replies at {lufs:.1} LUFS"
    );
    assert!(
        heard.iter().all(|s| s.abs() < 0.95),
        "a sample near full scale"
    );
    // Scraped and parsed: the call, its turns and its RTP are counted.
    let (status, body) = http_get(web, "/metrics").await;
    assert_eq!(status, 200);
    let m = samples(&body);
    assert_eq!(m.get("aiagc_active_calls"), Some(&0.0), "{body}");
    assert_eq!(
        m.get("aiagc_calls_total{outcome=\"none\"}"),
        Some(&1.0),
        "{body}"
    );
    assert!(m["aiagc_turns_total"] >= 1.0);
    assert!(
        m["aiagc_turn_stage_seconds_count{stage=\"stt\"}"] >= 1.0,
        "{body}"
    );
    assert!(m["aiagc_rtp_packets_total{kind=\"received\"}"] > 50.0);
    assert!(
        m.contains_key("aiagc_speech_jobs{kind=\"answered\"}"),
        "{body}"
    );
    // Queue wait and STT speed per job; ARI connected once, nothing failed.
    assert!(m["aiagc_speech_queue_wait_seconds_count"] >= 2.0, "{body}");
    assert!(m["aiagc_stt_real_time_factor_count"] >= 1.0, "{body}");
    let rtf = m["aiagc_stt_real_time_factor_sum"] / m["aiagc_stt_real_time_factor_count"];
    assert!(rtf > 0.0 && rtf < 5.0, "{rtf}");
    assert_eq!(
        m.get("aiagc_ari_connection_total{kind=\"connects\"}"),
        Some(&1.0),
        "{body}"
    );
    assert_eq!(
        m.get("aiagc_errors_total{kind=\"stt\"}"),
        Some(&0.0),
        "{body}"
    );
    assert_eq!(
        m.get("aiagc_errors_total{kind=\"call_setup\"}"),
        Some(&0.0),
        "{body}"
    );
    assert_eq!(
        m.get("aiagc_rtp_jitter_seconds_count"),
        Some(&1.0),
        "{body}"
    );
    assert_eq!(m.get("aiagc_speech_queue_depth"), Some(&0.0), "{body}");
    // The call's document reached the webhook, signed, with what it needs.
    let t = Instant::now();
    while hook.stored().is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no document delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let posts = hook.posts();
    assert_eq!(posts.len(), 1);
    assert!(posts[0].signature_ok);
    let doc: serde_json::Value = serde_json::from_slice(&posts[0].body).unwrap();
    assert_eq!(doc["schema"], "aiagc.call/1");
    assert_eq!(doc["key"], posts[0].key.as_str());
    assert_eq!(doc["call"], caller.as_str());
    assert_eq!(doc["caller"]["number"], "+4930123456");
    assert_eq!(doc["ended_by"], "caller");
    assert_eq!(doc["turns"].as_array().unwrap().len(), summary.turns.len());
    let spoken = doc["turns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["input"] == "speech")
        .unwrap();
    assert_eq!(spoken["reply"], answer.reply.as_str());
    let latency = spoken["latency_ms"]["speech_end_to_reply"]
        .as_f64()
        .unwrap();
    assert!(
        (latency - speech_end.as_secs_f64() * 1000.0).abs() < 1.0,
        "{latency} vs {speech_end:?}"
    );
    assert!(doc["started_at"].as_str().unwrap() < doc["ended_at"].as_str().unwrap());
    assert!(doc["duration_s"].as_f64().unwrap() > call_len - 1.0);
    let files: Vec<&str> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files[0].ends_with(".jsonl") && files.iter().all(|f| std::path::Path::new(f).exists()));
    let (_, body) = http_get(web, "/metrics").await;
    assert_eq!(
        samples(&body).get("aiagc_deliveries_total{kind=\"delivered\"}"),
        Some(&1.0),
        "{body}"
    );
    assert_eq!(
        m.get("aiagc_rtp_packets_total{kind=\"rejected_source\"}"),
        Some(&0.0),
        "{body}"
    );
    // Nothing outlives the call.
    let t = Instant::now();
    while !(sim.alive() == Alive::default()
        && app.controller.active_calls() == 0
        && app.media.sockets() == 0)
    {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "leftovers: {:?}",
            sim.alive()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.drain(Duration::from_secs(1)).await, 0);
    let _ = std::fs::remove_dir_all(records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_transfers_to_a_person_and_a_draining_app_turns_callers_away() {
    let (sim, app, summaries, _) = start(31500..=31999, None).await;
    let caller = sim.place_call("aiagc", CallerScript::default()).unwrap();
    // Pressing 0 during the greeting interrupts it and asks for the team.
    let t = Instant::now();
    while !sim.received_for_caller(&caller).iter().any(loud) {
        assert!(t.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sim.send_dtmf(&caller, '0'));
    let summary = summary_of(&summaries, &mut Vec::new(), &caller).await;
    assert_eq!(summary.dtmf, vec!["0".to_owned()]);
    assert_eq!(summary.outcome.as_deref(), Some("transferred"));
    assert_eq!(summary.ended_by, "transfer");
    let greeting = &summary.turns[0];
    assert!(greeting.interrupted, "the key cut the greeting short");
    let continued = sim.events().into_iter().any(|e| {
        e["type"] == "StasisEnd"
            && e["channel"]["id"] == caller.as_str()
            && e["channel"]["dialplan"]["context"] == "from-ai-agent"
    });
    assert!(continued, "the caller left Stasis into from-ai-agent");

    // Draining: the call in progress goes on, a new caller is turned away.
    let busy = sim.place_call("aiagc", CallerScript::default()).unwrap();
    agent_spoke(&sim, &busy, Instant::now()).await;
    let drained = tokio::spawn(app.drain(Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let late = sim.place_call("aiagc", CallerScript::default()).unwrap();
    let t = Instant::now();
    while !sim
        .events()
        .iter()
        .any(|e| e["type"] == "ChannelDestroyed" && e["channel"]["id"] == late.as_str())
    {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{late} still up: {:?}",
            sim.alive()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        sim.received_for_caller(&late).is_empty(),
        "no media for a turned-away caller"
    );
    assert!(
        !drained.is_finished(),
        "the drain waits for the call in progress"
    );
    sim.hangup(&busy);
    assert_eq!(drained.await.unwrap(), 0, "no call had to be cut");
}

/// Jobs of a turn that is over are dropped unanswered, and an older pause
/// is superseded by a newer one; the current turn is answered.
#[test]
fn stale_jobs_are_cancelled() {
    let pool = pool();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let call = Arc::new(CallShared::new(
        "c1".into(),
        Box::new(Scenario::praxis().session()),
        tx,
    ));
    call.current.store(5, Ordering::SeqCst);
    call.latest_pause.store(9, Ordering::SeqCst);
    call.latest_silence.store(9, Ordering::SeqCst);
    let submit = |turn, work| {
        assert!(pool
            .submitter()
            .submit(Job {
                call: call.clone(),
                turn,
                work,
                handed_over: Instant::now(),
                deadline: Instant::now() + Duration::from_secs(1),
                speculative: false,
            })
            .is_ok());
    };
    let audio = vec![0.0f32; 16000];
    submit(
        4,
        Work::Utterance {
            audio: audio.clone(),
            transcript: Some(Box::new(("Termin vereinbaren".into(), Duration::ZERO))),
            ended_by_hint: false,
            ended_by_model: false,
        },
    );
    submit(
        5,
        Work::Pause {
            id: 8,
            audio: audio.clone(),
            silence: 0,
        },
    );
    submit(
        5,
        Work::TurnCheck {
            first: 8,
            id: 7,
            audio: audio.clone(),
        },
    );
    submit(5, Work::Dtmf("3".into()));
    let mut answered = Vec::new();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) && answered.is_empty() {
        match rx.try_recv() {
            Ok(SpeechOut::Answered(r, _)) => answered.push(r),
            Ok(SpeechOut::Partial { pause, .. }) => {
                panic!("superseded pause {pause} was transcribed")
            }
            Ok(SpeechOut::TurnScore { pause, .. }) => panic!("superseded pause {pause} was scored"),
            Ok(SpeechOut::Audio(a)) => assert_eq!(a.turn, 5),
            Ok(SpeechOut::Sound { id, .. }) => panic!("no sound {id} was asked for"),
            Ok(SpeechOut::Shed { turn, .. }) => panic!("nothing of turn {turn} gave way"),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0].turn, 5);
    assert_eq!(answered[0].input, "dtmf");
    // The dropped jobs cost nothing: the keys' turn decoded no audio.
    let cost = answered[0].cost;
    assert_eq!(cost.decodes(), 0, "{cost:?}");
    assert_eq!(cost.audio_ms, 0.0);
    assert!(cost.tts_ms > 0.0, "its reply was synthesized: {cost:?}");
    assert!(
        answered[0].reply.contains("absagen"),
        "{}",
        answered[0].reply
    );
    assert_eq!(pool.stats.stale.load(Ordering::Relaxed), 3);
    pool.shutdown();
}

/// A caller who, as on a real Asterisk, sends no RTP between utterances:
/// every utterance after the first is heard as well as the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utterances_after_silent_gaps_are_understood() {
    let records = std::env::temp_dir().join(format!("aiagc-gaps-{}", std::process::id()));
    // As `aiagc serve` and the demo run it: with the Smart Turn model.
    let model = Arc::new(
        WhisperModel::load(
            &aiagc_models::manifest::default_dir().join(aiagc_models::WHISPER_DEFAULT),
        )
        .unwrap(),
    );
    let pool = SpeechPool::start_with_turn_model(
        model,
        1,
        8,
        SttConfig::default(),
        Some(aiagc_models::manifest::default_dir()),
    )
    .unwrap();
    // A phone with silence suppression: no RTP between utterances, as a
    // real Asterisk sends none while a Local caller waits.
    let vad = SimConfig {
        silence_suppression: true,
        ..SimConfig::default()
    };
    let (sim, app, summaries, _metrics) =
        start_with(31500..=31599, Some(records.clone()), pool, vad, None).await;
    let caller = sim.place_call("aiagc", CallerScript::default()).unwrap();
    let bridged = Instant::now();
    agent_spoke(&sim, &caller, bridged).await;
    for utterance in [
        wav16("book_01_v2_r150_16k.wav"),
        wav16("book_10_v2_r150_16k.wav"),
    ] {
        assert!(sim.say(&caller, &utterance));
        let said = Instant::now();
        agent_spoke(&sim, &caller, said + Duration::from_millis(500)).await;
    }
    sim.hangup(&caller);
    let summary = summary_of(&summaries, &mut Vec::new(), &caller).await;
    let heard: Vec<&str> = summary
        .turns
        .iter()
        .filter(|t| t.input == "speech")
        .map(|t| t.transcript.as_str())
        .collect();
    eprintln!("heard {heard:?}; records in {}", records.display());
    assert_eq!(heard.len(), 2, "{heard:?}");
    assert!(heard[0].to_lowercase().contains("termin"), "{heard:?}");
    assert!(heard[1].to_lowercase().contains("elf"), "{heard:?}");
    app.drain(Duration::from_secs(1)).await;
}
