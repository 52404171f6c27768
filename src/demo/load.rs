//! `aiagc loadtest`: concurrent German callers against the whole app
//! (whisper, the scenario, espeak-ng). Each caller waits for the greeting,
//! asks for an appointment, names a day and a time, and hangs up. Reports
//! turn latency, RTP health, what was left behind, and memory per call.
//!
//! Targets: `sim`, the embedded simulator with reactive callers; `ari`, a
//! real Asterisk, where this process registers its own app (default
//! `<app>-loadtest`) and originates `Local/<exten>@<context>` into it: the
//! other half of each Local channel runs the dialplan, which plays the
//! caller's recordings (see `deploy/asterisk/extensions.conf` and
//! `scripts/loadtest-sounds.sh`). There, latency is measured on our side,
//! from the caller's speech end as our jitter buffer played it to the
//! first reply packet sent.

use super::live::{
    heard, load_fixture, place, registered, speak, utterance_texts, wait_for_agent, Heard,
};
use super::percentile;
use aiagc::runtime::app::App;
use aiagc::runtime::media::{CallSummary, DialogueFactory, MediaConfig};
use aiagc::runtime::speech::TurnRecord;
use aiagc_ari::client::{AriClient, Originate};
use aiagc_ari::controller::{ControllerConfig, MediaTransport};
use aiagc_ari::ports::PortRange;
use aiagc_ari::sim::{SimConfig, Simulator};
use aiagc_dialogue::scenario::Scenario;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Options of `aiagc loadtest`.
#[derive(clap::Args, Clone)]
pub struct LoadArgs {
    /// Calls in total.
    #[arg(long, default_value_t = 8)]
    calls: usize,
    /// Calls at the same time.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Keep placing calls for this long (`90s`, `30m`, `2h`) instead of
    /// stopping after `--calls`; `--concurrency` calls at a time.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// `sim` (the embedded simulator) or `ari` (the Asterisk configured in
    /// aiagc.toml / the environment).
    #[arg(long, default_value = "sim")]
    target: String,
    /// Configuration file (default `./aiagc.toml`): ARI for `--target ari`,
    /// the speech settings for both.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Stasis app this process registers for `--target ari` (default: the
    /// configured app with `-loadtest`, so production calls stay untouched).
    #[arg(long)]
    app: Option<String>,
    /// Dialplan context whose extension plays the caller (`--target ari`).
    #[arg(long, default_value = "aiagc-loadtest")]
    context: String,
    /// Extension in `--context`.
    #[arg(long, default_value = "s")]
    extension: String,
    /// A call that has not ended after this many seconds is hung up and
    /// counted as failed (`--target ari`).
    #[arg(long, default_value_t = 120)]
    call_timeout_s: u64,
    /// Draw the latency distribution and the per-stage breakdown as SVG.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    /// externalMedia format of the simulator target: ulaw, alaw or g722
    /// (the ari target takes `media.format` of the configuration).
    #[arg(long, default_value = "g722")]
    codec: String,
    /// Media transport of the simulator target: `rtp` (`--codec`) or
    /// `websocket` (slin16 over chan_websocket's protocol); the ari target
    /// takes `media.transport` of the configuration.
    #[arg(long, default_value = "rtp")]
    transport: String,
    /// Speech worker threads (0: one per two cores).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// CPU threads per whisper decode (0: as configured, 2 by default).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Place calls as they arrive in life: a Poisson process of this many
    /// calls per second (with `--duration` or `--calls`; `--concurrency`
    /// is then no limit, the arrivals decide). The report gives the
    /// offered load in Erlang (rate × mean holding time).
    #[arg(long)]
    rate: Option<f64>,
    /// Order of the speech workers' jobs: `deadline` or `arrival` (as
    /// `[speech] schedule`; empty: as configured).
    #[arg(long, default_value = "")]
    schedule: String,
    /// Seed of the arrivals (`--rate`): the same seed, the same schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Percentiles {
    p50: f64,
    p95: f64,
    p99: f64,
}

#[derive(Serialize)]
struct Rtp {
    underruns: u64,
    /// Arrival jitter at the simulated caller; not measured on a real
    /// Asterisk (null).
    pacing_jitter_p99_ms: Option<f64>,
    lost: u64,
}

#[derive(Serialize)]
struct Leaks {
    channels: usize,
    bridges: usize,
    sockets: usize,
    tasks: usize,
}

