//! `aiagc originate`: places an outbound call through ARI and follows it
//! (ringing, answered, hung up) by polling the channel, which works with
//! any Asterisk and needs no event subscription.

use crate::config::Config;
use aiagc_ari::client::{AriClient, AriError, Originate};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Options of `aiagc originate`.
#[derive(clap::Args)]
pub struct OriginateArgs {
    /// Endpoint to dial, e.g. `PJSIP/+4930123456@trunk`.
    #[arg(long)]
    endpoint: String,
    /// Dialplan context the answered call runs.
    #[arg(long, default_value = "outbound-calls-ari")]
    context: String,
    /// Extension in that context.
    #[arg(long, default_value = "s")]
    extension: String,
    /// Enter the Stasis app directly instead of a dialplan context.
    #[arg(long)]
    app: bool,
    /// Caller id shown to the callee, e.g. `"Praxis" <+4930999>`.
    #[arg(long)]
    caller_id: Option<String>,
    /// Ring timeout in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u32,
    /// Channel variable `KEY=VALUE` (repeatable).
    #[arg(long = "var")]
    vars: Vec<String>,
    /// Print the channel id and return at once.
    #[arg(long)]
    detach: bool,
    /// Configuration file (default: ./aiagc.toml if present).
    #[arg(long, short)]
    config: Option<std::path::PathBuf>,
}

pub async fn run(args: OriginateArgs) -> Result<()> {
    let config = Config::load(args.config.as_deref(), &|k| std::env::var(k).ok())?;
    let client = AriClient::new(config.ari_config())?;
    let mut variables = BTreeMap::new();
    for v in &args.vars {
        let Some((k, val)) = v.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            bail!("--var {v:?}: use KEY=VALUE");
        };
        variables.insert(k.to_owned(), val.to_owned());
    }
    let o = Originate {
        endpoint: args.endpoint.clone(),
        context: (!args.app).then(|| args.context.clone()),
        extension: (!args.app).then(|| args.extension.clone()),
        priority: (!args.app).then_some(1),
        app: args.app.then(|| config.ari.app.clone()),
        app_args: args.app.then(|| "outbound".to_owned()),
        caller_id: args.caller_id.clone(),
        timeout: Some(args.timeout),
        variables,
        channel_id: None,
    };
    let channel = client
        .originate(&o)
        .await
        .with_context(|| format!("originating {}", args.endpoint))?;
    println!("{}", channel.id);
    if args.detach {
        return Ok(());
    }
    let start = Instant::now();
    let mut last = String::new();
    let mut answered = false;
    loop {
        match client.channel(&channel.id).await {
            Ok(c) => {
                if c.state != last {
                    println!("{:>6.1} s  {}", start.elapsed().as_secs_f64(), c.state);
                    if c.state == "Up" && !answered {
                        answered = true;
                        println!("{:>6.1} s  answered", start.elapsed().as_secs_f64());
                    }
                    last = c.state;
                }
            }
            Err(AriError::NotFound(_)) => {
                println!("{:>6.1} s  hung up", start.elapsed().as_secs_f64());
                if !answered {
                    bail!("the call ended before it was answered");
                }
                return Ok(());
            }
            Err(e) => tracing::warn!(error = %e, "following the call"),
        }
        if !answered && start.elapsed() > Duration::from_secs(args.timeout as u64 + 5) {
            bail!("not answered within {} s", args.timeout);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
