//! `aiagc demo`: the embedded end-to-end run of what exists so far.
//!
//! Until the runtime wires ARI, the engine and the speech core together,
//! the demo drives the media engine alone: each German fixture caller script is sent as RTP
//! (the chosen codec, paced 20 ms, through a seeded impaired network) into
//! an `engine::Call`, in simulated time. Each detected utterance is
//! answered by playing it back (an echo stands in for STT → dialogue →
//! TTS), so both directions and the latency accounting run for real: the
//! total is measured at the far end, from the caller's last voiced sample
//! to the arrival of the first reply packet.

mod arrivals;
mod booking;
mod live;
pub mod load;
pub mod plot;

use aiagc_engine::impair::{Impairment, Network, RtpSender};
use aiagc_engine::{packet, Call, CallConfig, CallEvent, Codec};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Options of `aiagc demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Format externalMedia is asked for: ulaw, alaw or g722 (slin16 and
    /// opus only with --engine-only: a real Asterisk plays neither back).
    #[arg(long, default_value = "g722")]
    codec: String,
    /// Media transport: `rtp` (`--codec`, with `--loss` and `--jitter-ms`)
    /// or `websocket` (slin16 over the simulator's chan_websocket; TCP, so
    /// no loss or jitter).
    #[arg(long, default_value = "rtp")]
    transport: String,
    /// Packet loss on each direction (0.0–1.0).
    #[arg(long, default_value_t = 0.01)]
    loss: f64,
    /// Network delay jitter in ms (uniform 0..N on top of 10 ms).
    #[arg(long, default_value_t = 20)]
    jitter_ms: u64,
    /// Seed of the network model.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Fixtures folder (default: fixtures/generated next to the binary's repo).
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// Turn ends: `model` (at a 120 ms pause Smart Turn and the words
    /// decide: complete ends the turn, unfinished waits up to 1.5 s),
    /// `words` (the words alone), or `fixed` (the 500 ms hangover alone).
    #[arg(long, default_value = "model")]
    endpointing: String,
    /// Only the media engine, in simulated time (no ARI, no models): each
    /// turn is answered by echoing the caller.
    #[arg(long)]
    engine_only: bool,
    /// One long call instead: 33 caller turns (short and long answers, a
    /// barge-in every fifth turn) through the practice scenario; reports
    /// turn latency of turns 1–5 against 26–30 and memory at both points.
    #[arg(long)]
    long: bool,
    /// With `--long`: this many long calls one after the other, their
    /// turns 1–5 and 26–30 pooled.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// The simulated line echoes the agent back after this many ms
    /// (20–300 for a hybrid or speakerphone; off when not given).
    #[arg(long)]
    echo_delay_ms: Option<u64>,
    /// Echo return loss of that line in dB.
    #[arg(long, default_value_t = 12.0)]
    echo_loss_db: f32,
    /// Line noise added to the caller's stream, RMS in dBFS (e.g. -60).
    #[arg(long, allow_negative_numbers = true)]
    line_noise_dbfs: Option<f32>,
    /// Turn our echo canceller off (to see what it prevents).
    #[arg(long)]
    no_echo_cancel: bool,
    /// Caller sound over a reply: `resume` (pause it, play on after
    /// feedback, noise or echo) or `stop` (drop it at the first sound).
    #[arg(long, default_value = "resume")]
    barge_in: String,
}

#[derive(Serialize)]
pub(crate) struct Latency {
    endpoint: f64,
    stt: Option<f64>,
    dialogue: Option<f64>,
    tts_first_audio: Option<f64>,
    total: f64,
}

#[derive(Serialize)]
pub(crate) struct Turn {
    call: String,
    reference: String,
    transcript: Option<String>,
    reply: String,
    barge_in: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    dtmf: Option<String>,
    speech_ms: [u64; 2],
    latency_ms: Latency,
    /// (transcript made at the pause, turn ended by the words, by the model)
    #[serde(skip)]
    early: Option<(bool, bool, bool)>,
    /// The turn ended inside the caller's pause, or was split.
    cut_off: bool,
}

#[derive(Serialize)]
pub(crate) struct Summary {
    /// The long call's comparison (with `--long`).
    #[serde(skip_serializing_if = "Option::is_none")]
    long: Option<live::LongCall>,
    /// Barge-ins: where the caller spoke into a reply on purpose, and
    /// where the agent stopped although the caller did not.
    barge_in: live::BargeIns,
    /// Loudness of the replies as the caller heard them.
    reply_levels: live::ReplyLevels,
    calls: usize,
    turns: usize,
    expected_turns: usize,
    wer: Option<f64>,
    completed_tasks: Option<usize>,
    /// Turns that ended inside the caller's mid-turn pause (or were split).
    #[serde(skip_serializing_if = "Option::is_none")]
    cut_offs: Option<usize>,
    /// Turns whose end was decided more than 1 s after the speech ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    late_ends: Option<usize>,
    latency_ms: Percentiles,
    rtp: RtpSummary,
    /// The booking system the calls booked through (the live demo).
    #[serde(skip_serializing_if = "Option::is_none")]
    booking_system: Option<booking::Calendar>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p95: f64,
}

#[derive(Serialize, Default)]
pub(crate) struct RtpSummary {
    received: u64,
    lost: u64,
    concealed_frames: u64,
    late: u64,
    jitter_ms_max: f64,
    sent: u64,
}

impl RtpSummary {
    /// Adds one call's inbound and outbound counters.
    pub(crate) fn add(&mut self, s: &aiagc_engine::CallStats) {
        self.received += s.received;
        self.lost += s.lost;
        self.concealed_frames += s.concealed_frames;
        self.late += s.late;
        self.sent += s.sent;
        self.jitter_ms_max = self.jitter_ms_max.max(s.jitter.as_secs_f64() * 1000.0);
    }
}

#[derive(Serialize)]
pub(crate) struct Report {
    codec: String,
    transport: String,
    turns: Vec<Turn>,
    summary: Summary,
}

pub(crate) struct Script {
    name: String,
    pcm: Vec<i16>,
    rate: u32,
    segments: Vec<(u64, u64, String)>,
}

pub(crate) fn fixtures_dir(arg: &Option<PathBuf>) -> PathBuf {
    arg.clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/generated"))
}

pub(crate) fn load_scripts(dir: &std::path::Path, rate: u32) -> Result<Vec<Script>> {
    let tsv_path = dir.join("de/scripts.tsv");
    let tsv = std::fs::read_to_string(&tsv_path).with_context(|| {
        format!(
            "{} missing: run `bash scripts/setup.sh`",
            tsv_path.display()
        )
    })?;
    let mut scripts = Vec::new();
    for line in tsv.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 4 || cols[1] != rate.to_string() {
            continue;
        }
        let mut segments = Vec::new();
        for seg in cols[3].split('|') {
            let (range, text) = seg.split_once(':').context("bad segment in scripts.tsv")?;
            let (a, b) = range.split_once('-').context("bad range in scripts.tsv")?;
            segments.push((a.parse()?, b.parse()?, text.to_owned()));
        }
        let mut reader = hound::WavReader::open(dir.join("de").join(cols[0]))?;
        let pcm = reader.samples::<i16>().collect::<Result<Vec<_>, _>>()?;
        scripts.push(Script {
            name: cols[0].trim_end_matches(".wav").to_owned(),
            pcm,
            rate,
            segments,
        });
    }
    if scripts.is_empty() {
        bail!("no caller scripts at {rate} Hz in {}", tsv_path.display());
    }
    Ok(scripts)
}

/// p50 and p95 of the turns' measured total latency.
pub(crate) fn latency_percentiles(turns: &[Turn]) -> Percentiles {
    // Spoken turns: a key press has no end of speech to wait for.
    let mut totals: Vec<f64> = turns
        .iter()
        .filter(|t| t.dtmf.is_none())
        .map(|t| t.latency_ms.total)
        .filter(|t| t.is_finite())
        .collect();
    totals.sort_by(f64::total_cmp);
    Percentiles {
        p50: percentile(&totals, 0.5),
        p95: percentile(&totals, 0.95),
    }
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx]
}

/// Runs one scripted call in simulated time and returns its turns.
fn run_call(
    script: &Script,
    codec: Codec,
    args: &DemoArgs,
    rtp: &mut RtpSummary,
) -> Result<Vec<Turn>> {
    let asterisk: SocketAddr = "127.0.0.1:30000".parse()?;
    let impairment = Impairment {
        delay: Duration::from_millis(10),
        jitter: Duration::from_millis(args.jitter_ms),
        loss: args.loss,
        ..Default::default()
    };
    let t0 = Instant::now();
    let mut config = CallConfig::new(codec, args.seed);
    config.peer = Some(asterisk);
    let mut call = Call::new(config, t0)?;
    let mut uplink = Network::new(impairment, args.seed);
    let mut downlink = Network::new(impairment, args.seed.wrapping_add(1));
    let mut sender = RtpSender::new(codec, 4000, 160, 0x5eed)?;

    // Asterisk keeps streaming while bridged: the script, then 3 s of silence.
    let mut pcm = script.pcm.clone();
    pcm.extend(std::iter::repeat_n(0, script.rate as usize * 3));
    let n = codec.frame_samples();
    for (i, chunk) in pcm.chunks(n).enumerate() {
        uplink.send(
            &sender.packet(chunk),
            t0 + Duration::from_millis(20 * i as u64),
        );
    }
    let end = t0 + Duration::from_millis(pcm.len() as u64 * 1000 / script.rate as u64 + 500);

    let mut pending: Vec<(usize, Instant)> = Vec::new(); // (turn index, speech end wall time)
    let mut turns = Vec::new();
    let mut now = t0;
    loop {
        while let Some((at, d)) = uplink.poll(now) {
            call.receive(asterisk, &d, at);
        }
        call.handle_timeout(now);
        while let Some(t) = call.poll_transmit(now) {
            downlink.send(t.data, now);
        }
        while let Some(event) = call.poll_event() {
            if let CallEvent::SpeechEnded(u) = event {
                let end_ms = u.end.elapsed.as_millis() as u64;
                let start_ms = u.start.elapsed.as_millis() as u64;
                // The reference utterance overlapping the detected one.
                let reference = script
                    .segments
                    .iter()
                    .find(|(a, b, _)| start_ms < *b + 200 && end_ms + 200 > *a)
                    .cloned();
                let (true_end, text) = match reference {
                    Some((_, b, text)) => (b, text),
                    None => (end_ms, "(no reference: false start)".to_owned()),
                };
                let speech_end_at = t0 + Duration::from_millis(true_end);
                let reply_ms = u.samples.len() as u64 / 16;
                call.speak(&u.samples, 16000)?;
                turns.push(Turn {
                    call: script.name.clone(),
                    reference: text,
                    transcript: None,
                    reply: format!("(echo of the caller, {reply_ms} ms)"),
                    barge_in: u.barge_in,
                    dtmf: None,
                    early: None,
                    cut_off: false,
                    speech_ms: [start_ms, end_ms],
                    latency_ms: Latency {
                        endpoint: now.saturating_duration_since(speech_end_at).as_secs_f64()
                            * 1000.0,
                        stt: None,
                        dialogue: None,
                        tts_first_audio: None,
                        total: f64::NAN,
                    },
                });
                pending.push((turns.len() - 1, speech_end_at));
            }
        }
        // The far end: the first marked packet after a turn is its reply.
        while let Some((at, d)) = downlink.poll(now) {
            if let Ok(v) = packet::parse(&d) {
                if v.marker && !pending.is_empty() {
                    let (idx, speech_end_at) = pending.remove(0);
                    turns[idx].latency_ms.total =
                        at.saturating_duration_since(speech_end_at).as_secs_f64() * 1000.0;
                }
            }
        }
        let next = call
            .poll_timeout()
            .min(uplink.next_arrival().unwrap_or(end))
            .min(downlink.next_arrival().unwrap_or(end));
        if next >= end {
            break;
        }
        now = next.max(now + Duration::from_micros(1));
    }
    rtp.add(&call.stats());
    Ok(turns)
}

/// Runs the demo: the live path by default, or the engine alone.
pub fn run(args: &DemoArgs) -> Result<()> {
    if args.engine_only {
        if args.transport != "rtp" {
            bail!("--engine-only runs two engines over RTP: leave out --transport");
        }
        return run_engine(args);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(live::run(args))
}

/// `aiagc loadtest`.
pub fn loadtest(args: &load::LoadArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(load::run(args))
}

/// The engine alone in simulated time.
fn run_engine(args: &DemoArgs) -> Result<()> {
    let codec = Codec::from_asterisk_format(&args.codec)?;
    let rate = if codec.pcm_rate() == 8000 {
        8000
    } else {
        16000
    };
    let scripts = load_scripts(&fixtures_dir(&args.fixtures), rate)?;
    let expected_turns: usize = scripts.iter().map(|s| s.segments.len()).sum();
    let mut rtp = RtpSummary::default();
    let mut turns = Vec::new();
    for script in &scripts {
        turns.extend(run_call(script, codec, args, &mut rtp)?);
    }
    let report = Report {
        codec: codec.asterisk_format().to_owned(),
        // The engine alone: RTP packets between two `Call`s.
        transport: "rtp".into(),
        summary: Summary {
            long: None,
            barge_in: live::BargeIns::default(),
            reply_levels: live::ReplyLevels::default(),
            calls: scripts.len(),
            turns: turns.len(),
            expected_turns,
            wer: None,
            completed_tasks: None,
            cut_offs: None,
            late_ends: None,
            latency_ms: latency_percentiles(&turns),
            rtp,
            booking_system: None,
        },
        turns,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "aiagc demo: {} German caller scripts over {} RTP, {}% loss, 10+{} ms jitter (simulated time)",
        report.summary.calls,
        report.codec,
        args.loss * 100.0,
        args.jitter_ms
    );
    println!("the speech core (`aiagc transcribe`, `aiagc say`) and the ARI simulator are not wired into calls yet: each turn is answered by echoing the caller\n");
    println!(
        "{:<14} {:<48} {:>13} {:>6} {:>9} {:>9}",
        "call", "caller said (reference)", "speech ms", "barge", "endpoint", "total"
    );
    for t in &report.turns {
        println!(
            "{:<14} {:<48} {:>6}-{:<6} {:>6} {:>7.0}ms {:>7.0}ms",
            t.call,
            t.reference.chars().take(48).collect::<String>(),
            t.speech_ms[0],
            t.speech_ms[1],
            if t.barge_in { "yes" } else { "" },
            t.latency_ms.endpoint,
            t.latency_ms.total
        );
    }
    let s = &report.summary;
    println!(
        "\n{} of {} utterances detected; turn latency p50 {:.0} ms, p95 {:.0} ms (endpoint hangover 500 ms included)",
        s.turns, s.expected_turns, s.latency_ms.p50, s.latency_ms.p95
    );
    println!(
        "RTP: {} received, {} lost, {} frames concealed, {} late, jitter max {:.1} ms, {} sent",
        s.rtp.received,
        s.rtp.lost,
        s.rtp.concealed_frames,
        s.rtp.late,
        s.rtp.jitter_ms_max,
        s.rtp.sent
    );
    if s.turns != s.expected_turns {
        bail!(
            "{} utterances detected, {} expected",
            s.turns,
            s.expected_turns
        );
    }
    Ok(())
}