#[derive(Serialize)]
struct LoadReport {
    /// Speech workers, whisper threads per decode, job order.
    workers: usize,
    threads: usize,
    schedule: String,
    calls: usize,
    /// Arrivals asked for (`--rate`), calls per second.
    rate: Option<f64>,
    completed: usize,
    failed: usize,
    /// Callers turned away by admission control (they heard the busy
    /// message): not failed, not completed.
    turned_away: usize,
    concurrency: usize,
    target: String,
    /// `rtp` or `websocket`, and the format on it.
    transport: String,
    format: String,
    seconds: f64,
    latency_ms: Percentiles,
    /// The first and the last tenth of the calls (drift over a long run).
    latency_first_tenth_ms: Percentiles,
    latency_last_tenth_ms: Percentiles,
    stages_ms: Vec<Stage>,
    rtp: Rtp,
    leaks: Leaks,
    /// Fillers played ("Einen Moment bitte.") because a reply was late;
    /// a turn with a filler is measured to the filler's first packet.
    fillers: u32,
    rss_mb_per_call: f64,
    /// Resident memory when a tenth of the run had passed, and at its end
    /// (drift over a long run).
    rss_mb_first_tenth: f64,
    rss_mb_end: f64,
    /// Arrivals, holding time, offered Erlang and the concurrency carried.
    load: super::arrivals::Offered,
    /// The CPU this process used (app, simulator and callers).
    cpu: Cpu,
    /// What the speech workers spent per answered caller turn.
    cost_per_turn: CostPerTurn,
    /// What the pool did on purpose to keep up.
    degradations: Degradations,
}

#[derive(Serialize)]
struct Cpu {
    /// CPU seconds (user + system) over the run.
    seconds: f64,
    /// Of the machine's cores over the run (1.0: all busy all the time).
    utilisation: f64,
    cores: usize,
    /// Process CPU-ms over the spoken turns answered.
    ms_per_turn: f64,
}

#[derive(Serialize, Default)]
struct CostPerTurn {
    /// Spoken turns answered (the means below are over these).
    turns: usize,
    decodes: f64,
    pause_decodes: f64,
    final_decodes: f64,
    fell_back: f64,
    audio_ms: f64,
    stt_ms: f64,
    /// Decode time × whisper threads.
    stt_cpu_ms: f64,
    turn_model_runs: f64,
    turn_model_ms: f64,
    tts_ms: f64,
    /// stt_cpu + turn model + TTS.
    cpu_ms: f64,
}

#[derive(Serialize)]
struct Degradations {
    /// Turn checks dropped: too late to help.
    late_turn_checks: u64,
    /// Speculative jobs that gave way to urgent ones (queue full).
    displaced: u64,
    /// Decodes whose readings were not scored: the caller already waited.
    readings_skipped: u64,
    /// Urgent jobs started after their deadline.
    started_late: u64,
    /// Jobs refused (queue full).
    rejected: u64,
    /// Jobs dropped: their turn or call was over.
    stale: u64,
}

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn cost_per_turn(ended: &[CallSummary]) -> CostPerTurn {
    let turns: Vec<&TurnRecord> = ended
        .iter()
        .flat_map(|s| &s.turns)
        .filter(|t| t.input == "speech")
        .collect();
    let n = turns.len().max(1) as f64;
    let mean = |f: &dyn Fn(&TurnRecord) -> f64| turns.iter().map(|t| f(t)).sum::<f64>() / n;
    CostPerTurn {
        turns: turns.len(),
        decodes: mean(&|t| f64::from(t.cost.decodes())),
        pause_decodes: mean(&|t| f64::from(t.cost.pause_decodes)),
        final_decodes: mean(&|t| f64::from(t.cost.final_decodes)),
        fell_back: mean(&|t| f64::from(t.cost.fell_back)),
        audio_ms: mean(&|t| t.cost.audio_ms),
        stt_ms: mean(&|t| t.cost.stt_ms),
        stt_cpu_ms: mean(&|t| t.cost.stt_cpu_ms),
        turn_model_runs: mean(&|t| f64::from(t.cost.turn_model_runs)),
        turn_model_ms: mean(&|t| t.cost.turn_model_ms),
        tts_ms: mean(&|t| t.cost.tts_ms),
        cpu_ms: mean(&|t| t.cost.cpu_ms()),
    }
}

#[derive(Serialize)]
struct Stage {
    stage: &'static str,
    p50: f64,
    p95: f64,
}

