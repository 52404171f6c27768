//! `aiagc campaign FILE.csv`: the command line of [`aiagc::campaign`].

use crate::config::Config;
use aiagc::campaign::plan::{Policy, Window};
use aiagc::campaign::{read_list, CampaignConfig};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::Duration;

/// Options of `aiagc campaign`.
#[derive(clap::Args)]
pub struct CampaignArgs {
    /// CSV with a `number` column; other columns become channel variables
    /// `AIAGC_<COLUMN>` (the dialplan and the scenario can use them).
    list: PathBuf,
    /// Endpoint per number, e.g. `PJSIP/{number}@trunk`.
    #[arg(long)]
    endpoint: String,
    /// Where answered calls continue (into `Stasis(aiagc,outbound)`).
    #[arg(long, default_value = "outbound-calls-ari")]
    context: String,
    /// Extension in that context.
    #[arg(long, default_value = "s")]
    extension: String,
    /// Calls started per second, at most.
    #[arg(long, default_value_t = 1.0)]
    cps: f64,
    /// Calls ringing or talking at once, at most.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Attempts per number (busy, no answer and congestion are tried again).
    #[arg(long, default_value_t = 3)]
    attempts: u32,
    /// Wait before the next attempt of a number, s.
    #[arg(long, default_value_t = 600)]
    retry_after: u64,
    /// Hours calls may be placed, local time, e.g. `09:00-18:00`.
    #[arg(long)]
    window: Option<String>,
    /// Days for `--window`: `mon-fri`, `mon,wed,sat` or `all`.
    #[arg(long, default_value = "mon-fri")]
    days: String,
    /// Ring timeout, s.
    #[arg(long, default_value_t = 30)]
    timeout: u32,
    /// Caller id shown to the callee.
    #[arg(long)]
    caller_id: Option<String>,
    /// Progress file (JSON lines): numbers finished there are skipped.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Configuration file (default: ./aiagc.toml if present).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

pub fn run(args: CampaignArgs) -> Result<()> {
    let config = Config::load(args.config.as_deref(), &|k| std::env::var(k).ok())?;
    if !args.endpoint.contains("{number}") {
        bail!("--endpoint {:?} has no {{number}}", args.endpoint);
    }
    if !(args.cps > 0.0 && args.cps <= 100.0) {
        bail!("--cps {}: use more than 0 and at most 100", args.cps);
    }
    if args.concurrency == 0 || args.attempts == 0 {
        bail!("--concurrency and --attempts must be at least 1");
    }
    let window = args
        .window
        .as_deref()
        .map(|w| Window::parse(w, &args.days))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let text = std::fs::read_to_string(&args.list)
        .with_context(|| format!("reading {}", args.list.display()))?;
    let rows = read_list(&text).with_context(|| format!("in {}", args.list.display()))?;
    let mut ari = config.ari_config();
    ari.app = format!("{}-campaign", config.ari.app);
    let campaign = CampaignConfig {
        ari,
        endpoint: args.endpoint,
        context: args.context,
        extension: args.extension,
        caller_id: args.caller_id,
        ring_timeout: args.timeout,
        policy: Policy {
            cps: args.cps,
            concurrency: args.concurrency,
            attempts: args.attempts,
            retry_after: Duration::from_secs(args.retry_after),
            window,
        },
        state: args.state,
    };
    let total = rows.len();
    let rt = tokio::runtime::Runtime::new()?;
    let results = rt.block_on(aiagc::campaign::run(campaign, rows, &mut |r| {
        println!(
            "{:<20} {:<11} attempts {}{}",
            r.number,
            r.outcome,
            r.attempts,
            r.channel
                .as_deref()
                .map(|c| format!("  channel {c}"))
                .unwrap_or_default()
        );
    }))?;
    let mut counts = std::collections::BTreeMap::new();
    for r in &results {
        *counts.entry(r.outcome.as_str()).or_insert(0) += 1;
    }
    println!(
        "{} of {total} numbers finished: {}",
        results.len(),
        counts
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
