//! Whole calls through a real Asterisk 22.10.1 (built by the setup, private
//! instance on loopback): a `Local/` channel is originated into the app; its
//! other half runs a dialplan that plays German fixture speech and
//! `Record()`s what the caller hears. The assertions are on that recording
//! (level, and whisper's transcript of it against the reply text), on the
//! call record, and on what is left afterwards (channels, bridges, sockets,
//! tasks).

mod common;
use common::asterisk::{read_wav, rms, Asterisk, Setup};
use common::*;

use aiagc::runtime::app::App;
use aiagc::runtime::media::{CallSummary, MediaConfig};
use aiagc::runtime::speech::SpeechPool;
use aiagc_ari::client::{AriClient, Originate};
use aiagc_ari::controller::ControllerConfig;
use aiagc_ari::ports::PortRange;
use aiagc_engine::Codec;
use aiagc_models::stt::{SttConfig, WhisperModel};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

fn model() -> Arc<WhisperModel> {
    static MODEL: OnceLock<Arc<WhisperModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            Arc::new(
                WhisperModel::load(
                    &aiagc_models::manifest::default_dir().join(aiagc_models::WHISPER_DEFAULT),
                )
                .expect("model (run scripts/setup.sh)"),
            )
        })
        .clone()
}

/// A recording as 16 kHz float samples for whisper.
fn as_16k(pcm: &[i16], rate: u32) -> Vec<f32> {
    let x: Vec<f32> = pcm.iter().map(|&s| s as f32 / 32768.0).collect();
    if rate == 16000 {
        return x;
    }
    let mut r = aiagc_engine::resample::Resampler::new(rate, 16000).unwrap();
    let mut out = Vec::new();
    let mut sink = |o: &[f32]| out.extend_from_slice(o);
    let delay = r.delay_samples();
    r.push(&x, &mut sink).unwrap();
    r.flush(&mut sink).unwrap();
    out.drain(..delay.min(out.len()));
    out
}

/// What whisper hears in a recording.
fn transcribe(path: &Path) -> String {
    let (pcm, rate) = read_wav(path);
    let mut w = model().worker().unwrap();
    w.transcribe(&as_16k(&pcm, rate), &SttConfig::default())
        .map(|t| t.text)
        .unwrap_or_default()
}

/// The app against `ast`, in `format`, on `ports`.
struct Rig {
    app: Option<App>,
    client: AriClient,
    summaries: crossbeam_channel::Receiver<CallSummary>,
    seen: Vec<CallSummary>,
}

