//! Sounds over the agent's reply, through the whole app on the simulator:
//! German listener feedback (espeak-ng), noises (sox) and real
//! interruptions are spoken into the practice's greeting, 1.2 s after it
//! began. Feedback and noise pause it and it plays on; an interruption
//! stops it for good and is answered. The same over a line that echoes the
//! agent (120 ms, 12 dB). Figures with `--nocapture`.

mod common;
use common::*;

use aiagc::runtime::app::App;
use aiagc::runtime::conversation::BargeIn;
use aiagc::runtime::media::{CallSummary, MediaConfig};
use aiagc::runtime::speech::SpeechPool;
use aiagc_ari::controller::ControllerConfig;
use aiagc_ari::ports::PortRange;
use aiagc_ari::sim::{CallerScript, EchoPath, SimConfig, Simulator};
use aiagc_engine::ResumeFrom;
use aiagc_models::stt::{SttConfig, WhisperModel};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One sound of `fixtures/generated/overlap/overlaps.tsv`.
#[derive(Clone)]
struct Sound {
    file: String,
    kind: String,
    pcm: Vec<i16>,
}

fn sounds() -> Vec<Sound> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/generated/overlap");
    let list =
        std::fs::read_to_string(dir.join("overlaps.tsv")).expect("fixtures (run scripts/setup.sh)");
    list.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (file, kind) = (f.next()?.to_owned(), f.next()?.to_owned());
            let pcm = hound::WavReader::open(dir.join(&file))
                .ok()?
                .samples::<i16>()
                .filter_map(Result::ok)
                .collect();
            Some(Sound { file, kind, pcm })
        })
        .collect()
}

