//! `aiagc demo` on the real path: the embedded Asterisk simulator, the ARI
//! controller, engine-driven media on UDP sockets, whisper STT, the
//! practice scenario and espeak-ng TTS, in real time.
//!
//! Each caller follows a plan through the scenario and reacts to what it
//! hears: it waits until the agent's reply has ended (or, for a barge-in,
//! speaks into it), says the next German fixture or presses a key.
//! Latency is measured where a caller hears it: from the send time of the
//! caller's last voiced sample to the arrival of the first reply packet.

use super::{latency_percentiles, DemoArgs, Latency, Report, RtpSummary, Summary, Turn};
use aiagc::runtime::app::App;
use aiagc::runtime::conversation::BargeIn;
use aiagc::runtime::media::{CallSummary, DialogueFactory, MediaConfig};
use aiagc::runtime::speech::SpeechPool;
use aiagc_ari::controller::{ControllerConfig, MediaTransport};
use aiagc_ari::ports::PortRange;
use aiagc_ari::sim::{CallerScript, RtpRecord, SimConfig, Simulator};
use aiagc_dialogue::scenario::Scenario;
use aiagc_engine::impair::Impairment;
use aiagc_models::stt::{word_error_rate, SttConfig, WhisperModel};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the caller does next.
#[derive(Clone, Copy)]
enum Step {
    /// Say a fixture after the agent's reply has ended.
    Say(&'static str),
    /// Say a fixture this long after the agent's reply started (barge-in).
    Interrupt(&'static str, u64),
    /// Say two fixtures with a pause between them (ms) after the reply has
    /// ended: a turn that must not end in that pause.
    Parts(&'static str, u64, &'static str),
    /// Press a key after the reply has ended.
    Key(char),
}

/// The demo's callers: name, voice variant, plan through the practice
/// scenario, and the outcome that completes the caller's task.
const CALLS: &[(&str, usize, &[Step], &str)] = &[
    (
        "booking",
        0,
        &[
            Step::Say("book_01"),
            Step::Parts("part_01", 700, "part_02"),
            Step::Say("yes_02"),
        ],
        "booked",
    ),
    (
        "hours-then-move",
        2,
        &[
            Step::Say("hours_01"),
            Step::Interrupt("move_01", 1500),
            Step::Say("book_08"),
            Step::Say("pause_01"),
            Step::Say("yes_03"),
        ],
        "moved",
    ),
    (
        "cancel-by-key",
        1,
        &[Step::Key('3'), Step::Say("book_08"), Step::Say("yes_02")],
        "cancelled",
    ),
    ("to-a-person", 2, &[Step::Say("human_01")], "transferred"),
];

/// The long call: after the request, six rounds of five turns in the
/// booking states (a date with a hesitation, a "no" spoken into the
/// confirmation, the opening hours, a date split by a pause, a short
/// "no"), then a date and "yes": 33 caller turns, one barge-in in five.
fn long_plan() -> Vec<Step> {
    let round = [
        Step::Say("pause_01"),
        Step::Interrupt("no_03", 1500),
        Step::Say("hours_01"),
        Step::Parts("part_01", 700, "part_02"),
        Step::Say("no_01"),
    ];
    let mut plan = vec![Step::Say("book_01")];
    for _ in 0..6 {
        plan.extend(round);
    }
    plan.extend([Step::Say("pause_01"), Step::Say("yes_03")]);
    plan
}

/// Barge-ins over the demo's calls.
#[derive(Debug, Default, Serialize)]
pub(crate) struct BargeIns {
    /// Turns the caller spoke into a reply on purpose.
    pub(crate) intended: usize,
    /// Of those, detected.
    pub(crate) detected: usize,
    /// Detected later than 300 ms after the caller started (or not at all).
    pub(crate) late_or_missed: usize,
    /// Barge-ins where the caller did not speak into a reply: the agent
    /// paused or stopped for its own echo or for noise.
    pub(crate) false_barge_ins: usize,
    /// Of those, the reply dropped for good (a false stop; the others
    /// played on).
    pub(crate) false_stops: usize,
    /// Intended barge-ins the agent played on over (it took the words for
    /// feedback, noise or echo).
    pub(crate) intended_resumed: usize,
    /// From the caller's first sample to the barge-in, per detected one.
    pub(crate) latency_ms: Vec<f64>,
}

/// Memory of the process at a point of the long call.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Memory {
    pub(crate) turn: usize,
    pub(crate) rss_mb: f64,
    /// Live heap (glibc `mallinfo2`): without the allocator's fragmentation.
    pub(crate) heap_mb: f64,
}

/// The long call: early against late turns.
#[derive(Debug, Serialize)]
pub(crate) struct LongCall {
    /// Caller turns per call.
    pub(crate) turns: usize,
    /// Long calls run one after the other.
    pub(crate) calls: usize,
    pub(crate) turns_1_5: super::Percentiles,
    pub(crate) turns_26_30: super::Percentiles,
    /// p95 of turns 26–30 over p95 of turns 1–5, minus one.
    pub(crate) p95_drift: f64,
    pub(crate) memory: Vec<Memory>,
}

/// Loudness of each reply as the caller heard it.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ReplyLevels {
    pub(crate) replies: usize,
    pub(crate) lufs_min: f64,
    pub(crate) lufs_max: f64,
    /// Loudest sample, dBFS.
    pub(crate) peak_dbfs: f64,
}