impl Rig {
    async fn start(ast: &Asterisk, format: Codec, ports: std::ops::RangeInclusive<u16>) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        let pool = SpeechPool::start(model(), 1, 8, SttConfig::default()).unwrap();
        let app = App::start(
            ast.ari("aiagc"),
            PortRange::new("127.0.0.1".parse().unwrap(), ports),
            MediaConfig {
                // Replies are awaited however slow the machine; the filler
                // has its own tests.
                filler_after: None,
                ..MediaConfig::default()
            },
            ControllerConfig {
                format,
                ..ControllerConfig::default()
            },
            pool,
            praxis(),
            Some(tx),
        )
        .unwrap();
        let client = AriClient::new(ast.ari("aiagc")).unwrap();
        let t = Instant::now();
        while !app.controller.is_connected() || client.application().await.is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "app not registered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            app: Some(app),
            client,
            summaries: rx,
            seen: Vec::new(),
        }
    }

    /// Originates `Local/s@context` into the app; returns the `;1` channel.
    async fn call(&self, context: &str) -> String {
        let ch = self
            .client
            .originate(&Originate {
                endpoint: format!("Local/s@{context}"),
                app: Some("aiagc".into()),
                app_args: Some("inbound".into()),
                ..Originate::default()
            })
            .await
            .unwrap();
        ch.id
    }

    async fn summary(&mut self, caller: &str, within: Duration) -> CallSummary {
        let t = Instant::now();
        loop {
            self.seen.extend(self.summaries.try_iter());
            if let Some(i) = self.seen.iter().position(|s| s.call == caller) {
                return self.seen.remove(i);
            }
            assert!(t.elapsed() < within, "no summary for {caller}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Nothing of any call is left: on Asterisk (channels, bridges), in the
    /// app (sockets, calls, setup/teardown tasks).
    async fn assert_nothing_left(&self) {
        let app = self.app.as_ref().unwrap();
        let t = Instant::now();
        loop {
            let channels = self.client.channels().await.unwrap();
            let bridges = self.client.bridges().await.unwrap();
            let done = channels.is_empty()
                && bridges.is_empty()
                && app.media.sockets() == 0
                && app.controller.active_calls() == 0
                && app.controller.tasks() == 0;
            if done {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "left behind: channels {:?}, bridges {:?}, sockets {}, calls {}, tasks {}",
                channels.iter().map(|c| &c.name).collect::<Vec<_>>(),
                bridges.iter().map(|b| &b.id).collect::<Vec<_>>(),
                app.media.sockets(),
                app.controller.active_calls(),
                app.controller.tasks()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.drain(Duration::from_secs(1)).await;
        }
    }
}

/// Words of the reply whisper found in the recording, as a fraction
/// (folded, words of four letters or more: the ones whisper cannot get
/// right by chance).
fn heard_fraction(reply: &str, heard: &str) -> f64 {
    let fold = aiagc_models::dialogue::text::fold;
    let heard: Vec<String> = fold(heard)
        .split(|c: char| !c.is_alphanumeric())
        .map(str::to_owned)
        .collect();
    let words: Vec<String> = fold(reply)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 4)
        .map(str::to_owned)
        .collect();
    if words.is_empty() {
        return 1.0;
    }
    let found = words.iter().filter(|w| heard.contains(w)).count();
    found as f64 / words.len() as f64
}

/// The caller of a one-turn call: hears the greeting, asks for an
/// appointment, hears the question for day and time, hangs up.
fn one_turn_dialplan(ast: &Asterisk) -> String {
    let book = ast.add_sound("book", &wav16("book_01_v0_r150_16k.wav"));
    format!(
        "[caller]\n\
         exten => s,1,Answer()\n\
         same => n,Record({{dir}}/rec/greeting.wav16,0,9,qkx)\n\
         same => n,Playback({book})\n\
         same => n,Record({{dir}}/rec/reply.wav16,0,8,qkx)\n\
         same => n,Hangup()\n"
    )
}

async fn one_turn_call(format: Codec, ports: std::ops::RangeInclusive<u16>) {
    let mut ast = Asterisk::start(Setup::default());
    let dialplan = one_turn_dialplan(&ast);
    std::fs::write(ast.dir.join("etc/extensions.conf"), dialplan).unwrap();
    ast.cli("dialplan reload");
    let mut rig = Rig::start(&ast, format, ports).await;
    let caller = rig.call("caller").await;
    let summary = rig.summary(&caller, Duration::from_secs(60)).await;
    let rec = ast.dir.join("rec");
    let greeting = summary
        .turns
        .iter()
        .find(|t| t.input == "start")
        .expect("a greeting turn");
    let reply = summary
        .turns
        .iter()
        .find(|t| t.input == "speech")
        .unwrap_or_else(|| panic!("no caller turn: {:?}", summary.turns));
    assert!(
        aiagc_models::dialogue::text::fold(&reply.transcript).contains("termin"),
        "aiagc understood the caller: {:?}",
        reply.transcript
    );
    for (file, said) in [
        ("greeting.wav16", &greeting.reply),
        ("reply.wav16", &reply.reply),
    ] {
        let path = rec.join(file);
        let (pcm, rate) = read_wav(&path);
        let level = rms(&pcm);
        let heard = transcribe(&path);
        let fraction = heard_fraction(said, &heard);
        eprintln!(
            "{format:?} {file}: {rate} Hz, {:.1} s, RMS {level:.3}, heard {fraction:.2} of {said:?} in {heard:?}",
            pcm.len() as f64 / rate as f64
        );
        assert!(
            level > 0.02,
            "{format:?}: the caller heard silence in {file} (RMS {level})"
        );
        assert!(
            fraction >= 0.5,
            "{format:?}: the caller did not hear the reply in {file}: {said:?} vs {heard:?}"
        );
    }
    rig.assert_nothing_left().await;
    rig.stop().await;
    ast.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ulaw_call_is_heard_both_ways() {
    one_turn_call(Codec::Ulaw, 35000..=35009).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alaw_call_is_heard_both_ways() {
    one_turn_call(Codec::Alaw, 35010..=35019).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g722_call_is_heard_both_ways() {
    one_turn_call(Codec::G722, 35020..=35029).await;
}