/// `90s`, `30m`, `2h`, `500ms` or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((t, "s"), |i| t.split_at(i));
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: use e.g. 90s, 30m, 2h"))?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{text:?}: unit {unit:?} is not ms, s, m or h")),
    };
    if !(seconds > 0.0 && seconds < 7.0 * 86400.0) {
        return Err(format!("{text:?}: use a duration above 0 and below a week"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn percentiles(values: &[f64]) -> Percentiles {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    Percentiles {
        p50: percentile(&v, 0.5),
        p95: percentile(&v, 0.95),
        p99: percentile(&v, 0.99),
    }
}

/// What one call gave: turn latencies (ms), reply packet gaps (ms, the
/// simulator only), and when it started.
struct CallResult {
    started: Instant,
    ended: Instant,
    latencies: Vec<f64>,
    gaps: Vec<f64>,
}

/// Resident and peak memory of this process (kB).
fn memory_kb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One caller: (turn latencies in ms, packet arrival gaps in ms). The
/// caller hangs up at the end, or when anything went wrong.
async fn caller(sim: Arc<Simulator>, voice: usize) -> Result<CallResult> {
    let started = Instant::now();
    let mut id = None;
    let r = talk(&sim, voice, &mut id).await;
    if let Some(id) = id {
        sim.hangup(&id);
    }
    let (latencies, gaps) = r?;
    Ok(CallResult {
        started,
        ended: Instant::now(),
        latencies,
        gaps,
    })
}

async fn talk(
    sim: &Simulator,
    voice: usize,
    placed: &mut Option<String>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let dir = super::fixtures_dir(&None);
    let texts = utterance_texts()?;
    let (id, mut ear) = place(
        sim,
        &format!("+49301000{voice:03}"),
        Duration::from_secs(10),
    )
    .await?;
    *placed = Some(id.clone());
    let mut seen: Vec<Heard> = Vec::new();
    let mut since = Instant::now();
    let mut latencies = Vec::new();
    for utterance in ["book_01", "book_02"] {
        wait_for_agent(sim, &id, &mut ear, &mut seen, since, None).await?;
        let f = load_fixture(&dir, utterance, voice, &texts)?;
        let Some(start) = speak(sim, &id, &f.pcm, Duration::from_secs(5)).await? else {
            bail!("call {id} ended early");
        };
        let end = start + f.voiced_end;
        since = end;
        // The reply: the first marked packet after the speech ended.
        let t = Instant::now();
        loop {
            heard(sim, &id, &mut ear, &mut seen);
            if let Some(r) = seen.iter().find(|h| h.begins_reply() && h.at > end) {
                latencies.push(r.at.saturating_duration_since(end).as_secs_f64() * 1000.0);
                break;
            }
            if t.elapsed() > Duration::from_secs(30) {
                bail!("no reply within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    wait_for_agent(sim, &id, &mut ear, &mut seen, since, None).await?;
    heard(sim, &id, &mut ear, &mut seen);
    let gaps = seen
        .windows(2)
        .map(|w| w[1].at.saturating_duration_since(w[0].at).as_secs_f64() * 1000.0)
        .collect();
    Ok((latencies, gaps))
}

/// A caller through a real Asterisk: originate `Local/exten@context` into
/// our app and wait for the call's summary.
async fn ari_caller(
    client: &AriClient,
    args: &LoadArgs,
    app: &str,
    id: String,
    ended: &Mutex<Vec<CallSummary>>,
) -> Result<CallResult> {
    let started = Instant::now();
    let originate = Originate {
        endpoint: format!("Local/{}@{}", args.extension, args.context),
        app: Some(app.to_owned()),
        app_args: Some("loadtest".into()),
        caller_id: Some(format!("\"aiagc loadtest\" <{}>", id.len())),
        timeout: Some(30),
        channel_id: Some(id.clone()),
        ..Originate::default()
    };
    client
        .originate(&originate)
        .await
        .with_context(|| format!("originate {}", originate.endpoint))?;
    let deadline = started + Duration::from_secs(args.call_timeout_s);
    loop {
        let summary = ended
            .lock()
            .map_err(|_| anyhow::anyhow!("summaries poisoned"))?
            .iter()
            .find(|s| s.call == id)
            .map(|s| s.turns.clone());
        if let Some(turns) = summary {
            let latencies: Vec<f64> = turns
                .iter()
                .filter(|t| t.input == "speech")
                .filter_map(|t| t.from_speech_end)
                .map(|d| d.as_secs_f64() * 1000.0)
                .collect();
            if latencies.is_empty() {
                bail!("call {id}: no spoken turn was answered");
            }
            return Ok(CallResult {
                started,
                ended: Instant::now(),
                latencies,
                gaps: Vec::new(),
            });
        }
        if Instant::now() > deadline {
            let _ = client.hangup(&id, "normal").await;
            bail!("call {id} still running after {} s", args.call_timeout_s);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Per-stage p50/p95 over the spoken turns of `ended`.
fn stages(ended: &[CallSummary]) -> Vec<Stage> {
    let turns: Vec<_> = ended
        .iter()
        .flat_map(|s| &s.turns)
        .filter(|t| t.input == "speech")
        .collect();
    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }
    type Pick = fn(&TurnRecord) -> Option<f64>;
    let pick: [(&'static str, Pick); 5] = [
        ("turn end wait", |t| {
            Some(ms(t.from_speech_end?.checked_sub(t.to_first_packet?)?))
        }),
        ("stt", |t| Some(ms(t.stt))),
        ("dialogue", |t| Some(ms(t.dialogue))),
        ("tts first audio", |t| Some(ms(t.tts_first_audio))),
        ("hand-over to packet", |t| t.to_first_packet.map(ms)),
    ];
    pick.iter()
        .map(|(name, f)| {
            let p = percentiles(&turns.iter().filter_map(|t| f(t)).collect::<Vec<_>>());
            Stage {
                stage: name,
                p50: p.p50,
                p95: p.p95,
            }
        })
        .collect()
}

pub(super) async fn run(args: &LoadArgs) -> Result<()> {
    if !matches!(args.target.as_str(), "sim" | "ari") {
        bail!("--target {:?}: use `sim` or `ari`", args.target);
    }
    if args.calls == 0 || args.concurrency == 0 {
        bail!("--calls and --concurrency must be at least 1");
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r <= 1000.0)) {
        bail!("--rate: use calls per second above 0 (and at most 1000)");
    }
    let ari_target = args.target == "ari";
    // The configuration (file, environment) sizes the speech side for both
    // targets (e.g. `speech.backend = "openai"` to measure a media host
    // whose STT runs on a server); the simulator target keeps its own ARI.
    let config = crate::config::Config::load(args.config.as_deref(), &|k| std::env::var(k).ok())?;
    let codec = if ari_target {
        config.codec()?
    } else {
        crate::config::rtp_format(&args.codec).context("--codec")?
    };
    let transport: MediaTransport = if ari_target {
        config.transport()?
    } else {
        args.transport
            .parse()
            .map_err(|e| anyhow::anyhow!("--transport {e}"))?
    };
    // As `aiagc serve` sizes them unless given.
    let mut sizing = config.clone();
    if args.workers > 0 {
        sizing.speech.workers = args.workers;
    }
    if args.threads > 0 {
        sizing.speech.threads = args.threads;
    }
    if !args.schedule.is_empty() {
        sizing.speech.schedule = args.schedule.clone();
    }
    sizing.speech.queue = sizing.speech.queue.max(64);
    let workers = sizing.workers();
    let pool = crate::serve::speech_pool(&sizing)?;
    let pool_stats = pool.stats.clone();
    let (sim, ari, ports, app_name) = if ari_target {
        let app = args
            .app
            .clone()
            .unwrap_or_else(|| format!("{}-loadtest", config.ari.app));
        let mut c = config.clone();
        c.ari.app = app.clone();
        let ports = PortRange::new(config.media.bind.parse()?, config.port_range()?);
        (None, c.ari_config(), ports, app)
    } else {
        let sim = Arc::new(Simulator::start(SimConfig::default()).await?);
        let ari = sim.client_config("aiagc");
        let ports = PortRange::new("127.0.0.1".parse()?, 35000..=36999);
        (Some(sim), ari, ports, "aiagc".to_owned())
    };
    let client_base = ari.base_url.clone();
    let client = AriClient::new(ari.clone())?;
    let (tx, summaries) = crossbeam_channel::unbounded::<CallSummary>();
    let dialogues = if ari_target {
        crate::serve::dialogues(&config)?
    } else {
        let scenario = Scenario::praxis();
        // Before the first call: a build beside the callers' decodes takes
        // a core from them for seconds on a small host.
        {
            let s = scenario.clone();
            tokio::task::spawn_blocking(move || s.warm_grammars()).await?;
        }
        let d: DialogueFactory = Arc::new(move || Box::new(scenario.session()));
        d
    };
    let media = if ari_target {
        crate::serve::media_config(&config)
    } else {
        // The simulated callers hear the first reply packet as the answer:
        // no filler, so a late reply is measured as late. Admission as
        // `aiagc serve` would apply it.
        let served = crate::serve::media_config(&config);
        MediaConfig {
            filler_after: None,
            admit_behind: served.admit_behind,
            busy_message: served.busy_message,
            ..MediaConfig::default()
        }
    };
    let app = App::start(
        ari,
        ports,
        media,
        ControllerConfig {
            format: codec,
            transport,
            hangup_on_setup_failure: true,
            max_calls: config.serve.max_calls,
            ..ControllerConfig::default()
        },
        pool,
        dialogues,
        Some(tx),
    )?;
    // Every ended call's summary, for the callers and the report.
    let ended = Arc::new(Mutex::new(Vec::<CallSummary>::new()));
    let collector = {
        let ended = ended.clone();
        std::thread::spawn(move || {
            for s in summaries {
                if let Ok(mut e) = ended.lock() {
                    e.push(s);
                }
            }
        })
    };
    match &sim {
        Some(sim) => registered(sim).await?,
        None => {
            let t = Instant::now();
            while !app.controller.is_connected() {
                if t.elapsed() > Duration::from_secs(10) {
                    bail!(
                        "app {app_name:?} did not register with Asterisk at {} within 10 s (run `aiagc check`)",
                        client_base
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let (base_rss, _) = memory_kb();
    // Resident memory every second, for the drift over the run.
    let rss_samples = Arc::new(Mutex::new(Vec::<(Instant, u64)>::new()));
    let sampler = {
        let samples = rss_samples.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(mut s) = samples.lock() {
                    s.push((Instant::now(), memory_kb().0));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let args_shared = Arc::new(args.clone());
    let run_id = std::process::id();
    let cpu_start = cpu_seconds();
    let started = Instant::now();
    let mut arrivals = args
        .rate
        .map(|r| super::arrivals::Poisson::new(r, args.seed));
    let mut tasks = Vec::new();
    for i in 0.. {
        let more = match args.duration {
            Some(d) => started.elapsed() < d,
            None => i < args.calls,
        };
        if !more {
            break;
        }
        // As they arrive (`--rate`), or as many at a time as allowed.
        let permit = match arrivals.as_mut().and_then(Iterator::next) {
            Some(at) => {
                if args.duration.is_some_and(|d| at >= d) {
                    break;
                }
                tokio::time::sleep_until(tokio::time::Instant::from_std(started + at)).await;
                None
            }
            None => Some(permits.clone().acquire_owned().await?),
        };
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        let (sim, client, ended, args, app_name) = (
            sim.clone(),
            client.clone(),
            ended.clone(),
            args_shared.clone(),
            app_name.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let r = match sim {
                Some(sim) => caller(sim, i).await,
                None => {
                    let id = format!("aiagc-load-{run_id}-{i}");
                    ari_caller(&client, &args, &app_name, id, &ended).await
                }
            };
            drop(permit);
            r
        }));
        // Finished calls report as they go (a long run holds no handles).
    }
    let total = tasks.len();
    let (mut results, mut failed) = (Vec::new(), 0usize);
    for (done, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok(Ok(r)) => results.push(r),
            Ok(Err(e)) => {
                failed += 1;
                tracing::warn!(error = %e, "load call failed");
            }
            Err(e) => {
                failed += 1;
                tracing::warn!(error = %e, "load call panicked");
            }
        }
        if !args.json {
            let filled = (done + 1) * 30 / total.max(1);
            eprint!(
                "\r[{}{}] {}/{} calls",
                "#".repeat(filled),
                " ".repeat(30 - filled),
                done + 1,
                total
            );
        }
    }
    if !args.json {
        eprintln!();
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_used = cpu_seconds() - cpu_start;
    sampler.abort();
    let (rss_first_tenth, rss_end) = {
        let s = rss_samples
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        let tenth = started + Duration::from_secs_f64(seconds / 10.0);
        let kb = |v: Option<&(Instant, u64)>| v.map_or(0.0, |(_, k)| *k as f64 / 1024.0);
        (kb(s.iter().find(|(t, _)| *t >= tenth)), kb(s.last()))
    };
    // Let teardown finish, then count what is left.
    let t = Instant::now();
    while (app.controller.active_calls() > 0 || app.media.sockets() > 0)
        && t.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, peak) = memory_kb();
    let (channels, bridges) = match &sim {
        Some(sim) => {
            let alive = sim.alive();
            (alive.channels, alive.bridges)
        }
        None => match client.application().await {
            Ok(a) => (a.channel_ids.len(), a.bridge_ids.len()),
            Err(e) => {
                tracing::warn!(error = %e, "could not count what is left in Asterisk");
                (usize::MAX, usize::MAX)
            }
        },
    };
    let leaks = Leaks {
        channels,
        bridges,
        sockets: app.media.sockets(),
        tasks: app.controller.tasks(),
    };
    app.drain(Duration::from_secs(2)).await;
    let _ = collector.join();
    let ended = std::mem::take(&mut *ended.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    // A caller turned away hears the busy message and is hung up: its
    // script fails, by design.
    let turned_away = ended
        .iter()
        .filter(|s| s.outcome.as_deref() == Some("busy"))
        .count();
    let failed = failed.saturating_sub(turned_away);
    let underruns = ended.iter().map(|s| s.rtp.underruns).sum();
    let lost = ended.iter().map(|s| s.rtp.lost).sum();
    results.sort_by_key(|r| r.started);
    let latencies: Vec<f64> = results.iter().flat_map(|r| r.latencies.clone()).collect();
    let tenth = results.len().div_ceil(10);
    let first: Vec<f64> = results[..tenth]
        .iter()
        .flat_map(|r| r.latencies.clone())
        .collect();
    let last: Vec<f64> = results[results.len() - tenth..]
        .iter()
        .flat_map(|r| r.latencies.clone())
        .collect();
    let mut jitter: Vec<f64> = results
        .iter()
        .flat_map(|r| &r.gaps)
        .map(|g| (g - 20.0).abs())
        .collect();
    jitter.sort_by(f64::total_cmp);
    let report = LoadReport {
        workers,
        threads: sizing.speech.threads,
        schedule: sizing.speech.schedule.clone(),
        calls: total,
        rate: args.rate,
        completed: total - failed - turned_away,
        failed,
        turned_away,
        concurrency: args.concurrency,
        target: args.target.clone(),
        transport: match transport {
            MediaTransport::Rtp => "rtp",
            MediaTransport::WebSocket => "websocket",
        }
        .to_owned(),
        format: match transport {
            MediaTransport::Rtp => codec.asterisk_format(),
            MediaTransport::WebSocket => "slin16",
        }
        .to_owned(),
        seconds,
        latency_ms: percentiles(&latencies),
        latency_first_tenth_ms: percentiles(&first),
        latency_last_tenth_ms: percentiles(&last),
        stages_ms: stages(&ended),
        rtp: Rtp {
            underruns,
            pacing_jitter_p99_ms: sim.is_some().then(|| percentile(&jitter, 0.99)),
            lost,
        },
        leaks,
        fillers: ended.iter().map(|s| s.fillers).sum(),
        rss_mb_per_call: peak.saturating_sub(base_rss) as f64 / 1024.0 / args.concurrency as f64,
        rss_mb_first_tenth: rss_first_tenth,
        rss_mb_end: rss_end,
        load: super::arrivals::offered(
            &results
                .iter()
                .map(|r| (r.started - started, r.ended - started))
                .collect::<Vec<_>>(),
            Duration::from_secs_f64(seconds),
        ),
        cpu: {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let turns = latencies.len().max(1) as f64;
            Cpu {
                seconds: cpu_used,
                utilisation: cpu_used / (seconds * cores as f64),
                cores,
                ms_per_turn: cpu_used * 1000.0 / turns,
            }
        },
        cost_per_turn: cost_per_turn(&ended),
        degradations: {
            let s = &pool_stats;
            let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            Degradations {
                late_turn_checks: n(&s.late),
                displaced: n(&s.displaced),
                readings_skipped: n(&s.readings_skipped),
                started_late: n(&s.started_late),
                rejected: n(&s.rejected),
                stale: n(&s.stale),
            }
        },
    };
    if let Some(path) = &args.plot {
        let shown: Vec<super::plot::StageTimes> = report
            .stages_ms
            .iter()
            .map(|s| super::plot::StageTimes {
                name: s.stage,
                p50: s.p50,
                p95: s.p95,
            })
            .collect();
        super::plot::draw(
            path,
            &format!(
                "aiagc loadtest --target {}: {} calls, {} at a time, {} speech workers",
                args.target, total, args.concurrency, workers
            ),
            &latencies,
            &shown,
        )?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report, workers);
    }
    if failed > 0 {
        bail!("{failed} call(s) failed");
    }
    Ok(())
}

fn print_table(r: &LoadReport, workers: usize) {
    let placed = match r.rate {
        Some(rate) => format!("Poisson arrivals of {rate} calls/s"),
        None => format!("concurrency {}", r.concurrency),
    };
    println!(
        "calls {} against {} ({} over {}) in {:.0} s ({placed}, {} speech workers × {} threads, {} order): {} completed, {} failed",
        r.calls, r.target, r.format, r.transport, r.seconds, workers, r.threads, r.schedule, r.completed, r.failed
    );
    if r.turned_away > 0 {
        println!(
            "turned away by admission control (busy message): {}",
            r.turned_away
        );
    }
    let p = |p: &Percentiles| {
        format!(
            "p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms",
            p.p50, p.p95, p.p99
        )
    };
    println!("turn latency          {}", p(&r.latency_ms));
    println!("  first tenth of calls {}", p(&r.latency_first_tenth_ms));
    println!("  last tenth of calls  {}", p(&r.latency_last_tenth_ms));
    println!("{:<22} {:>8} {:>8}", "stage", "p50 ms", "p95 ms");
    for s in &r.stages_ms {
        println!("{:<22} {:>8.1} {:>8.1}", s.stage, s.p50, s.p95);
    }
    match r.rtp.pacing_jitter_p99_ms {
        Some(j) => println!(
            "RTP: underruns {}, lost {}, arrival jitter p99 {j:.1} ms (at the caller, network impairment off)",
            r.rtp.underruns, r.rtp.lost
        ),
        None => println!("RTP: underruns {}, lost {}", r.rtp.underruns, r.rtp.lost),
    }
    if r.fillers > 0 {
        println!(
            "fillers played for late replies: {} (those turns measured to the filler)",
            r.fillers
        );
    }
    println!(
        "left behind: {} channels, {} bridges, {} sockets, {} tasks",
        r.leaks.channels, r.leaks.bridges, r.leaks.sockets, r.leaks.tasks
    );
    println!(
        "memory: {:.1} MB per concurrent call (peak RSS over the baseline); RSS {:.0} MB after a tenth of the run, {:.0} MB at the end",
        r.rss_mb_per_call, r.rss_mb_first_tenth, r.rss_mb_end
    );
    let l = &r.load;
    println!(
        "load: {:.3} calls/s, held {:.1} s on average: {:.1} Erlang offered; {:.1} calls up on average, {} at most",
        l.rate, l.holding_s, l.erlang, l.mean_concurrency, l.peak_concurrency
    );
    println!(
        "CPU: {:.1} s of {} cores in {:.0} s ({:.0} % used), {:.0} CPU-ms per answered caller turn",
        r.cpu.seconds,
        r.cpu.cores,
        r.seconds,
        r.cpu.utilisation * 100.0,
        r.cpu.ms_per_turn
    );
    let c = &r.cost_per_turn;
    println!(
        "per turn ({}): {:.2} decodes ({:.2} at pauses, {:.2} finals, {:.2} fall-backs) of {:.0} ms audio in {:.0} ms ({:.0} CPU-ms); turn model {:.2} runs {:.0} ms; TTS {:.0} ms; workers' CPU-ms {:.0}",
        c.turns,
        c.decodes,
        c.pause_decodes,
        c.final_decodes,
        c.fell_back,
        c.audio_ms,
        c.stt_ms,
        c.stt_cpu_ms,
        c.turn_model_runs,
        c.turn_model_ms,
        c.tts_ms,
        c.cpu_ms
    );
    let d = &r.degradations;
    println!(
        "degradations: {} late turn checks dropped, {} speculative jobs gave way, {} decodes without readings scored, {} urgent jobs started late, {} rejected, {} stale dropped",
        d.late_turn_checks, d.displaced, d.readings_skipped, d.started_late, d.rejected, d.stale
    );
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        for bad in ["", "m", "10x", "-5s", "0s", "9999h", "1.2.3s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