impl ReplyLevels {
    fn of(levels: &[(f64, f64)]) -> Self {
        Self {
            replies: levels.len(),
            lufs_min: levels.iter().map(|l| l.0).fold(f64::INFINITY, f64::min),
            lufs_max: levels.iter().map(|l| l.0).fold(f64::NEG_INFINITY, f64::max),
            peak_dbfs: levels.iter().map(|l| l.1).fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

/// (LUFS, peak dBFS) of each reply in a recording of what the caller
/// heard: stretches of sound split at 400 ms of silence, at least 500 ms
/// long (a fade-out cut short by a barge-in is left out).
fn reply_levels(path: &Path) -> Vec<(f64, f64)> {
    let Ok(mut reader) = hound::WavReader::open(path) else {
        return Vec::new();
    };
    let rate = reader.spec().sample_rate;
    let pcm: Vec<f32> = reader
        .samples::<i16>()
        .filter_map(Result::ok)
        .map(|s| s as f32 / 32768.0)
        .collect();
    let frame = rate as usize / 50;
    let loud: Vec<bool> = pcm
        .chunks(frame)
        .map(|c| c.iter().any(|s| s.abs() > 0.01))
        .collect();
    let mut out = Vec::new();
    let mut start = None;
    let mut quiet = 0;
    for (i, &l) in loud
        .iter()
        .chain(std::iter::repeat_n(&false, 20))
        .enumerate()
    {
        match (l, start) {
            (true, None) => {
                start = Some(i);
                quiet = 0;
            }
            (true, Some(_)) => quiet = 0,
            (false, Some(s)) => {
                quiet += 1;
                if quiet == 20 {
                    let end = (i + 1 - quiet).min(loud.len());
                    if end - s >= 25 {
                        let seg = &pcm[s * frame..(end * frame).min(pcm.len())];
                        let peak = seg.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                        if let Some(l) = aiagc_models::level::loudness(seg, rate) {
                            out.push((l, 20.0 * (peak.max(1e-6) as f64).log10()));
                        }
                    }
                    start = None;
                }
            }
            (false, None) => {}
        }
    }
    out
}

fn memory_now(turn: usize) -> Memory {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let heap = unsafe { libc::mallinfo2() }.uordblks as f64;
    Memory {
        turn,
        rss_mb: rss_kb / 1024.0,
        heap_mb: heap / (1024.0 * 1024.0),
    }
}

fn window(totals: &[f64]) -> super::Percentiles {
    let mut v: Vec<f64> = totals.iter().copied().filter(|t| t.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    super::Percentiles {
        p50: super::percentile(&v, 0.5),
        p95: super::percentile(&v, 0.95),
    }
}

const VOICES: [&str; 3] = ["v0", "v1", "v2"];

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(super) struct Fixture {
    pub(super) text: String,
    pub(super) pcm: Vec<i16>,
    /// Offset of the first voiced sample.
    pub(super) voiced_start: Duration,
    /// Offset of the last voiced sample.
    pub(super) voiced_end: Duration,
}

pub(super) fn load_fixture(
    dir: &Path,
    id: &str,
    voice: usize,
    texts: &HashMap<String, String>,
) -> Result<Fixture> {
    let file = format!("{id}_{}_r150_16k.wav", VOICES[voice % 3]);
    let path = dir.join("de").join(&file);
    let mut reader = hound::WavReader::open(&path)
        .with_context(|| format!("{} (run `bash scripts/setup.sh`)", path.display()))?;
    let pcm: Vec<i16> = reader.samples::<i16>().collect::<Result<_, _>>()?;
    let last = pcm
        .iter()
        .rposition(|s| s.unsigned_abs() > 600)
        .unwrap_or(0);
    let first = pcm.iter().position(|s| s.unsigned_abs() > 600).unwrap_or(0);
    Ok(Fixture {
        text: texts
            .get(id)
            .cloned()
            .with_context(|| format!("{id} is not in fixtures/de/utterances.tsv"))?,
        voiced_start: Duration::from_secs_f64(first as f64 / 16000.0),
        voiced_end: Duration::from_secs_f64((last + 1) as f64 / 16000.0),
        pcm,
    })
}

pub(super) fn utterance_texts() -> Result<HashMap<String, String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/de/utterances.tsv");
    let tsv = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    Ok(tsv
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut c = l.split('\t');
            Some((c.next()?.to_owned(), c.next()?.to_owned()))
        })
        .collect())
}

/// Whether a received packet carries reply audio (not the silence sent between replies).
pub(super) struct Ear;

impl Ear {
    /// Whether the frame carries reply audio (the simulator decoded it,
    /// whatever the transport).
    fn audible(&mut self, r: &RtpRecord) -> bool {
        r.pcm.iter().any(|s| s.unsigned_abs() > 300)
    }
}

/// A packet the caller received, as far as the demo needs it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Heard {
    pub(super) at: Instant,
    pub(super) marker: bool,
    /// Carries reply audio (not the silence sent between replies).
    pub(super) audible: bool,
}

