//! A whole call through the simulator: ARI controller, engine-driven media
//! on real UDP sockets, whisper STT, a dialogue and espeak-ng TTS; the
//! reply is heard back at the simulated caller.

use aiagc::runtime::media::EngineMedia;
use aiagc::runtime::speech::{Acknowledge, SpeechPool, TurnRecord};
use aiagc_ari::client::AriClient;
use aiagc_ari::controller::{Controller, ControllerConfig};
use aiagc_ari::ports::PortRange;
use aiagc_ari::sim::{Alive, CallerScript, SimConfig, Simulator};
use aiagc_ari::stream;
use aiagc_engine::Codec;
use aiagc_models::stt::{SttConfig, WhisperModel};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

fn wav16(name: &str) -> Vec<i16> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/generated/de")
        .join(name);
    let mut r = hound::WavReader::open(&path).expect("fixtures (run scripts/setup.sh)");
    r.samples::<i16>().map(|s| s.unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_is_heard_and_answered() {
    let model = Arc::new(
        WhisperModel::load(&aiagc_models::manifest::default_dir().join(aiagc_models::WHISPER_GGML))
            .expect("model (run scripts/setup.sh)"),
    );
    let (records_tx, records) = crossbeam_channel::unbounded::<TurnRecord>();
    let pool = SpeechPool::start(
        model,
        1,
        8,
        SttConfig::default(),
        || Box::new(Acknowledge),
        records_tx,
    )
    .unwrap();
    let media = Arc::new(EngineMedia::new(
        PortRange::new("127.0.0.1".parse().unwrap(), 31000..=31999),
        pool.submitter(),
    ));

    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let client = AriClient::new(sim.client_config("aiagc")).unwrap();
    let controller = Controller::new(
        client,
        media.clone(),
        ControllerConfig {
            format: Codec::Slin16,
            hangup_on_setup_failure: true,
        },
    );
    let (tx, rx) = mpsc::channel(256);
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(stream::run(sim.client_config("aiagc"), tx, stop_rx));
    tokio::spawn(controller.clone().run(rx));
    let t = Instant::now();
    while sim.connections() == 0 {
        assert!(t.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    // The caller says one sentence, then listens.
    let mut audio = vec![0i16; 8000];
    audio.extend(wav16("greet_02_v0_r150_16k.wav"));
    let speech_end =
        Duration::from_millis(500) + Duration::from_secs_f64(audio.len() as f64 / 16000.0 - 0.5);
    let caller = sim
        .place_call(
            "aiagc",
            CallerScript {
                audio,
                ..Default::default()
            },
        )
        .unwrap();
    let bridged = Instant::now();

    // The turn that answers the sentence (under load the endpointer may
    // first hand over a fragment; those turns are answered too).
    let record = tokio::task::spawn_blocking(move || {
        let until = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while let Ok(r) = records.recv_timeout(until.saturating_duration_since(Instant::now())) {
            if r.transcript.to_lowercase().contains("termin") {
                return Ok(r);
            }
            seen.push(r);
        }
        Err(seen)
    })
    .await
    .unwrap()
    .unwrap_or_else(|seen| panic!("no turn heard the sentence: {seen:?}"));
    assert!(record.reply.starts_with("Sie sagten"), "{record:?}");

    // The reply reaches the caller: marked, non-silent slin16 packets.
    let t = Instant::now();
    let reply_at = loop {
        let rec = sim.received_for_caller(&caller);
        if let Some(first) = rec.iter().find(|r| r.marker) {
            let loud = rec
                .iter()
                .filter(|r| {
                    r.payload
                        .chunks_exact(2)
                        .any(|s| i16::from_be_bytes([s[0], s[1]]).unsigned_abs() > 2000)
                })
                .count();
            if loud > 20 {
                break first.at;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(10), "no reply audio");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let latency = reply_at
        .saturating_duration_since(bridged)
        .saturating_sub(speech_end);
    eprintln!("turn: {:?} -> {:?}; STT {:?}, first TTS {:?}; reply heard {:?} after the caller's speech ended", record.transcript, record.reply, record.stt, record.tts_first_audio, latency);
    assert!(latency < Duration::from_secs(3), "{latency:?}");

    sim.hangup(&caller);
    let t = Instant::now();
    while !(sim.alive() == Alive::default()
        && controller.active_calls() == 0
        && controller.tasks() == 0
        && media.sockets() == 0)
    {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "leftovers: {:?}",
            sim.alive()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop.send(true);
}