async fn start(
    ports: std::ops::RangeInclusive<u16>,
    echo: Option<EchoPath>,
    from: ResumeFrom,
) -> (
    Arc<Simulator>,
    App,
    crossbeam_channel::Receiver<CallSummary>,
) {
    let model = Arc::new(
        WhisperModel::load(
            &aiagc_models::manifest::default_dir().join(aiagc_models::WHISPER_DEFAULT),
        )
        .expect("model (run scripts/setup.sh)"),
    );
    let stt = SttConfig {
        threads: 1,
        ..SttConfig::default()
    };
    let pool = SpeechPool::start(model, 2, 16, stt).unwrap();
    let sim = Simulator::start(SimConfig {
        echo,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let barge_in = match BargeIn::default() {
        BargeIn::Resume {
            commit_after,
            min_rest,
            ..
        } => BargeIn::Resume {
            from,
            commit_after,
            min_rest,
        },
        b => b,
    };
    let app = App::start(
        sim.client_config("aiagc"),
        PortRange::new("127.0.0.1".parse().unwrap(), ports),
        MediaConfig {
            barge_in,
            ..MediaConfig::default()
        },
        ControllerConfig::default(),
        pool,
        praxis(),
        Some(tx),
    )
    .unwrap();
    let t = Instant::now();
    while sim.connections() == 0 {
        assert!(t.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (Arc::new(sim), app, rx)
}

/// What one call with `sound` (or none) spoken into the greeting left.
struct Heard {
    file: String,
    kind: String,
    summary: Option<CallSummary>,
    /// Reply audio the caller heard, ms (20 ms per loud packet).
    heard_ms: u64,
    /// From the sound's first frame to the barge-in.
    stopped_after: Option<Duration>,
}

async fn call(sim: Arc<Simulator>, sound: Option<Sound>) -> (Heard, String) {
    let caller = sim
        .place_call("aiagc", CallerScript::default())
        .expect("call placed");
    // The greeting starts.
    let t = Instant::now();
    let began = loop {
        if let Some(r) = sim.received_for_caller(&caller).iter().find(|r| loud(r)) {
            break r.at;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no greeting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut answer_by = Instant::now();
    if let Some(s) = &sound {
        tokio::time::sleep_until((began + Duration::from_millis(1200)).into()).await;
        assert!(sim.say(&caller, &s.pcm));
        // An interruption's answer comes after its end and the hangover.
        answer_by = Instant::now() + Duration::from_millis(s.pcm.len() as u64 / 16 + 3000);
    }
    // Until the agent has been quiet for 2.5 s (a pause is shorter).
    let t = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if Instant::now() < answer_by {
            continue;
        }
        let last = sim
            .received_for_caller(&caller)
            .iter()
            .filter(|r| loud(r))
            .map(|r| r.at)
            .max();
        if last.is_some_and(|l| l.elapsed() > Duration::from_millis(2500)) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the agent never fell silent"
        );
    }
    let heard_ms = sim
        .received_for_caller(&caller)
        .iter()
        .filter(|r| loud(r))
        .count() as u64
        * 20;
    let spoken = sim.spoken(&caller).first().copied();
    sim.hangup(&caller);
    let (file, kind) = match &sound {
        Some(s) => (s.file.clone(), s.kind.clone()),
        None => ("(none)".into(), "control".into()),
    };
    (
        Heard {
            file,
            kind,
            summary: None,
            heard_ms,
            stopped_after: spoken.map(|s| s.elapsed()),
        },
        caller,
    )
}

/// Runs every sound (and two calls without one) three calls at a time.
async fn run_all(
    sim: &Arc<Simulator>,
    summaries: &crossbeam_channel::Receiver<CallSummary>,
    sounds: &[Sound],
) -> Vec<Heard> {
    let mut plan: Vec<Option<Sound>> = vec![None, None];
    plan.extend(sounds.iter().cloned().map(Some));
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for chunk in plan.chunks(3) {
        let mut set = tokio::task::JoinSet::new();
        for s in chunk.iter().cloned() {
            set.spawn(call(sim.clone(), s));
        }
        while let Some(r) = set.join_next().await {
            let (mut h, caller) = r.expect("call task");
            let summary = summary_of(summaries, &mut seen, &caller).await;
            // The barge-in, from the sound's first frame (the call's
            // `stopped_after` holds the time since then, now stale).
            h.stopped_after = None;
            if let (Some(b), Some(s)) = (summary.barge_ins.first(), sim.spoken(&caller).first()) {
                h.stopped_after = Some(b.saturating_duration_since(*s));
            }
            h.summary = Some(summary);
            out.push(h);
        }
    }
    out
}

/// Counts and prints; returns (feedback resumed, feedback, noise dropped,
/// interruptions answered, interruptions, replies stopped or turns taken
/// in the calls nobody spoke into).
fn report(label: &str, heard: &[Heard]) -> (usize, usize, usize, usize, usize, usize) {
    let control_ms = heard
        .iter()
        .filter(|h| h.kind == "control")
        .map(|h| h.heard_ms)
        .max()
        .unwrap_or(0);
    let mut fb = (0, 0);
    let mut noise_dropped = 0;
    let mut int = (0, 0);
    let mut control_overlaps = 0;
    let mut lost = Vec::new();
    let mut paused = Vec::new();
    eprintln!("{label}: greeting heard whole = {control_ms} ms");
    for h in heard {
        let s = h.summary.as_ref().expect("summary");
        let o = s.overlaps.first();
        let verdict = o.map_or("no barge-in".to_owned(), |o| {
            format!(
                "{} ({}, {:?}, {} ms)",
                o.outcome,
                o.why,
                o.heard,
                o.voiced.as_millis()
            )
        });
        let answered = s.turns.iter().any(|t| t.input == "speech");
        eprintln!(
            "  {:<16} {:<12} {:<52} heard {:>5} ms{}{}",
            h.file,
            h.kind,
            verdict,
            h.heard_ms,
            h.stopped_after
                .filter(|_| o.is_some())
                .map(|d| format!(", paused {} ms after the sound began", d.as_millis()))
                .unwrap_or_default(),
            if answered { ", answered as a turn" } else { "" }
        );
        let resumed = o.is_none_or(|o| o.outcome == "resumed") && !answered;
        match h.kind.as_str() {
            "control" => {
                control_overlaps += s.overlaps.iter().filter(|o| o.outcome == "dropped").count()
                    + usize::from(answered)
            }
            "backchannel" => {
                fb.1 += 1;
                if resumed {
                    fb.0 += 1;
                    lost.push(control_ms as i64 - h.heard_ms as i64);
                    if let Some(o) = o {
                        paused.push(o.paused.as_millis() as i64);
                    }
                }
            }
            "noise" => {
                if !resumed {
                    noise_dropped += 1;
                } else if let Some(o) = o {
                    paused.push(o.paused.as_millis() as i64);
                }
            }
            // An interruption the engine did not take for a barge-in
            // (under its threshold over the reply) says nothing of the
            // verdict; it is listed above.
            _ if o.is_some() => {
                int.1 += 1;
                if o.is_some_and(|o| o.outcome == "dropped") && answered {
                    int.0 += 1;
                }
            }
            _ => {}
        }
    }
    lost.sort_unstable();
    paused.sort_unstable();
    let median = |v: &[i64]| v.get(v.len() / 2).copied().unwrap_or(0);
    eprintln!(
        "{label}: feedback resumed {}/{}, noise dropped {noise_dropped}, interruptions stopped and answered {}/{}, \
         control overlaps {control_overlaps}; reply heard less than whole: median {} ms (range {:?}); paused median {} ms",
        fb.0,
        fb.1,
        int.0,
        int.1,
        median(&lost),
        (lost.first(), lost.last()),
        median(&paused),
    );
    (fb.0, fb.1, noise_dropped, int.0, int.1, control_overlaps)
}

/// What both lines must show: no stop and no turn where nobody spoke, at
/// least 80 % of the feedback played on, no noise stopping the reply, and
/// every interruption that paused it stopped and answered.
fn check(label: &str, heard: &[Heard]) {
    let (fb_ok, fb, noise_dropped, int_ok, int, control) = report(label, heard);
    assert_eq!(control, 0, "{label}: a stop or a turn where nobody spoke");
    assert!(
        fb_ok * 10 >= fb * 8,
        "{label}: feedback resumed {fb_ok}/{fb}"
    );
    assert_eq!(noise_dropped, 0, "{label}: a noise stopped the reply");
    assert_eq!(
        int_ok, int,
        "{label}: every interruption stops the reply and is answered"
    );
    assert!(
        int >= 2,
        "{label}: interruptions that paused the reply: {int} of 3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_and_noise_over_a_reply_resume_it_and_interruptions_stop_it() {
    let all = sounds();
    assert!(all.len() >= 30, "{} sounds", all.len());
    // `AIAGC_OVERLAP_RESUME=position` measures the other way of playing on.
    let from = match std::env::var("AIAGC_OVERLAP_RESUME").as_deref() {
        Ok("position") => ResumeFrom::Position,
        _ => ResumeFrom::SentenceStart,
    };
    let (sim, _app, summaries) = start(34000..=34099, None, from).await;
    let heard = run_all(&sim, &summaries, &all).await;
    check("clean line", &heard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_an_echoing_line_the_reply_plays_on_too() {
    let echo = EchoPath {
        delay: Duration::from_millis(120),
        attenuation_db: 12.0,
        noise_dbfs: Some(-60.0),
    };
    // One voice of each feedback word, the noises, the interruptions.
    let some: Vec<Sound> = sounds()
        .into_iter()
        .filter(|s| s.kind != "backchannel" || s.file.ends_with("_v0.wav"))
        .collect();
    let (sim, _app, summaries) = start(34100..=34199, Some(echo), ResumeFrom::Position).await;
    let heard = run_all(&sim, &summaries, &some).await;
    check("echoing line", &heard);
}
