//! aiagc and Asterisk over TLS, for hosts whose network is not their own:
//! a real Asterisk 22.10.1 with `http.conf` `tlsenable` and a certificate
//! this test makes (its own CA, the server's name 127.0.0.1), ARI over
//! `https`, events over `wss`, and a whole call whose media runs over the
//! WebSocket transport on `wss`. Asterisk's certificate is checked: without
//! the CA file every one of them is refused.

mod common;
use common::asterisk::{free_port, read_wav, rms, Asterisk, Setup, ARI_PASSWORD, ARI_USER};

use aiagc::runtime::app::App;
use aiagc::runtime::media::MediaConfig;
use aiagc::runtime::speech::SpeechPool;
use aiagc_ari::client::{AriClient, AriConfig, Originate};
use aiagc_ari::controller::{ControllerConfig, MediaTransport};
use aiagc_ari::media_ws::{Incoming, MediaEvent, MediaSocket};
use aiagc_ari::ports::PortRange;
use aiagc_ari::stream::StreamEvent;
use aiagc_engine::Codec;
use aiagc_models::stt::{SttConfig, WhisperModel};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`.
fn certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (installed by the setup)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=aiagc test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
}

struct Tls {
    ast: Asterisk,
    port: u16,
    ca: std::path::PathBuf,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(dialplan: &str) -> Tls {
    let dir =
        std::env::temp_dir().join(format!("aiagc-tls-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
    let port = free_port();
    let plain = free_port();
    let http = format!(
        "[general]\nenabled = yes\nbindaddr = 127.0.0.1\nbindport = {plain}\n\
         tlsenable = yes\ntlsbindaddr = 127.0.0.1:{port}\n\
         tlscertfile = {d}/server.pem\ntlsprivatekey = {d}/server.key\n",
        d = dir.display()
    );
    let ast = Asterisk::start(Setup {
        dialplan: dialplan.to_owned(),
        files: vec![("http.conf".into(), http)],
        ..Setup::default()
    });
    Tls {
        ast,
        port,
        ca: dir.join("ca.pem"),
        _dir: TempDir(dir),
    }
}

impl Tls {
    fn ari(&self, app: &str, ca: bool) -> AriConfig {
        AriConfig::new("127.0.0.1", self.port, ARI_USER, ARI_PASSWORD, app)
            .with_tls(ca.then(|| self.ca.clone()))
    }
}

async fn events_connect(ari: &AriConfig) -> Result<(), String> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(aiagc_ari::stream::run(ari.clone(), tx, stop_rx));
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match rx.recv().await {
                Some(StreamEvent::Connected) => return Ok(()),
                Some(StreamEvent::Disconnected(why)) => return Err(why),
                Some(_) => {}
                None => return Err("stream ended".to_owned()),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err("no connection in 5 s".into()));
    let _ = stop.send(true);
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ari_events_and_media_over_tls_with_the_certificate_checked() {
    let tls = start("");
    // ARI over https with the CA: Asterisk answers.
    let client = AriClient::new(tls.ari("tlsprobe", true)).unwrap();
    let info = client.info().await.expect("ARI over https");
    let version = info.system.map(|s| s.version).unwrap_or_default();
    assert!(version.starts_with("22.10"), "{version}");
    // Without it, the certificate is refused (system roots do not know it).
    let untrusted = AriClient::new(tls.ari("tlsprobe", false)).unwrap();
    let refused = untrusted.info().await;
    eprintln!("without the CA: {refused:?}");
    assert!(
        matches!(&refused, Err(aiagc_ari::client::AriError::Transport(m)) if m.contains("certificate verify failed")),
        "{refused:?}"
    );
    // A CA file that is not there: a clear error before any connection.
    let mut missing = tls.ari("tlsprobe", true);
    missing.ca_file = Some("/nonexistent/ca.pem".into());
    let e = AriClient::new(missing).expect_err("refused");
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    // Events over wss: with the CA connected, without it refused.
    events_connect(&tls.ari("tlsprobe", true))
        .await
        .expect("events over wss");
    let why = events_connect(&tls.ari("tlsprobe", false))
        .await
        .expect_err("events refused without the CA");
    eprintln!("events without the CA: {why}");
    // Media over wss: the WebSocket channel Asterisk listens for.
    let ari = tls.ari("tlsprobe", true);
    let em = client
        .external_media_websocket("slin16", Some("tls-em"))
        .await
        .unwrap();
    let url = ari.media_url(em.media_connection_id().unwrap());
    assert!(url.starts_with("wss://127.0.0.1:"), "{url}");
    let without = MediaSocket::connect(
        &url,
        true,
        Duration::from_secs(5),
        tls.ari("tlsprobe", false).ws_connector().unwrap(),
    )
    .await;
    assert!(without.is_err(), "media over wss without the CA");
    let mut ws = MediaSocket::connect(
        &url,
        true,
        Duration::from_secs(5),
        ari.ws_connector().unwrap(),
    )
    .await
    .expect("media over wss");
    let start = tokio::time::timeout(Duration::from_secs(5), ws.recv())
        .await
        .expect("MEDIA_START in time");
    assert!(
        matches!(&start, Incoming::Event(MediaEvent::Start(s)) if s.format == "slin16"),
        "{start:?}"
    );
    ws.close().await;
    let _ = client.hangup(&em.id, "normal").await;
}

/// A whole call over TLS: the app's ARI on https, events on wss, the
/// caller's media on the WebSocket transport over wss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_runs_with_ari_events_and_media_all_over_tls() {
    let dialplan = "[caller]\n\
         exten => s,1,Answer()\n\
         same => n,Record({dir}/rec/greeting.wav16,0,9,qkx)\n\
         same => n,Playback({book})\n\
         same => n,Record({dir}/rec/reply.wav16,0,6,qkx)\n\
         same => n,Hangup()\n";
    let mut tls = start("");
    let book = tls
        .ast
        .add_sound("book", &common::wav16("book_01_v0_r150_16k.wav"));
    tls.ast.set_dialplan(&dialplan.replace("{book}", &book));
    let model = Arc::new(
        WhisperModel::load(
            &aiagc_models::manifest::default_dir().join(aiagc_models::WHISPER_DEFAULT),
        )
        .expect("model (run scripts/setup.sh)"),
    );
    let (tx, rx) = crossbeam_channel::unbounded();
    let pool = SpeechPool::start(model, 1, 8, SttConfig::default()).unwrap();
    let app = App::start(
        tls.ari("aiagc", true),
        PortRange::new("127.0.0.1".parse().unwrap(), 35200..=35209),
        MediaConfig {
            filler_after: None,
            ..MediaConfig::default()
        },
        ControllerConfig {
            format: Codec::Slin16,
            transport: MediaTransport::WebSocket,
            ..ControllerConfig::default()
        },
        pool,
        common::praxis(),
        Some(tx),
    )
    .unwrap();
    let client = AriClient::new(tls.ari("aiagc", true)).unwrap();
    let t = Instant::now();
    while !app.controller.is_connected() || client.application().await.is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "app registered over wss"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let caller = client
        .originate(&Originate {
            endpoint: "Local/s@caller".into(),
            app: Some("aiagc".into()),
            app_args: Some("inbound".into()),
            ..Originate::default()
        })
        .await
        .unwrap()
        .id;
    let t = Instant::now();
    let summary = loop {
        if let Some(s) = rx.try_iter().find(|s| s.call == caller) {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "no summary");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let turn = summary
        .turns
        .iter()
        .find(|t| t.input == "speech")
        .unwrap_or_else(|| panic!("no caller turn: {:?}", summary.turns));
    eprintln!(
        "over TLS: aiagc heard {:?}, replied {:?}",
        turn.transcript, turn.reply
    );
    assert!(turn.reply.contains("welchem Tag"), "{:?}", turn.reply);
    let (greeting, _) = read_wav(&tls.ast.dir.join("rec/greeting.wav16"));
    let (reply, _) = read_wav(&tls.ast.dir.join("rec/reply.wav16"));
    assert!(
        rms(&greeting) > 0.02 && rms(&reply) > 0.02,
        "the caller heard both"
    );
    app.drain(Duration::from_secs(1)).await;
    tls.ast.stop();
}
