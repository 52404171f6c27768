//! `aiagc serve`: the Stasis app against a real Asterisk until SIGINT or
//! SIGTERM, then a drain: no new calls, calls in progress get the grace
//! period, then the rest are hung up.

use crate::config::Config;
use aiagc::delivery::{Delivery, Mode};
use aiagc::runtime::app::App;
use aiagc::runtime::media::{DialogueFactory, MediaConfig};
use aiagc::runtime::speech::SpeechPool;
use aiagc_ari::client::AriClient;
use aiagc_ari::controller::ControllerConfig;
use aiagc_ari::ports::PortRange;
use aiagc_dialogue::llm::{LlmClient, LlmDialogue};
use aiagc_dialogue::scenario::Scenario;
use aiagc_dialogue::tools::Toolbox;
use aiagc_models::stt::{SttBackend, SttConfig, WhisperModel};
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;

/// Builds the scenario's answer grammars on a thread of their own: the
/// first caller to reach a state with a big one does not wait seconds.
pub fn warm_in_background(scenario: &Arc<Scenario>) {
    let s = scenario.clone();
    let spawned = std::thread::Builder::new()
        .name("grammars".into())
        .spawn(move || {
            // Lowest priority: on a small host the first calls' whisper
            // threads must not wait behind it (they spin when a core is
            // taken). SAFETY: setpriority on the calling thread (who 0);
            // a refusal leaves the default priority.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
            s.warm_grammars()
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "grammars not built ahead: the first caller of each state waits");
    }
}

/// The dialogue of each call, as configured.
pub fn dialogues(config: &Config) -> Result<DialogueFactory> {
    let scenario = if config.dialogue.scenario.is_empty() {
        Scenario::praxis()
    } else {
        let path = &config.dialogue.scenario;
        Scenario::from_toml(
            &std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        )
        .with_context(|| format!("scenario {path}"))?
    };
    crate::serve::warm_in_background(&scenario);
    let tools = if config.tools.is_empty() {
        None
    } else {
        let specs = config.tool_specs(&|k| std::env::var(k).ok())?;
        Some(Toolbox::new(specs).context("[[tools]]")?)
    };
    for name in scenario.tools_used() {
        if !tools.as_ref().is_some_and(|t| t.has(&name)) {
            anyhow::bail!(
                "scenario `{}` calls tool `{name}`, which no [[tools]] entry declares",
                scenario.spec().name
            );
        }
    }
    Ok(match config.dialogue.backend.as_str() {
        "llm" => {
            let client = LlmClient::new(config.llm())?;
            let context = config.dialogue.llm.context.clone();
            Arc::new(move || {
                let d = LlmDialogue::new(client.clone(), &scenario, &context);
                Box::new(match &tools {
                    Some(t) => d.with_tools(t.clone()),
                    None => d,
                })
            })
        }
        _ => Arc::new(move || {
            let d = scenario.session();
            Box::new(match &tools {
                Some(t) => d.with_tools(t.clone()),
                None => d,
            })
        }),
    })
}

/// Media settings from the configuration.
pub fn media_config(config: &Config) -> MediaConfig {
    let mut m = MediaConfig::default();
    m.endpoint.hangover = Duration::from_millis(config.media.hangover_ms);
    m.semantic_endpointing = config.media.semantic_endpointing;
    m.turn_model = config.media.turn_model;
    m.turn_ceiling = Duration::from_millis(config.media.turn_ceiling_ms);
    m.no_input = Duration::from_secs(config.media.no_input_s);
    m.filler_after = (config.media.filler_after_ms > 0)
        .then(|| Duration::from_millis(config.media.filler_after_ms));
    m.filler_text = config.media.filler_text.clone();
    m.echo.enabled = config.media.echo_cancel;
    // Validated with the configuration.
    m.rtp_source = config.media.rtp_source.parse().unwrap_or_default();
    if !config.media.records_dir.is_empty() {
        m.records_dir = Some(config.media.records_dir.clone().into());
        m.record_audio = config.media.record_audio;
    }
    // Validated with the configuration.
    m.outbound = config.outbound().unwrap_or_default();
    m.barge_in = config.barge_in().unwrap_or_default();
    m.admit_behind = (config.serve.admit_behind_ms > 0)
        .then(|| Duration::from_millis(config.serve.admit_behind_ms));
    m.busy_message = config.serve.busy_message.clone();
    m
}

