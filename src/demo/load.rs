//! `aiagc loadtest`: concurrent German callers against the embedded
//! simulator and the whole app (whisper, the scenario, espeak-ng): each
//! caller waits for the greeting, asks for an appointment, names a day and
//! a time, and hangs up. Reports turn latency, RTP health, what was left
//! behind, and memory per call.

use super::live::{heard, load_fixture, place, registered, speak, utterance_texts, wait_for_agent};
use super::percentile;
use aiagc::runtime::app::App;
use aiagc::runtime::media::{CallSummary, DialogueFactory, MediaConfig};
use aiagc::runtime::speech::SpeechPool;
use aiagc_ari::controller::ControllerConfig;
use aiagc_ari::ports::PortRange;
use aiagc_ari::sim::{RtpRecord, SimConfig, Simulator};
use aiagc_engine::Codec;
use aiagc_models::dialogue::scenario::Scenario;
use aiagc_models::stt::{SttConfig, WhisperModel};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `aiagc loadtest`.
#[derive(clap::Args)]
pub struct LoadArgs {
    /// Calls in total.
    #[arg(long, default_value_t = 8)]
    calls: usize,
    /// Calls at the same time.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// `sim` (the embedded simulator). A real Asterisk is not supported yet.
    #[arg(long, default_value = "sim")]
    target: String,
    /// externalMedia format.
    #[arg(long, default_value = "slin16")]
    codec: String,
    /// Speech worker threads (0: one per two cores).
    #[arg(long, default_value_t = 0)]
    workers: usize,
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
    pacing_jitter_p99_ms: f64,
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
    calls: usize,
    completed: usize,
    failed: usize,
    concurrency: usize,
    latency_ms: Percentiles,
    rtp: Rtp,
    leaks: Leaks,
    rss_mb_per_call: f64,
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
async fn caller(sim: Arc<Simulator>, codec: Codec, voice: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut id = None;
    let r = talk(&sim, codec, voice, &mut id).await;
    if let Some(id) = id {
        sim.hangup(&id);
    }
    r
}

async fn talk(
    sim: &Simulator,
    codec: Codec,
    voice: usize,
    placed: &mut Option<String>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let dir = super::fixtures_dir(&None);
    let texts = utterance_texts()?;
    let (id, mut ear) = place(
        sim,
        codec,
        &format!("+49301000{voice:03}"),
        Duration::from_secs(10),
    )
    .await?;
    *placed = Some(id.clone());
    let mut seen: Vec<(RtpRecord, bool)> = Vec::new();
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
            if let Some((r, _)) = seen.iter().find(|(r, _)| r.marker && r.at > end) {
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
        .map(|w| w[1].0.at.saturating_duration_since(w[0].0.at).as_secs_f64() * 1000.0)
        .collect();
    Ok((latencies, gaps))
}

pub(super) async fn run(args: &LoadArgs) -> Result<()> {
    if args.target != "sim" {
        bail!(
            "--target {:?}: only `sim` (the embedded simulator) is supported",
            args.target
        );
    }
    if args.calls == 0 || args.concurrency == 0 {
        bail!("--calls and --concurrency must be at least 1");
    }
    let codec = Codec::from_asterisk_format(&args.codec)?;
    let model_path = aiagc_models::manifest::default_dir().join(aiagc_models::WHISPER_GGML);
    let model = Arc::new(
        WhisperModel::load(&model_path).context("whisper model (run `bash scripts/setup.sh`)")?,
    );
    // One worker per two cores unless given, as `aiagc serve` sizes them.
    let mut sizing = crate::config::Config::default();
    sizing.speech.workers = args.workers;
    let workers = sizing.workers();
    let pool = SpeechPool::start_with_turn_model(
        model,
        workers,
        64,
        SttConfig::default(),
        Some(aiagc_models::manifest::default_dir()),
    )?;
    let scenario = Scenario::praxis();
    let dialogues: DialogueFactory = Arc::new(move || Box::new(scenario.session()));
    let sim = Arc::new(Simulator::start(SimConfig::default()).await?);
    let (tx, summaries) = crossbeam_channel::unbounded::<CallSummary>();
    let app = App::start(
        sim.client_config("aiagc"),
        PortRange::new("127.0.0.1".parse()?, 35000..=36999),
        MediaConfig::default(),
        ControllerConfig {
            format: codec,
            ..ControllerConfig::default()
        },
        pool,
        dialogues,
        Some(tx),
    )?;
    registered(&sim).await?;
    let (base_rss, _) = memory_kb();
    let permits = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let mut tasks = Vec::new();
    for i in 0..args.calls {
        let permit = permits.clone().acquire_owned().await?;
        let sim = sim.clone();
        tasks.push(tokio::spawn(async move {
            let r = caller(sim, codec, i).await;
            drop(permit);
            r
        }));
    }
    let (mut latencies, mut gaps, mut failed) = (Vec::new(), Vec::new(), 0);
    for (done, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok(Ok((l, g))) => {
                latencies.extend(l);
                gaps.extend(g);
            }
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
            let filled = (done + 1) * 30 / args.calls;
            eprint!(
                "\r[{}{}] {}/{} calls",
                "#".repeat(filled),
                " ".repeat(30 - filled),
                done + 1,
                args.calls
            );
        }
    }
    if !args.json {
        eprintln!();
    }
    // Let teardown finish, then count what is left.
    let t = Instant::now();
    while (app.controller.active_calls() > 0 || app.media.sockets() > 0)
        && t.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, peak) = memory_kb();
    let alive = sim.alive();
    let leaks = Leaks {
        channels: alive.channels,
        bridges: alive.bridges,
        sockets: app.media.sockets(),
        tasks: app.controller.tasks(),
    };
    let ended: Vec<CallSummary> = summaries.try_iter().collect();
    let underruns = ended.iter().map(|s| s.rtp.underruns).sum();
    let lost = ended.iter().map(|s| s.rtp.lost).sum();
    app.drain(Duration::from_secs(2)).await;
    latencies.sort_by(f64::total_cmp);
    let mut jitter: Vec<f64> = gaps.iter().map(|g| (g - 20.0).abs()).collect();
    jitter.sort_by(f64::total_cmp);
    let report = LoadReport {
        calls: args.calls,
        completed: args.calls - failed,
        failed,
        concurrency: args.concurrency,
        latency_ms: Percentiles {
            p50: percentile(&latencies, 0.5),
            p95: percentile(&latencies, 0.95),
            p99: percentile(&latencies, 0.99),
        },
        rtp: Rtp {
            underruns,
            pacing_jitter_p99_ms: percentile(&jitter, 0.99),
            lost,
        },
        leaks,
        rss_mb_per_call: peak.saturating_sub(base_rss) as f64 / 1024.0 / args.concurrency as f64,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let r = &report;
        println!(
            "calls {} (concurrency {}, {} speech workers): {} completed, {} failed",
            r.calls, r.concurrency, workers, r.completed, r.failed
        );
        println!(
            "turn latency p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms",
            r.latency_ms.p50, r.latency_ms.p95, r.latency_ms.p99
        );
        println!("RTP: underruns {}, lost {}, arrival jitter p99 {:.1} ms (at the caller, network impairment off)", r.rtp.underruns, r.rtp.lost, r.rtp.pacing_jitter_p99_ms);
        println!(
            "left behind: {} channels, {} bridges, {} sockets, {} tasks",
            r.leaks.channels, r.leaks.bridges, r.leaks.sockets, r.leaks.tasks
        );
        println!(
            "memory: {:.1} MB per concurrent call (peak RSS over the baseline)",
            r.rss_mb_per_call
        );
    }
    if failed > 0 {
        bail!("{failed} call(s) failed");
    }
    Ok(())
}
