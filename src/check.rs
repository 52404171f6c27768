//! `aiagc check`: walks the migration guide's troubleshooting in order and
//! says, for each failure, what to fix. Exit status 0 only when every
//! check passes (warnings allowed).

use crate::config::Config;
use aiagc_ari::client::{AriClient, AriError};
use aiagc_ari::stream::{self, StreamEvent};
use std::time::Duration;

/// One line of the report.
pub struct Outcome {
    /// What was checked.
    pub name: &'static str,
    /// `Ok(detail)`, a warning, or the problem and its fix.
    pub result: Result<String, (String, String)>,
    /// Passed, but with a warning in `result`'s detail.
    pub warning: bool,
}

fn fail(name: &'static str, problem: impl Into<String>, fix: impl Into<String>) -> Outcome {
    Outcome {
        name,
        result: Err((problem.into(), fix.into())),
        warning: false,
    }
}

fn pass(name: &'static str, detail: impl Into<String>) -> Outcome {
    Outcome {
        name,
        result: Ok(detail.into()),
        warning: false,
    }
}

/// Runs every check against the configured Asterisk and host.
pub async fn run(config: &Config) -> Vec<Outcome> {
    let ari = config.ari_config();
    let mut out = Vec::new();
    let base = ari.base_url.clone();
    let client = match AriClient::new(ari.clone()) {
        Ok(c) => c,
        Err(e) => {
            out.push(fail("ARI client", e.to_string(), "report this as a bug"));
            return out;
        }
    };
    // 1-3: HTTP, credentials, version, in one request.
    match client.info().await {
        Ok(info) => {
            out.push(pass("ARI reachable", base.clone()));
            out.push(pass(
                "credentials",
                format!("user `{}` accepted", config.ari.username),
            ));
            let version = info.system.map(|s| s.version).unwrap_or_default();
            let major: Option<u32> = version.split('.').next().and_then(|m| m.parse().ok());
            out.push(match major {
                Some(m) if m >= 20 => pass("Asterisk version", version),
                Some(_) => Outcome {
                    name: "Asterisk version",
                    result: Ok(format!("{version}: below 20, untested (externalMedia and ARI behaviour differ); upgrade to 20 LTS or 22")),
                    warning: true,
                },
                None => Outcome {
                    name: "Asterisk version",
                    result: Ok(format!("{version:?} not recognised")),
                    warning: true,
                },
            });
        }
        Err(AriError::Unauthorized) => {
            out.push(pass("ARI reachable", base.clone()));
            out.push(fail(
                "credentials",
                format!("HTTP 401 for user `{}`", config.ari.username),
                "in ari.conf, a section [USER] with type = user, read_only = no and password = … must match ASTERISK_ARI_USERNAME / ASTERISK_ARI_PASSWORD; then `asterisk -rx \"module reload res_ari.so\"`",
            ));
            return out;
        }
        Err(AriError::NotFound(_)) => {
            out.push(fail(
                "ARI reachable",
                format!("{base}/asterisk/info answered 404"),
                "Asterisk's HTTP server answers but not ARI at /ari: an http.conf `prefix` moves it to /PREFIX/ari (aiagc expects none), or res_ari.so is not loaded (`module load res_ari.so`)",
            ));
            return out;
        }
        Err(e) => {
            out.push(fail(
                "ARI reachable",
                format!("{base}: {e}"),
                format!(
                    "check http.conf ([general] enabled = yes, bindaddr, bindport = {}), that ASTERISK_ARI_HOST/PORT point at it, and firewalls between the hosts",
                    config.ari.port
                ),
            ));
            return out;
        }
    }
    // 4: the ARI resources aiagc uses.
    let mut missing = Vec::new();
    if let Err(e) = client.channels().await {
        missing.push(("res_ari_channels.so", e));
    }
    if let Err(e) = client.bridges().await {
        missing.push(("res_ari_bridges.so", e));
    }
    out.push(if missing.is_empty() {
        pass("ARI resources", "channels, bridges")
    } else {
        let names: Vec<&str> = missing.iter().map(|(m, _)| *m).collect();
        fail(
            "ARI resources",
            missing
                .iter()
                .map(|(m, e)| format!("{m}: {e}"))
                .collect::<Vec<_>>()
                .join("; "),
            format!(
                "load the modules: {}",
                names
                    .iter()
                    .map(|m| format!("`module load {m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    });
    // 5: the app registers over the events WebSocket.
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let ws = tokio::spawn(stream::run(ari.clone(), tx, stop_rx));
    let connected = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(e) = rx.recv().await {
            match e {
                StreamEvent::Connected => return Ok(()),
                StreamEvent::Disconnected(why) => return Err(why),
                _ => {}
            }
        }
        Err("stream ended".into())
    })
    .await;
    let registered = match connected {
        Ok(Ok(())) => client
            .application()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Ok(Err(why)) => Err(why),
        Err(_) => Err("no WebSocket connection within 5 s".into()),
    };
    out.push(match registered {
        Ok(()) => pass("app registration", format!("`{}` registered over the events WebSocket", config.ari.app)),
        Err(why) => fail(
            "app registration",
            why,
            "the events WebSocket (/ari/events) must open: res_http_websocket.so loaded, and a proxy in between must pass `Upgrade: websocket`",
        ),
    });
    let _ = stop.send(true);
    ws.abort();
    // 6: RTP ports.
    out.push(match config.port_range() {
        Ok(range) => {
            let ip: std::net::IpAddr = config.media.bind.parse().unwrap_or([127, 0, 0, 1].into());
            let ports = aiagc_ari::ports::PortRange::new(ip, range.clone());
            match ports.bind() {
                Ok(s) => pass("RTP ports", format!("{} bindable (tried {:?})", config.media.ports, s.local_addr().ok())),
                Err(e) => fail(
                    "RTP ports",
                    format!("{}:{}: {e}", config.media.bind, config.media.ports),
                    "[media] bind must be an address of this host that Asterisk can reach, and the range must have free even ports",
                ),
            }
        }
        Err(e) => fail("RTP ports", e.to_string(), "[media] ports = \"20000-20999\""),
    });
    // 7: models.
    out.push(models(config));
    if config.speech.backend == "openai" {
        let config = config.clone();
        out.push(
            tokio::task::spawn_blocking(move || stt_server(&config))
                .await
                .unwrap_or_else(|e| fail("STT server", e.to_string(), "report this as a bug")),
        );
    }
    out
}

fn models(config: &Config) -> Outcome {
    use aiagc_models::manifest::{check, FileState, Manifest};
    let dir = config.models_dir();
    let Ok(manifest) = Manifest::embedded() else {
        return fail("models", "manifest unreadable", "report this as a bug");
    };
    let bad: Vec<String> = manifest
        .files
        .iter()
        .filter(|f| check(&dir, f, false) != FileState::Ok)
        .map(|f| f.path.clone())
        .collect();
    if !bad.is_empty() {
        return fail(
            "models",
            format!(
                "{} missing or damaged in {}: {}",
                bad.len(),
                dir.display(),
                bad.join(", ")
            ),
            "run `bash scripts/setup.sh` (or set AIAGC_MODELS to the folder it filled)",
        );
    }
    match aiagc_models::stt::WhisperModel::load(&dir.join(aiagc_models::WHISPER_DEFAULT)) {
        Ok(_) => pass(
            "models",
            format!(
                "{} files in {}, whisper loads",
                manifest.files.len(),
                dir.display()
            ),
        ),
        Err(e) => fail(
            "models",
            format!("whisper: {e}"),
            "run `aiagc models convert --force`",
        ),
    }
}

/// The transcription server answers a second of silence.
fn stt_server(config: &Config) -> Outcome {
    let remote = match config
        .stt_remote()
        .and_then(|c| Ok(aiagc_models::stt_remote::RemoteStt::new(c)?))
    {
        Ok(r) => r,
        Err(e) => {
            return fail(
                "STT server",
                e.to_string(),
                "fix [speech.remote] in aiagc.toml",
            )
        }
    };
    let stt = aiagc_models::stt::SttConfig {
        language: config.ari.language.clone(),
        ..Default::default()
    };
    match remote.transcribe(&vec![0.0; 16000], &stt) {
        Ok(t) => pass(
            "STT server",
            format!("{} answered in {} ms", remote.url(), t.elapsed.as_millis()),
        ),
        Err(e) => fail(
            "STT server",
            e.to_string(),
            format!(
                "check that {} serves the OpenAI transcription API with model `{}` (speech.remote.base_url, .model, AIAGC_STT_API_KEY)",
                remote.url(),
                config.speech.remote.model
            ),
        ),
    }
}

/// Prints the report; true when nothing failed.
pub fn print(outcomes: &[Outcome]) -> bool {
    let mut ok = true;
    for o in outcomes {
        match &o.result {
            Ok(d) if o.warning => println!("WARN {:<18} {d}", o.name),
            Ok(d) => println!("ok   {:<18} {d}", o.name),
            Err((problem, fix)) => {
                ok = false;
                println!("FAIL {:<18} {problem}\n     fix: {fix}", o.name);
            }
        }
    }
    ok
}
