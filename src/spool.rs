//! `aiagc spool`: what post-call delivery still holds, and sending it now.

use crate::config::Config;
use aiagc::delivery::spool::{Queue, Spool, SpoolError};
use aiagc::delivery::{Delivery, Mode};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// `aiagc spool …`
#[derive(clap::Subcommand)]
pub enum SpoolAction {
    /// Lists the documents waiting (pending) and refused (failed), with
    /// their attempts and last error.
    List {
        /// Configuration file (default: ./aiagc.toml if present).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// One JSON object per document.
        #[arg(long)]
        json: bool,
    },
    /// Sends what is pending now, retrying with backoff, until nothing is
    /// left or `--max-time` is over (exit status 1 then: the rest stays).
    Replay {
        /// Configuration file (default: ./aiagc.toml if present).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Put the refused documents back first (after fixing the receiver).
        #[arg(long)]
        failed: bool,
        /// Longest run, s.
        #[arg(long, default_value_t = 600)]
        max_time: u64,
    },
}

pub fn run(action: SpoolAction) -> Result<()> {
    let env = |k: &str| std::env::var(k).ok();
    match action {
        SpoolAction::List { config, json } => {
            let c = Config::load(config.as_deref(), &env)?;
            let spool = Spool::open(c.spool_dir())?;
            let mut entries = spool.list(Queue::Pending)?;
            entries.extend(spool.list(Queue::Failed)?);
            if json {
                for e in &entries {
                    println!("{}", serde_json::to_string(e)?);
                }
                return Ok(());
            }
            println!("spool {}", spool.dir().display());
            for e in &entries {
                println!(
                    "  {:<8} {:<60} {:>7} B  attempts {:>3}  {}",
                    format!("{:?}", e.queue).to_lowercase(),
                    e.key,
                    e.bytes,
                    e.attempts.count,
                    e.attempts.last_error.as_deref().unwrap_or("")
                );
            }
            let failed = entries.iter().filter(|e| e.queue == Queue::Failed).count();
            println!("{} pending, {failed} failed", entries.len() - failed);
            Ok(())
        }
        SpoolAction::Replay {
            config,
            failed,
            max_time,
        } => {
            let c = Config::load(config.as_deref(), &env)?;
            let Some(d) = c.delivery()? else {
                bail!("no webhook configured: set [delivery] url or AIAGC_DELIVERY_URL");
            };
            let spool = Spool::open(&d.spool_dir)?;
            if failed {
                let n = spool.requeue_failed()?;
                eprintln!("{n} refused document(s) put back");
            }
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async move {
                let (delivery, task) = match Delivery::start(d, Mode::UntilEmpty) {
                    Ok(x) => x,
                    Err(SpoolError::Locked(dir)) => bail!(
                        "{} is being delivered by a running aiagc, which retries by itself \
                         (and picks up documents put back with --failed within 30 s)",
                        dir.display()
                    ),
                    Err(e) => return Err(e.into()),
                };
                let stats = delivery.stats();
                let finished = tokio::time::timeout(Duration::from_secs(max_time), task).await;
                let left = spool.pending_keys()?.len();
                eprintln!(
                    "delivered {}, failed attempts {}, refused {}, pending {left}",
                    stats.delivered.load(Ordering::Relaxed),
                    stats.retried.load(Ordering::Relaxed),
                    stats.refused.load(Ordering::Relaxed),
                );
                match finished {
                    Ok(r) => r.context("delivery task")?.context("spool")?,
                    Err(_) => {
                        bail!("--max-time {max_time} s over: {left} document(s) stay pending")
                    }
                }
                drop(delivery);
                Ok(())
            })
        }
    }
}