impl Heard {
    /// The first of a reply: over RTP its marked packet, over the
    /// WebSocket (no marker; silence flows between replies) its first
    /// audible frame.
    pub(super) fn begins_reply(&self) -> bool {
        self.marker || self.audible
    }
}

/// Collects the packets received for the call since the last look (the
/// simulator hands them over and forgets them).
pub(super) fn heard(sim: &Simulator, caller: &str, ear: &mut Ear, seen: &mut Vec<Heard>) {
    for r in sim.take_received_for_caller(caller) {
        seen.push(Heard {
            at: r.at,
            marker: r.marker,
            audible: ear.audible(&r),
        });
    }
}

/// Waits until the agent has said something after `since` and then been
/// quiet for `quiet` (or, with `barge`, until it has talked for that long).
pub(super) async fn wait_for_agent(
    sim: &Simulator,
    caller: &str,
    ear: &mut Ear,
    seen: &mut Vec<Heard>,
    since: Instant,
    barge: Option<Duration>,
) -> Result<()> {
    let quiet = Duration::from_millis(700);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        heard(sim, caller, ear, seen);
        let first = seen
            .iter()
            .find(|h| h.audible && h.at > since)
            .map(|h| h.at);
        let last = seen
            .iter()
            .rev()
            .find(|h| h.audible && h.at > since)
            .map(|h| h.at);
        if let (Some(first), Some(last)) = (first, last) {
            match barge {
                Some(after) if Instant::now() >= first + after => return Ok(()),
                None if Instant::now() >= last + quiet => return Ok(()),
                _ => {}
            }
        }
        if Instant::now() > deadline {
            bail!("the agent did not answer within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the app has registered with the simulator.
pub(super) async fn registered(sim: &Simulator) -> Result<()> {
    let started = Instant::now();
    while sim.connections() == 0 {
        if started.elapsed() > Duration::from_secs(5) {
            bail!("the app did not register with the simulator");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

/// Places an inbound call from `number` and waits up to `wait` for its
/// media; a call whose media does not start is hung up.
pub(super) async fn place(sim: &Simulator, number: &str, wait: Duration) -> Result<(String, Ear)> {
    let id = sim
        .place_call(
            "aiagc",
            CallerScript {
                args: vec!["inbound".into()],
                number: number.into(),
                ..Default::default()
            },
        )
        .map_err(anyhow::Error::msg)?;
    let t = Instant::now();
    while sim.media_started(&id).is_none() {
        if t.elapsed() > wait {
            sim.hangup(&id);
            bail!("media of {id} did not start");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok((id, Ear))
}

/// The caller says `pcm`: when its first frame was sent (waiting up to
/// `wait`), or `None` when the call is gone.
pub(super) async fn speak(
    sim: &Simulator,
    id: &str,
    pcm: &[i16],
    wait: Duration,
) -> Result<Option<Instant>> {
    let before = sim.spoken(id).len();
    if !sim.say(id, pcm) {
        return Ok(None);
    }
    let t = Instant::now();
    loop {
        if let Some(s) = sim.spoken(id).get(before) {
            return Ok(Some(*s));
        }
        if t.elapsed() > wait {
            bail!("the simulator did not send the caller's speech");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One step as the caller did it.
struct Done {
    reference: String,
    dtmf: Option<char>,
    start: Instant,
    end: Instant,
    /// A pause inside the turn (the turn must not end there).
    gap: Option<(Instant, Instant)>,
    /// Spoken into the agent's reply on purpose.
    interrupt: bool,
    /// The first voiced sample left the caller.
    voiced: Instant,
}

pub(super) async fn run(args: &DemoArgs) -> Result<()> {
    let transport: MediaTransport = args
        .transport
        .parse()
        .map_err(|e| anyhow::anyhow!("--transport {e}"))?;
    let codec = match transport {
        MediaTransport::Rtp => crate::config::rtp_format(&args.codec).context("--codec")?,
        MediaTransport::WebSocket => aiagc_engine::Codec::Slin16,
    };
    if !matches!(args.endpointing.as_str(), "model" | "words" | "fixed") {
        bail!(
            "--endpointing {:?}: use model, words or fixed",
            args.endpointing
        );
    }
    let fixtures = super::fixtures_dir(&args.fixtures);
    let texts = utterance_texts()?;
    let model_path = aiagc_models::manifest::default_dir().join(aiagc_models::WHISPER_DEFAULT);
    let model = Arc::new(
        WhisperModel::load(&model_path).context("whisper model (run `bash scripts/setup.sh`)")?,
    );
    let models_dir = aiagc_models::manifest::default_dir();
    let pool =
        SpeechPool::start_with_turn_model(model, 1, 16, SttConfig::default(), Some(models_dir))?;
    // The short demo books through the practice's booking system (a
    // loopback HTTP endpoint); the long calls repeat one booking, which a
    // calendar would decline, so they keep the scenario's own record.
    let booking = if args.long {
        None
    } else {
        Some(super::booking::BookingSystem::start().await?)
    };
    let (scenario, tools) = match &booking {
        Some(b) => (super::booking::scenario()?, Some(b.tools()?)),
        None => (Scenario::praxis(), None),
    };
    // Before the first call: a build beside the callers' decodes takes
    // a core from them for seconds on a small host.
    {
        let s = scenario.clone();
        tokio::task::spawn_blocking(move || s.warm_grammars()).await?;
    }
    let dialogues: DialogueFactory = {
        let scenario = scenario.clone();
        Arc::new(move || {
            let d = scenario.session();
            Box::new(match &tools {
                Some(t) => d.with_tools(t.clone()),
                None => d,
            })
        })
    };
    let impairment = Impairment {
        delay: Duration::from_millis(10),
        jitter: Duration::from_millis(args.jitter_ms),
        loss: args.loss,
        ..Default::default()
    };
    let echo = args.echo_delay_ms.map(|ms| aiagc_ari::sim::EchoPath {
        delay: Duration::from_millis(ms),
        attenuation_db: args.echo_loss_db,
        noise_dbfs: args.line_noise_dbfs,
    });
    let sim = Simulator::start(SimConfig {
        impairment,
        seed: args.seed,
        echo,
        ..SimConfig::default()
    })
    .await?;
    let (summaries_tx, summaries) = crossbeam_channel::unbounded::<CallSummary>();
    let records_dir = std::env::temp_dir().join("aiagc-demo-records");
    let app = App::start(
        sim.client_config("aiagc"),
        PortRange::new("127.0.0.1".parse()?, 32000..=32999),
        MediaConfig {
            records_dir: Some(records_dir.clone()),
            record_audio: true,
            semantic_endpointing: args.endpointing != "fixed",
            turn_model: args.endpointing == "model",
            echo: aiagc_engine::EchoConfig {
                enabled: !args.no_echo_cancel,
                ..Default::default()
            },
            barge_in: match args.barge_in.as_str() {
                "stop" => BargeIn::Stop,
                "resume" => BargeIn::default(),
                other => bail!("--barge-in {other:?}: use \"resume\" or \"stop\""),
            },
            ..MediaConfig::default()
        },
        ControllerConfig {
            format: codec,
            transport,
            ..ControllerConfig::default()
        },
        pool,
        dialogues,
        Some(summaries_tx),
    )?;
    let long = long_plan();
    let names: Vec<String> = (1..=args.repeat.max(1))
        .map(|i| format!("long-call-{i}"))
        .collect();
    let plans: Vec<(&str, usize, &[Step], &str)> = if args.long {
        names
            .iter()
            .map(|n| (n.as_str(), 2, &long[..], "booked"))
            .collect()
    } else {
        CALLS.to_vec()
    };
    registered(&sim).await?;

    if !args.json {
        let line = match transport {
            MediaTransport::Rtp => format!(
                "{} externalMedia RTP, {}% loss, 10+{} ms jitter",
                codec.asterisk_format(),
                args.loss * 100.0,
                args.jitter_ms
            ),
            MediaTransport::WebSocket => {
                "slin16 over the WebSocket media channel, lossless".to_owned()
            }
        };
        println!(
            "aiagc demo: {} German callers through the Asterisk simulator ({line})",
            plans.len(),
        );
        println!("scenario `{}` (appointment line of a practice); whisper base STT, espeak-ng TTS; per-call records in {}\n", scenario.spec().name, records_dir.display());
    }
    let mut turns = Vec::new();
    let mut completed = 0;
    let mut rtp = RtpSummary::default();
    let mut memory = Vec::new();
    let mut barge = BargeIns::default();
    let mut levels = Vec::new();
    for &(name, voice, plan, goal) in &plans {
        let (caller, mut ear) = place(&sim, "+4930123456", Duration::from_secs(5)).await?;
        let mut seen = Vec::new();
        let mut since = Instant::now();
        let mut done: Vec<Done> = Vec::new();
        for (i, step) in plan.iter().enumerate() {
            if args.long && (i == 5 || i == 30) {
                // Turn `i` has been spoken and its reply is under way.
                memory.push((name.to_owned(), memory_now(i)));
            }
            let (id, barge) = match step {
                Step::Say(id) | Step::Parts(id, _, _) => (Some(*id), None),
                Step::Interrupt(id, after) => (Some(*id), Some(Duration::from_millis(*after))),
                Step::Key(_) => (None, None),
            };
            if let Err(e) = wait_for_agent(&sim, &caller, &mut ear, &mut seen, since, barge).await {
                if !args.json {
                    println!("{name}: {e:#}; the caller gives up");
                }
                sim.hangup(&caller);
                break;
            }
            match (id, step) {
                (Some(id), _) => {
                    let mut f = load_fixture(&fixtures, id, voice, &texts)?;
                    let mut gap = None;
                    if let Step::Parts(_, pause, second) = step {
                        let b = load_fixture(&fixtures, second, voice, &texts)?;
                        let first_len = Duration::from_secs_f64(f.pcm.len() as f64 / 16000.0);
                        let pause = Duration::from_millis(*pause);
                        gap = Some((f.voiced_end, first_len + pause));
                        f.pcm
                            .extend(std::iter::repeat_n(0i16, (pause.as_millis() * 16) as usize));
                        f.pcm.extend_from_slice(&b.pcm);
                        f.voiced_end = first_len + pause + b.voiced_end;
                        f.text = format!("{} {}", f.text, b.text);
                    }
                    let Some(start) = speak(&sim, &caller, &f.pcm, Duration::from_secs(2)).await?
                    else {
                        if !args.json {
                            println!(
                                "{name}: the agent ended the call before the caller's next step"
                            );
                        }
                        break;
                    };
                    let end = start + f.voiced_end;
                    tokio::time::sleep_until(
                        (start + Duration::from_millis(f.pcm.len() as u64 / 16)).into(),
                    )
                    .await;
                    done.push(Done {
                        reference: f.text,
                        dtmf: None,
                        start,
                        end,
                        gap: gap.map(|(a, b)| (start + a, start + b)),
                        interrupt: barge.is_some(),
                        voiced: start + f.voiced_start,
                    });
                    since = end;
                }
                (None, Step::Key(k)) => {
                    let at = Instant::now();
                    sim.send_dtmf(&caller, *k);
                    done.push(Done {
                        reference: String::new(),
                        dtmf: Some(*k),
                        start: at,
                        end: at,
                        gap: None,
                        interrupt: false,
                        voiced: at,
                    });
                    since = at;
                }
                _ => {}
            }
        }
        // The agent ends the call (hangup or transfer); a caller that is
        // not let go hangs up after 20 s.
        let summary = {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                // Keep what the simulator received: it forgets a call's packets when it ends.
                heard(&sim, &caller, &mut ear, &mut seen);
                match summaries.try_recv() {
                    Ok(s) if s.call == caller => break s,
                    Ok(_) => {}
                    Err(_) if Instant::now() > deadline => {
                        sim.hangup(&caller);
                        break summaries
                            .recv_timeout(Duration::from_secs(5))
                            .context("call summary")?;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        };
        rtp.add(&summary.rtp);
        levels.extend(reply_levels(&records_dir.join(format!("{caller}.out.wav"))));
        let window = Duration::from_millis(300);
        for d in done.iter().filter(|d| d.interrupt) {
            barge.intended += 1;
            let hit = summary
                .barge_ins
                .iter()
                .filter(|b| **b + Duration::from_millis(50) > d.start && **b < d.end + window)
                .min();
            let resumed = |b: &Instant| {
                summary
                    .overlaps
                    .iter()
                    .any(|o| o.at == *b && o.outcome == "resumed")
            };
            if hit.is_some_and(resumed) {
                barge.intended_resumed += 1;
            }
            match hit {
                Some(b) => {
                    barge.detected += 1;
                    let after = b.saturating_duration_since(d.voiced);
                    barge.latency_ms.push(ms(after));
                    if after > window {
                        barge.late_or_missed += 1;
                    }
                }
                None => barge.late_or_missed += 1,
            }
        }
        // False: the agent stopped while the caller said nothing (a
        // caller who spoke into a reply that went on after a pause did
        // barge in, if unplanned).
        let unprompted: Vec<&Instant> = summary
            .barge_ins
            .iter()
            .filter(|b| {
                !done.iter().any(|d| {
                    d.dtmf.is_none()
                        && **b + Duration::from_millis(50) > d.start
                        && **b < d.end + window
                })
            })
            .collect();
        barge.false_barge_ins += unprompted.len();
        barge.false_stops += unprompted
            .iter()
            .filter(|b| {
                !summary
                    .overlaps
                    .iter()
                    .any(|o| o.at == ***b && o.outcome == "resumed")
            })
            .count();
        // The caller's own task, not just any end: a move that ends with
        // a transfer to the team after two misheard dates is not done.
        if summary.outcome.as_deref() == Some(goal) {
            completed += 1;
        }
        if !args.json {
            if let Some(g) = summary.turns.iter().find(|r| r.input == "start") {
                println!("{name} · agent:   {}", g.reply);
            }
        }
        for (i, d) in done.iter().enumerate() {
            let next = done.get(i + 1).map(|n| n.start);
            let records: Vec<_> = summary
                .turns
                .iter()
                .filter(|r| r.input != "start" && r.input != "silence")
                .filter(|r| r.handed_over >= d.start && next.is_none_or(|n| r.handed_over < n))
                .collect();
            let record = records.last().copied();
            // Ended inside the caller's mid-turn pause (or split in two).
            let cut_off = d.gap.is_some_and(|(a, b)| {
                records
                    .iter()
                    .any(|r| r.handed_over > a && r.handed_over < b + Duration::from_millis(100))
            }) || records.len() > 1;
            let transcript = records
                .iter()
                .map(|r| r.transcript.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            let reply = record.and_then(|r| {
                seen.iter()
                    .find(|h| h.begins_reply() && h.at > r.handed_over)
                    .map(|h| h.at)
            });
            let barge_in = summary
                .barge_ins
                .iter()
                .any(|b| *b > d.start && *b < d.end + Duration::from_millis(300));
            turns.push(Turn {
                call: name.to_string(),
                reference: d.reference.clone(),
                transcript: record.map(|_| transcript),
                reply: record.map(|r| r.reply.clone()).unwrap_or_default(),
                barge_in,
                dtmf: d.dtmf.map(String::from),
                speech_ms: [0, ms(d.end.saturating_duration_since(d.start)) as u64],
                latency_ms: Latency {
                    endpoint: record
                        .map(|r| ms(r.handed_over.saturating_duration_since(d.end)))
                        .unwrap_or(f64::NAN),
                    stt: record.map(|r| ms(r.stt)),
                    dialogue: record.map(|r| ms(r.dialogue)),
                    tts_first_audio: record.map(|r| ms(r.tts_first_audio)),
                    total: reply
                        .map(|at| ms(at.saturating_duration_since(d.end)))
                        .unwrap_or(f64::NAN),
                },
                early: record.map(|r| (r.early_transcript, r.ended_by_hint, r.ended_by_model)),
                cut_off,
            });
        }
        if !args.json {
            for t in turns.iter().filter(|t| t.call == name) {
                print_turn(t);
            }
            println!(
                "{:>w$}   outcome: {} (wanted: {goal}; call ended by {}; {} barge-in{}, DTMF {:?})\n",
                "",
                summary.outcome.as_deref().unwrap_or("none"),
                summary.ended_by,
                summary.barge_ins.len(),
                if summary.barge_ins.len() == 1 {
                    ""
                } else {
                    "s"
                },
                summary.dtmf,
                w = name.len()
            );
        }
    }
    app.drain(Duration::from_secs(5)).await;

    let spoken: Vec<f64> = turns
        .iter()
        .filter(|t| t.dtmf.is_none())
        .map(|t| word_error_rate(&t.reference, t.transcript.as_deref().unwrap_or("")))
        .collect();
    let wer = spoken.iter().sum::<f64>() / spoken.len().max(1) as f64;
    let answered = turns.iter().filter(|t| t.transcript.is_some()).count();
    let long = args.long.then(|| {
        // Turns 1–5 and 26–30 of each long call, pooled.
        let (mut first, mut last) = (Vec::new(), Vec::new());
        for (name, ..) in &plans {
            let totals: Vec<f64> = turns
                .iter()
                .filter(|t| t.call == *name)
                .map(|t| t.latency_ms.total)
                .collect();
            first.extend_from_slice(&totals[..totals.len().min(5)]);
            last.extend_from_slice(totals.get(25..30).unwrap_or(&[]));
        }
        let early = window(&first);
        let late = window(&last);
        LongCall {
            turns: turns.len() / plans.len().max(1),
            calls: plans.len(),
            p95_drift: late.p95 / early.p95 - 1.0,
            turns_1_5: early,
            turns_26_30: late,
            memory: memory.iter().map(|(_, m)| *m).collect(),
        }
    });
    let report = Report {
        codec: codec.asterisk_format().to_owned(),
        transport: args.transport.clone(),
        summary: Summary {
            long,
            barge_in: barge,
            reply_levels: ReplyLevels::of(&levels),
            calls: plans.len(),
            turns: answered,
            expected_turns: turns.len(),
            wer: Some(wer),
            completed_tasks: Some(completed),
            cut_offs: Some(turns.iter().filter(|t| t.cut_off).count()),
            late_ends: Some(
                turns
                    .iter()
                    .filter(|t| t.latency_ms.endpoint > 1000.0)
                    .count(),
            ),
            latency_ms: latency_percentiles(&turns),
            rtp,
            booking_system: booking.as_ref().map(|b| b.calendar()),
        },
        turns,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let s = &report.summary;
        println!(
            "{} of {} turns answered; {} of {} calls completed their task; WER {:.2} (spoken turns); turn latency p50 {:.0} ms, p95 {:.0} ms; {} turn(s) cut off in a pause, {} ended later than 1 s (endpointing: {})",
            s.turns, s.expected_turns, completed, s.calls, wer, s.latency_ms.p50, s.latency_ms.p95,
            s.cut_offs.unwrap_or(0), s.late_ends.unwrap_or(0), args.endpointing
        );
        let b = &s.barge_in;
        let mut lat = b.latency_ms.clone();
        lat.sort_by(f64::total_cmp);
        println!(
            "barge-ins: {} intended, {} detected (max {:.0} ms after the caller's first word), {} late or missed, {} played on by mistake; {} false (the agent paused for its own echo or noise), {} of them stopped the reply",
            b.intended,
            b.detected,
            lat.last().copied().unwrap_or(0.0),
            b.late_or_missed,
            b.intended_resumed,
            b.false_barge_ins,
            b.false_stops
        );
        if let Some(c) = &s.booking_system {
            let declined = c.requests.iter().filter(|(_, ok)| !ok).count();
            println!(
                "booking system (loopback HTTP, through [[tools]]): {} request(s), {declined} declined; calendar now: {}",
                c.requests.len(),
                if c.appointments.is_empty() {
                    "empty".to_owned()
                } else {
                    c.appointments
                        .iter()
                        .map(|a| format!("{} {} {}", a.id, a.date, a.time))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
        }
        let r = &s.reply_levels;
        println!(
            "replies as heard: {} between {:.1} and {:.1} LUFS (target {:.0}), loudest sample {:.1} dBFS",
            r.replies, r.lufs_min, r.lufs_max, aiagc_models::level::TARGET_LUFS, r.peak_dbfs
        );
        if let Some(l) = &s.long {
            println!(
                "long call: {} turns; turns 1–5 p50 {:.0} ms, p95 {:.0} ms; turns 26–30 p50 {:.0} ms, p95 {:.0} ms; p95 drift {:+.1} %",
                l.turns, l.turns_1_5.p50, l.turns_1_5.p95, l.turns_26_30.p50, l.turns_26_30.p95,
                l.p95_drift * 100.0
            );
            for m in &l.memory {
                println!(
                    "memory after turn {}: RSS {:.1} MB, live heap {:.1} MB",
                    m.turn, m.rss_mb, m.heap_mb
                );
            }
        }
    }
    if answered == 0 {
        bail!("no turn was answered");
    }
    Ok(())
}

fn print_turn(t: &Turn) {
    let w = t.call.len();
    match &t.dtmf {
        Some(k) => println!("{:>w$}   caller:  [presses {k}]", ""),
        None => println!(
            "{:>w$}   caller:  {}{}",
            "",
            t.reference,
            if t.barge_in {
                "   [speaks into the reply: barge-in]"
            } else {
                ""
            }
        ),
    }
    if t.dtmf.is_none() {
        println!(
            "{:>w$}   heard:   {}",
            "",
            t.transcript.as_deref().unwrap_or("(no answer)")
        );
    }
    println!("{:>w$}   agent:   {}", "", t.reply);
    let l = &t.latency_ms;
    let stt = l.stt.unwrap_or(f64::NAN);
    let ended = match t.early {
        Some((_, true, _)) => "; turn ended at the pause: the words complete it",
        Some((_, false, true)) => "; turn ended at the pause: Smart Turn says complete",
        _ => "",
    };
    let stt_part = match t.early {
        Some((true, _, _)) => format!(
            "endpoint {:.0} ms (STT {stt:.0} ms of it, at the pause)",
            l.endpoint
        ),
        _ => format!("endpoint {:.0} ms + STT {stt:.0} ms", l.endpoint),
    };
    let how = ended;
    println!(
        "{:>w$}   latency: {stt_part} + dialogue {:.1} ms + TTS first audio {:.0} ms → heard after {:.0} ms{how}",
        "",
        l.dialogue.unwrap_or(f64::NAN),
        l.tts_first_audio.unwrap_or(f64::NAN),
        l.total,
    );
}
