//! `aiagc check`: walks the migration guide's troubleshooting in order and
//! says, for each failure, what to fix. Exit status 0 only when every
//! check passes (warnings allowed).

use crate::config::Config;
use aiagc_ari::client::ExternalMedia;
use aiagc_ari::client::{AriClient, AriError};
use aiagc_ari::stream::{self, StreamEvent};
use aiagc_engine::codec::Decoder;
use aiagc_engine::impair::RtpSender;
use aiagc_engine::Codec;
use std::time::{Duration, Instant};

/// The tone the media check sends, Hz.
const TONE_HZ: f64 = 1000.0;

/// A round trip through Asterisk without any dialplan: two externalMedia
/// channels in one mixing bridge, a 1 kHz tone sent into one in `format`,
/// looked for at the other. This is what a call's replies go through; a
/// format Asterisk does not play back (slin16, Opus) fails here on the
/// user's own Asterisk, with the reason and the fix.
async fn media_path(config: &Config, client: &AriClient, format: Codec) -> Outcome {
    const NAME: &str = "media path";
    let ip: std::net::IpAddr = config.media.bind.parse().unwrap_or([127, 0, 0, 1].into());
    let Ok(range) = config.port_range() else {
        return fail(NAME, "no RTP port range", "[media] ports = \"20000-20999\"");
    };
    let ports = aiagc_ari::ports::PortRange::new(ip, range);
    let sockets = (ports.bind(), ports.bind());
    let (Ok(a), Ok(b)) = sockets else {
        return fail(
            NAME,
            format!("no two free ports in {}:{}", config.media.bind, config.media.ports),
            "[media] bind must be an address of this host that Asterisk can reach, with free ports in the range",
        );
    };
    let tag = format!("aiagc-check-{}", std::process::id());
    let mut made = Vec::new();
    let result = round_trip(client, format, a, b, &tag, &mut made).await;
    remove(client, &made).await;
    let name = format.asterisk_format();
    match result {
        Ok((packets, level)) if packets >= 10 => pass(
            NAME,
            format!(
                "{name}: a {TONE_HZ} Hz tone sent into one externalMedia channel came out of the other ({packets} packets, RMS {level:.3})"
            ),
        ),
        Ok((packets, level)) => match format.rtp_playback() {
            Err(why) => fail(
                NAME,
                format!("{name}: the tone did not come back ({packets} packets, RMS {level:.3}): {why}"),
                "set [media] format = \"g722\" (wideband, static payload type 9) or \"ulaw\"/\"alaw\"",
            ),
            Ok(()) => fail(
                NAME,
                format!("{name}: the tone did not come back ({packets} packets with it, RMS {level:.3})"),
                format!(
                    "Asterisk must reach [media] bind = {} on UDP {} (firewall, routing) and transcode {name} (`module show like codec_`; for g722 `module load codec_g722.so`)",
                    config.media.bind, config.media.ports
                ),
            ),
        },
        Err(e) => fail(
            NAME,
            format!("{name}: {e}"),
            "the externalMedia request failed: chan_rtp.so and res_ari_channels.so must be loaded, and the format known to this Asterisk (its codec module loaded)",
        ),
    }
}