/// Local whisper (loaded once, shared) or the configured transcription
/// server.
pub fn stt_backend(config: &Config) -> Result<SttBackend> {
    if config.speech.backend == "openai" {
        let remote = aiagc_models::stt_remote::RemoteStt::new(config.stt_remote()?)?;
        tracing::info!(url = %remote.url(), "speech-to-text on a server");
        return Ok(SttBackend::Remote(remote));
    }
    let model_path = config.models_dir().join(aiagc_models::WHISPER_DEFAULT);
    let model = WhisperModel::load(&model_path).with_context(|| {
        format!(
            "whisper model {} (run `bash scripts/setup.sh`)",
            model_path.display()
        )
    })?;
    Ok(SttBackend::Whisper(Arc::new(model)))
}

/// The speech workers as `[speech]` and `[media]` configure them: the STT
/// backend, worker and thread counts, queue, turn model and reply level.
pub fn speech_pool(config: &Config) -> Result<SpeechPool> {
    let stt = SttConfig {
        language: config.ari.language.clone(),
        threads: config.speech.threads,
        use_grammar: config.speech.grammar,
        nbest: config.speech.nbest,
        ..SttConfig::default()
    };
    let pool = SpeechPool::start_scheduled(
        stt_backend(config)?,
        config.workers(),
        config.speech.queue,
        stt,
        config.media.turn_model.then(|| config.models_dir()),
        config.schedule()?,
    )?;
    pool.set_tts_level(config.speech.tts_level_lufs);
    Ok(pool)
}

pub async fn run(config: Config) -> Result<()> {
    let ari = config.ari_config();
    tracing::info!(?config, "starting");
    match AriClient::new(ari.clone())?.info().await {
        Ok(info) => tracing::info!(
            version = %info.system.map(|s| s.version).unwrap_or_default(),
            "Asterisk reachable"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "Asterisk not reachable yet (retrying in the background); run `aiagc check`")
        }
    }
    let pool = speech_pool(&config)?;
    let bind: std::net::IpAddr = config.media.bind.parse()?;
    let metrics = Arc::new(aiagc::runtime::metrics::Metrics::default());
    let mut media = media_config(&config);
    let delivery = match config.delivery()? {
        Some(d) => {
            let spool = d.spool_dir.clone();
            let url = d.url.clone();
            let (delivery, _task) = Delivery::start(d, Mode::Serve)
                .with_context(|| format!("post-call delivery (spool {})", spool.display()))?;
            metrics.set_delivery_source(delivery.stats());
            tracing::info!(%url, spool = %spool.display(), "post-call delivery");
            media.delivery = Some(delivery.clone());
            Some(delivery)
        }
        None => None,
    };
    let app = App::start_with_metrics(
        ari,
        PortRange::new(bind, config.port_range()?),
        media,
        ControllerConfig {
            format: config.codec()?,
            transport: config.transport()?,
            hangup_on_setup_failure: true,
            drain_to: config.drain_to()?,
            max_calls: config.serve.max_calls,
        },
        pool,
        dialogues(&config)?,
        None,
        Some(metrics.clone()),
    )?;
    if !config.metrics.bind.is_empty() {
        let controller = app.controller.clone();
        let addr = aiagc::runtime::metrics::serve(
            config.metrics.bind.parse()?,
            metrics,
            Arc::new(move || controller.admits()),
        )
        .await
        .with_context(|| format!("metrics server on {}", config.metrics.bind))?;
        tracing::info!(%addr, "metrics and health");
    }
    tracing::info!(app = %config.ari.app, workers = config.workers(), "serving");
    shutdown_signal().await;
    let grace = Duration::from_secs(config.serve.drain_grace_s);
    tracing::info!(
        calls = app.controller.active_calls(),
        grace_s = grace.as_secs(),
        "draining"
    );
    let cut = app.drain(grace).await;
    if let Some(d) = &delivery {
        // The last calls' documents are on disk before we go; what is not
        // delivered yet goes out with the next start or `aiagc spool replay`.
        d.flush().await;
    }
    tracing::info!(cut, "stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
