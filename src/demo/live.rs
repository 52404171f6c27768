//! `aiagc demo` on the real path: the embedded Asterisk simulator, the ARI
//! controller, engine-driven media on UDP sockets, whisper STT, a dialogue
//! and espeak-ng TTS, in real time. Latency is measured where a caller
//! would hear it: from the end of the caller's speech (known from the
//! script) to the first reply packet arriving at the simulator.

use super::{
    fixtures_dir, latency_percentiles, load_scripts, DemoArgs, Latency, Report, RtpSummary,
    Summary, Turn,
};
use aiagc::runtime::media::EngineMedia;
use aiagc::runtime::speech::{Acknowledge, SpeechPool, TurnRecord};
use aiagc_ari::client::AriClient;
use aiagc_ari::controller::{Controller, ControllerConfig};
use aiagc_ari::ports::PortRange;
use aiagc_ari::sim::{CallerScript, RtpRecord, SimConfig, Simulator};
use aiagc_ari::stream;
use aiagc_engine::impair::Impairment;
use aiagc_engine::Codec;
use aiagc_models::stt::{word_error_rate, SttConfig, WhisperModel};
use anyhow::{bail, Context, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(super) async fn run(args: &DemoArgs) -> Result<()> {
    let codec = Codec::from_asterisk_format(&args.codec)?;
    let scripts = load_scripts(&fixtures_dir(&args.fixtures), 16000)?;
    let model_path = aiagc_models::manifest::default_dir().join(aiagc_models::WHISPER_GGML);
    let model = Arc::new(
        WhisperModel::load(&model_path).context("whisper model (run `bash scripts/setup.sh`)")?,
    );
    let (records_tx, records_rx) = crossbeam_channel::unbounded::<TurnRecord>();
    let pool = SpeechPool::start(
        model,
        1,
        16,
        SttConfig::default(),
        || Box::new(Acknowledge),
        records_tx,
    )?;
    let media = Arc::new(EngineMedia::new(
        PortRange::new("127.0.0.1".parse()?, 32000..=32999),
        pool.submitter(),
    ));

    let impairment = Impairment {
        delay: Duration::from_millis(10),
        jitter: Duration::from_millis(args.jitter_ms),
        loss: args.loss,
        ..Default::default()
    };
    let sim = Simulator::start(SimConfig {
        impairment,
        seed: args.seed,
        ..SimConfig::default()
    })
    .await?;
    let client = AriClient::new(sim.client_config("aiagc"))?;
    let controller = Controller::new(
        client,
        media.clone(),
        ControllerConfig {
            format: codec,
            hangup_on_setup_failure: true,
        },
    );
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(stream::run(sim.client_config("aiagc"), tx, stop_rx));
    tokio::spawn(controller.clone().run(rx));
    let started = Instant::now();
    while sim.connections() == 0 {
        if started.elapsed() > Duration::from_secs(5) {
            bail!("the app did not register with the simulator");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;

    if !args.json {
        println!(
            "aiagc demo: {} German callers through the Asterisk simulator, {} externalMedia, {}% loss, 10+{} ms jitter; whisper base STT, espeak-ng TTS",
            scripts.len(),
            codec.asterisk_format(),
            args.loss * 100.0,
            args.jitter_ms
        );
        println!("the dialogue is a stand-in until the scenario engine lands: it repeats what it heard\n");
    }
    let mut turns = Vec::new();
    for script in &scripts {
        let audio = script.pcm.clone();
        let caller = sim
            .place_call(
                "aiagc",
                CallerScript {
                    args: vec!["inbound".into()],
                    number: "+4930123456".into(),
                    audio,
                    hangup_after: Some(Duration::from_millis(2500)),
                },
            )
            .map_err(anyhow::Error::msg)?;
        // Follow the call until the caller hangs up, keeping what the
        // simulator received (it forgets a call's packets when it ends).
        let mut media_start = None;
        let mut received: Vec<RtpRecord> = Vec::new();
        let mut barge_ins = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if media_start.is_none() {
                media_start = sim.media_started(&caller);
            }
            let now_received = sim.received_for_caller(&caller);
            if now_received.len() >= received.len() {
                received = now_received;
            }
            let b = media.barge_ins(&caller);
            if b.len() >= barge_ins.len() {
                barge_ins = b;
            }
            if media_start.is_some() && controller.active_calls() == 0 {
                break;
            }
            if Instant::now() > deadline {
                bail!("call {caller} did not end");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let t0 = media_start.context("media never started")?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut records: Vec<TurnRecord> =
            records_rx.try_iter().filter(|r| r.call == caller).collect();
        records.sort_by_key(|r| r.turn);
        for (i, (start, end, text)) in script.segments.iter().enumerate() {
            let speech_end = t0 + Duration::from_millis(*end);
            let speech_start = t0 + Duration::from_millis(*start);
            // The turn whose utterance was handed over after this speech ended.
            let record = records.iter().find(|r| {
                r.handed_over > speech_end && r.handed_over < speech_end + Duration::from_secs(3)
            });
            let next_start = script
                .segments
                .get(i + 1)
                .map(|s| t0 + Duration::from_millis(s.0))
                .unwrap_or(speech_end + Duration::from_secs(10));
            // Its reply: the first talk-spurt after the utterance was handed
            // over (an earlier one is the previous turn's reply).
            let after = record.map_or(speech_end, |r| r.handed_over);
            let reply = received
                .iter()
                .find(|r| r.marker && r.at > after && r.at < next_start + Duration::from_secs(2));
            turns.push(Turn {
                call: script.name.clone(),
                reference: text.clone(),
                transcript: record.map(|r| r.transcript.clone()),
                reply: record.map(|r| r.reply.clone()).unwrap_or_default(),
                barge_in: barge_ins
                    .iter()
                    .any(|b| *b > speech_start && *b < speech_end),
                speech_ms: [*start, *end],
                latency_ms: Latency {
                    endpoint: record
                        .map(|r| ms(r.handed_over.saturating_duration_since(speech_end)))
                        .unwrap_or(f64::NAN),
                    stt: record.map(|r| ms(r.stt)),
                    dialogue: record.map(|r| ms(r.dialogue)),
                    tts_first_audio: record.map(|r| ms(r.tts_first_audio)),
                    total: reply
                        .map(|r| ms(r.at.saturating_duration_since(speech_end)))
                        .unwrap_or(f64::NAN),
                },
            });
        }
    }
    let _ = stop.send(true);
    pool.shutdown();

    let heard: Vec<f64> = turns
        .iter()
        .map(|t| word_error_rate(&t.reference, t.transcript.as_deref().unwrap_or("")))
        .collect();
    let wer = heard.iter().sum::<f64>() / heard.len().max(1) as f64;
    let answered = turns.iter().filter(|t| t.transcript.is_some()).count();
    let report = Report {
        codec: codec.asterisk_format().to_owned(),
        summary: Summary {
            calls: scripts.len(),
            turns: answered,
            expected_turns: turns.len(),
            wer: Some(wer),
            completed_tasks: None,
            latency_ms: latency_percentiles(&turns),
            rtp: RtpSummary::default(),
        },
        turns,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    for t in &report.turns {
        println!("{} · caller:  {}", t.call, t.reference);
        println!(
            "{:>w$}   heard:   {}",
            "",
            t.transcript.as_deref().unwrap_or("(no answer)"),
            w = t.call.len()
        );
        println!(
            "{:>w$}   agent:   {}{}",
            "",
            t.reply,
            if t.barge_in {
                "   [caller barged in]"
            } else {
                ""
            },
            w = t.call.len()
        );
        let l = &t.latency_ms;
        println!(
            "{:>w$}   latency: endpoint {:.0} ms + STT {:.0} ms + dialogue {:.1} ms + TTS first audio {:.0} ms → heard after {:.0} ms\n",
            "",
            l.endpoint,
            l.stt.unwrap_or(f64::NAN),
            l.dialogue.unwrap_or(f64::NAN),
            l.tts_first_audio.unwrap_or(f64::NAN),
            l.total,
            w = t.call.len()
        );
    }
    let s = &report.summary;
    println!(
        "{} of {} turns answered; WER {:.2}; turn latency p50 {:.0} ms, p95 {:.0} ms (the 500 ms endpointing hangover included)",
        s.turns, s.expected_turns, wer, s.latency_ms.p50, s.latency_ms.p95
    );
    if s.turns == 0 {
        bail!("no turn was answered");
    }
    Ok(())
}