/// Removes what a check made (channels, then bridges), whatever happened.
async fn remove(client: &AriClient, made: &[(&'static str, String)]) {
    for id in made.iter().filter(|(kind, _)| *kind == "channel") {
        let _ = client.hangup(&id.1, "normal").await;
    }
    for id in made.iter().filter(|(kind, _)| *kind == "bridge") {
        let _ = client.destroy_bridge(&id.1).await;
    }
}

/// Sets up the bridge and both externalMedia channels (recording each in
/// `made`), sends the tone from `a` and listens at `b`. Returns the packets
/// that carried the tone and the RMS level of what arrived.
async fn round_trip(
    client: &AriClient,
    format: Codec,
    a: std::net::UdpSocket,
    b: std::net::UdpSocket,
    tag: &str,
    made: &mut Vec<(&'static str, String)>,
) -> Result<(usize, f64), AriError> {
    let io = |e: std::io::Error| AriError::Transport(e.to_string());
    let (a, b) = (
        tokio::net::UdpSocket::from_std(a).map_err(io)?,
        tokio::net::UdpSocket::from_std(b).map_err(io)?,
    );
    let bridge = client.create_bridge(Some(tag)).await?;
    made.push(("bridge", bridge.id.clone()));
    let mut peers = Vec::new();
    for (leg, socket) in [("a", &a), ("b", &b)] {
        let em = client
            .external_media(&ExternalMedia {
                external_host: socket.local_addr().map_err(io)?.to_string(),
                format: format.asterisk_format().into(),
                channel_id: Some(format!("{tag}-{leg}")),
            })
            .await?;
        made.push(("channel", em.id.clone()));
        peers.push(em.unicast_rtp_peer().ok_or_else(|| {
            AriError::Decode("externalMedia channel without UNICASTRTP_LOCAL_ADDRESS/PORT".into())
        })?);
        client.add_new_channel(&bridge.id, &em.id).await?;
    }
    let (to_a, from_b) = (peers[0], peers[1]);
    let mut sender =
        RtpSender::new(format, 1, 160, 0xA1A6_C0DE).map_err(|e| AriError::Decode(e.to_string()))?;
    let mut decoder = Decoder::new(format).map_err(|e| AriError::Decode(e.to_string()))?;
    let n = format.frame_samples();
    let rate = format.pcm_rate() as f64;
    let mut frame = vec![0i16; n];
    let mut decoded = vec![0i16; aiagc_engine::codec::MAX_DECODED_SAMPLES];
    let mut heard: Vec<i16> = Vec::new();
    let mut with_tone = 0;
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    let mut sent = 0u64;
    // One second of tone, then half a second to let the last of it arrive.
    while start.elapsed() < Duration::from_millis(1500) {
        let due = start + Duration::from_millis(20 * sent);
        if sent < 50 {
            for (i, s) in frame.iter_mut().enumerate() {
                let t = (sent as usize * n + i) as f64 / rate;
                *s = (9000.0 * (2.0 * std::f64::consts::PI * TONE_HZ * t).sin()) as i16;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()), if sent < 50 => {
                let _ = a.send_to(&sender.packet(&frame), to_a).await;
                sent += 1;
            }
            r = b.recv_from(&mut buf) => {
                let Ok((len, from)) = r else { continue };
                if from != from_b {
                    continue;
                }
                let Ok(v) = aiagc_engine::packet::parse(&buf[..len]) else { continue };
                if let Ok(k) = decoder.decode(v.payload, &mut decoded) {
                    if tone_share(&decoded[..k], rate) > 0.5 {
                        with_tone += 1;
                    }
                    heard.extend_from_slice(&decoded[..k]);
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(20)), if sent >= 50 => {}
        }
    }
    let level = if heard.is_empty() {
        0.0
    } else {
        (heard
            .iter()
            .map(|&s| (s as f64 / 32768.0).powi(2))
            .sum::<f64>()
            / heard.len() as f64)
            .sqrt()
    };
    Ok((with_tone, level))
}

/// The WebSocket transport's path (`[media] transport = "websocket"`):
/// two WebSocket media channels in one bridge, connected to Asterisk's
/// `/media/<id>` as calls are, a 1 kHz tone sent into one in slin16 and
/// looked for at the other.
async fn websocket_path(client: &AriClient) -> Outcome {
    const NAME: &str = "WebSocket media";
    let tag = format!("aiagc-check-ws-{}", std::process::id());
    let mut made = Vec::new();
    let result = websocket_round_trip(client, &tag, &mut made).await;
    remove(client, &made).await;
    match result {
        Ok((frames, level)) if frames >= 10 => pass(
            NAME,
            format!("slin16: a {TONE_HZ} Hz tone sent into one WebSocket media channel came out of the other ({frames} frames, RMS {level:.3})"),
        ),
        Ok((frames, level)) => fail(
            NAME,
            format!("slin16: the tone did not come back ({frames} frames with it, RMS {level:.3})"),
            "Asterisk connected both channels but did not carry the audio: look at its log for chan_websocket warnings",
        ),
        Err(e) => fail(
            NAME,
            e,
            format!(
                "needs Asterisk 20.16 / 21.11 / 22.6 or later with chan_websocket.so loaded (`module load chan_websocket.so`), and this host reaching {}",
                client.config().media_url("<id>")
            ),
        ),
    }
}

async fn websocket_round_trip(
    client: &AriClient,
    tag: &str,
    made: &mut Vec<(&'static str, String)>,
) -> Result<(usize, f64), String> {
    use aiagc_ari::media_ws::{Incoming, MediaSocket};
    let bridge = client
        .create_bridge(Some(tag))
        .await
        .map_err(|e| e.to_string())?;
    made.push(("bridge", bridge.id.clone()));
    let mut sockets = Vec::new();
    for leg in ["a", "b"] {
        let em = client
            .external_media_websocket("slin16", Some(&format!("{tag}-{leg}")))
            .await
            .map_err(|e| format!("externalMedia transport=websocket: {e}"))?;
        made.push(("channel", em.id.clone()));
        let id = em
            .media_connection_id()
            .ok_or("externalMedia answered without MEDIA_WEBSOCKET_CONNECTION_ID")?;
        let url = client.config().media_url(id);
        let tls = client.config().ws_connector().map_err(|e| e.to_string())?;
        let socket = MediaSocket::connect(&url, true, client.config().timeout, tls)
            .await
            .map_err(|e| e.to_string())?;
        client
            .add_new_channel(&bridge.id, &em.id)
            .await
            .map_err(|e| e.to_string())?;
        sockets.push(socket);
    }
    let mut b = sockets.pop().ok_or("no second leg")?;
    let mut a = sockets.pop().ok_or("no first leg")?;
    // One second of tone at once: Asterisk paces it.
    let tone: Vec<u8> = (0..16000)
        .flat_map(|i| {
            let t = i as f64 / 16000.0;
            ((9000.0 * (2.0 * std::f64::consts::PI * TONE_HZ * t).sin()) as i16).to_le_bytes()
        })
        .collect();
    a.send_audio(&tone).await.map_err(|e| e.to_string())?;
    let (mut with_tone, mut sum, mut n) = (0usize, 0.0f64, 0usize);
    let until = Instant::now() + Duration::from_millis(1500);
    while let Ok(got) = tokio::time::timeout_at(until.into(), b.recv()).await {
        match got {
            Incoming::Audio(bytes) => {
                let pcm: Vec<i16> = bytes
                    .chunks_exact(2)
                    .map(|p| i16::from_le_bytes([p[0], p[1]]))
                    .collect();
                if tone_share(&pcm, 16000.0) > 0.5 {
                    with_tone += 1;
                }
                sum += pcm
                    .iter()
                    .map(|&s| (s as f64 / 32768.0).powi(2))
                    .sum::<f64>();
                n += pcm.len();
            }
            Incoming::Closed(why) => {
                return Err(format!("Asterisk closed the media WebSocket: {why}"))
            }
            _ => {}
        }
    }
    a.close().await;
    b.close().await;
    Ok((
        with_tone,
        if n == 0 { 0.0 } else { (sum / n as f64).sqrt() },
    ))
}

/// The share of a frame's power at the test tone (Goertzel).
fn tone_share(x: &[i16], rate: f64) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * TONE_HZ / rate;
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut total = 0.0;
    for &v in x {
        let v = v as f64;
        total += v * v;
        let s0 = v + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    // A pure tone of N samples gives power = total · N / 2.
    if total <= 0.0 {
        0.0
    } else {
        (2.0 * power / (total * x.len() as f64)).min(1.0)
    }
}

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

/// Runs every check against the configured Asterisk and host; the media
/// path is proven in `format` (the configured one unless overridden).
pub async fn run(config: &Config, format: Codec) -> Vec<Outcome> {
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
    let app_ok = registered.is_ok();
    out.push(match registered {
        Ok(()) => pass("app registration", format!("`{}` registered over the events WebSocket", config.ari.app)),
        Err(why) => fail(
            "app registration",
            why,
            "the events WebSocket (/ari/events) must open: res_http_websocket.so loaded, and a proxy in between must pass `Upgrade: websocket`",
        ),
    });
    // 6: the media path, for real, while the app is registered (the
    // externalMedia channels enter it).
    if app_ok {
        match config.transport() {
            Ok(aiagc_ari::controller::MediaTransport::WebSocket) => {
                out.push(websocket_path(&client).await)
            }
            _ => out.push(media_path(config, &client, format).await),
        }
    }
    let _ = stop.send(true);
    ws.abort();
    // 7: RTP ports.
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
    // 8: models.
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
