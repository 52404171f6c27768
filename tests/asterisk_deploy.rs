//! The shipped deployment on a real Asterisk 22.10.1: `deploy/asterisk/
//! extensions.conf` loaded as shipped, `aiagc serve` as a process with its
//! default configuration, a small test AGI standing in for the old
//! `voice-agent.agi`. The migration path proven on a real dialplan: the
//! percentage context splits calls between aiagc and the AGI script, the
//! AGI takes over when aiagc is down, the rollback context needs no aiagc,
//! `aiagc originate` into `outbound-calls-ari` reaches the callee, and
//! SIGTERM drains a call in progress while new callers go to
//! `aiagc-drained`.

mod common;
use common::asterisk::{read_wav, rms, Asterisk, Setup, ARI_PASSWORD, ARI_USER};

use aiagc_ari::client::{AriClient, Originate};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The old AGI script, as far as the tests need it: answers, notes who
/// called into `agi.log`, plays a second of silence, hangs up.
const TEST_AGI: &str = r#"#!/bin/sh
while read line && [ -n "$line" ]; do
  case "$line" in agi_callerid:*) who="${line#agi_callerid: }";; esac
done
echo "ANSWER"; read r
echo "$who" >> "$(dirname "$0")/agi.log"
echo "EXEC Wait 1"; read r
echo "HANGUP"; read r
"#;

/// The shipped dialplan, plus a context for the test's callers: each
/// originated `Local/NUMBER@incoming-…` channel's own half runs
/// `[listener]`, which records what it hears.
fn setup() -> Setup {
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/asterisk/extensions.conf"),
    )
    .expect("deploy/asterisk/extensions.conf");
    Setup {
        dialplan: format!(
            "{shipped}\n\
             [listener]\n\
             exten => s,1,Record({{dir}}/rec/${{CALLERID(num)}}.wav16,0,6,qkx)\n\
             same => n,Hangup()\n\
             [callee]\n\
             exten => s,1,Answer()\n\
             same => n,Playback({{dir}}/snd/hallo)\n\
             same => n,Record({{dir}}/rec/callee.wav16,0,7,qkx)\n\
             same => n,Hangup()\n"
        ),
        ..Setup::default()
    }
}

fn install_agi(ast: &Asterisk) {
    use std::os::unix::fs::PermissionsExt;
    let path = ast.dir.join("agi/voice-agent.agi");
    std::fs::write(&path, TEST_AGI).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn agi_calls(ast: &Asterisk) -> Vec<String> {
    std::fs::read_to_string(ast.dir.join("agi/agi.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `aiagc serve` with no configuration file: the defaults, the
/// deployment's environment names, records in `records`.
fn serve(ast: &Asterisk, records: &std::path::Path, extra: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aiagc"));
    cmd.arg("serve")
        .current_dir(records)
        .env("ASTERISK_ARI_HOST", "127.0.0.1")
        .env("ASTERISK_ARI_PORT", ast.http_port.to_string())
        .env("ASTERISK_ARI_USERNAME", ARI_USER)
        .env("ASTERISK_ARI_PASSWORD", ARI_PASSWORD)
        .env("AIAGC_MEDIA_PORTS", "35200-35299")
        .env("AIAGC_METRICS_BIND", "")
        .env("AIAGC_RECORDS_DIR", records)
        .env("AIAGC_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().expect("aiagc serve")
}

struct Serve(Child);
impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn registered(client: &AriClient) {
    let t = Instant::now();
    while client.application().await.is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "aiagc serve did not register"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A caller from `number` into `context` of the shipped dialplan.
async fn call(client: &AriClient, context: &str, number: &str) -> String {
    client
        .originate(&Originate {
            endpoint: format!("Local/{number}@{context}"),
            context: Some("listener".into()),
            extension: Some("s".into()),
            priority: Some(1),
            caller_id: Some(number.into()),
            ..Originate::default()
        })
        .await
        .unwrap()
        .id
}

async fn no_channels(client: &AriClient, within: Duration) {
    let t = Instant::now();
    loop {
        let chans = client.channels().await.unwrap();
        if chans.is_empty() {
            return;
        }
        assert!(
            t.elapsed() < within,
            "channels left: {:?}",
            chans.iter().map(|c| &c.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Calls aiagc answered, by caller number, from its per-call records.
fn aiagc_calls(records: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(records).unwrap().flatten() {
        if e.path().extension().is_none_or(|x| x != "jsonl") {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        if !text.is_empty() {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

/// The documents the webhook stored, once there are `n` (or `within` is over).
async fn documents(
    hook: &common::webhook::Webhook,
    n: usize,
    within: Duration,
) -> Vec<serde_json::Value> {
    let t = Instant::now();
    while hook.stored().len() < n && t.elapsed() < within {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hook.stored()
        .values()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_dialplan_migrates_from_agi_and_back() {
    let ast = Asterisk::start(setup());
    install_agi(&ast);
    let client = AriClient::new(ast.ari("aiagc")).unwrap();
    let records = ast.dir.join("records");
    std::fs::create_dir_all(&records).unwrap();

    // aiagc not running yet: the hybrid context at 100 % falls back to
    // the AGI script (Stasis fails at once), and the rollback context
    // never needs aiagc.
    ast.cli("database put aiagc percent 100");
    call(&client, "incoming-hybrid", "4930100").await;
    call(&client, "incoming-agi-only", "4930101").await;
    no_channels(&client, Duration::from_secs(15)).await;
    let agi = agi_calls(&ast);
    assert!(
        agi.contains(&"4930100".to_string()) && agi.contains(&"4930101".to_string()),
        "the AGI script took both: {agi:?}"
    );

    // Each call aiagc takes goes to the operator's webhook as a document.
    let hook = common::webhook::Webhook::start(b"geheim", Default::default()).await;
    let spool = ast.dir.join("spool");
    let url = hook.url();
    let _serve = Serve(serve(
        &ast,
        &records,
        &[
            ("AIAGC_DELIVERY_URL", url.as_str()),
            ("AIAGC_DELIVERY_SECRET", "geheim"),
            ("AIAGC_SPOOL_DIR", spool.to_str().unwrap()),
        ],
    ));
    registered(&client).await;

    // 100 %: aiagc answers, and the caller hears the greeting.
    call(&client, "incoming-hybrid", "4930102").await;
    no_channels(&client, Duration::from_secs(20)).await;
    let first = documents(&hook, 1, Duration::from_secs(10)).await;
    assert_eq!(first.len(), 1, "one document for the call");
    assert_eq!(first[0]["caller"]["number"], "4930102", "{}", first[0]);
    assert_eq!(first[0]["turns"][0]["input"], "start", "{}", first[0]);
    assert!(hook.posts().iter().all(|p| p.signature_ok));
    let heard = rms(&read_wav(&ast.dir.join("rec/4930102.wav16")).0);
    assert!(
        heard > 0.02,
        "the caller heard aiagc's greeting (RMS {heard})"
    );
    assert!(!agi_calls(&ast).contains(&"4930102".to_string()));

    // 50 %: of 12 callers both sides get some (all on one side: 1 in 2048).
    ast.cli("database put aiagc percent 50");
    let before_agi = agi_calls(&ast).len();
    let before_ai = aiagc_calls(&records).len();
    for i in 0..12 {
        call(&client, "incoming-hybrid", &format!("49302{i:02}")).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    no_channels(&client, Duration::from_secs(40)).await;
    // aiagc writes a call's record after Asterisk has let the channel go
    // (the call's last speech work finishes first): wait for them.
    let counted = Instant::now();
    let (mut to_agi, mut to_ai);
    loop {
        to_agi = agi_calls(&ast).len() - before_agi;
        to_ai = aiagc_calls(&records).len() - before_ai;
        if to_agi + to_ai >= 12 || counted.elapsed() > Duration::from_secs(20) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("50 %: {to_ai} calls to aiagc, {to_agi} to the AGI script");
    assert_eq!(to_agi + to_ai, 12, "every call went one way or the other");
    assert!(to_agi > 0 && to_ai > 0, "{to_ai} to aiagc, {to_agi} to AGI");
    let delivered = documents(&hook, 1 + to_ai, Duration::from_secs(10)).await;
    assert_eq!(
        delivered.len(),
        1 + to_ai,
        "a document for each call aiagc took"
    );

    // 0 %: the rollback by AstDB, without a reload.
    ast.cli("database put aiagc percent 0");
    call(&client, "incoming-hybrid", "4930300").await;
    no_channels(&client, Duration::from_secs(15)).await;
    assert!(agi_calls(&ast).contains(&"4930300".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn originate_reaches_the_callee_and_sigterm_drains_to_agi() {
    let ast = Asterisk::start(setup());
    install_agi(&ast);
    let client = AriClient::new(ast.ari("aiagc")).unwrap();
    let records = ast.dir.join("records");
    std::fs::create_dir_all(&records).unwrap();
    // The drain target and grace from ./aiagc.toml, as a deployment sets
    // them.
    std::fs::write(
        records.join("aiagc.toml"),
        "[serve]\ndrain_to = \"aiagc-drained,s,1\"\ndrain_grace_s = 3\n",
    )
    .unwrap();
    let mut serve = Serve(serve(&ast, &records, &[]));
    registered(&client).await;

    // `aiagc originate` dials the callee; answered, the call runs the
    // shipped outbound-calls-ari context into the app, which waits for the
    // callee's "Hallo?" (a person, not a machine) and greets.
    let mut hallo = common::greetings::silence(200);
    hallo.extend(common::greetings::speak("Hallo?", "de", 165));
    let hallo: Vec<i16> = hallo.iter().map(|s| (s * 32767.0) as i16).collect();
    ast.add_sound("hallo", &hallo);
    let out = Command::new(env!("CARGO_BIN_EXE_aiagc"))
        .args([
            "originate",
            "--endpoint",
            "Local/s@callee",
            "--timeout",
            "10",
        ])
        .env("ASTERISK_ARI_HOST", "127.0.0.1")
        .env("ASTERISK_ARI_PORT", ast.http_port.to_string())
        .env("ASTERISK_ARI_USERNAME", ARI_USER)
        .env("ASTERISK_ARI_PASSWORD", ARI_PASSWORD)
        .current_dir(&records)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("originate: {text}");
    assert!(out.status.success(), "{text}");
    assert!(text.contains("answered"), "{text}");
    let heard = rms(&read_wav(&ast.dir.join("rec/callee.wav16")).0);
    assert!(heard > 0.02, "the callee heard the greeting (RMS {heard})");
    no_channels(&client, Duration::from_secs(15)).await;

    // A call in progress, then SIGTERM: the call keeps its grace period,
    // a new caller meanwhile goes to aiagc-drained (the AGI script), then
    // the process ends cleanly and leaves nothing on Asterisk.
    call(&client, "incoming-ari", "4930400").await;
    let t = Instant::now();
    while client.channels().await.unwrap().len() < 3 {
        assert!(t.elapsed() < Duration::from_secs(10), "call set up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let term = Instant::now();
    unsafe {
        libc::kill(serve.0.id() as i32, libc::SIGTERM);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    call(&client, "incoming-ari", "4930401").await;
    let status = loop {
        if let Some(s) = serve.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            term.elapsed() < Duration::from_secs(20),
            "serve did not stop"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status:?}");
    no_channels(&client, Duration::from_secs(15)).await;
    let agi = agi_calls(&ast);
    assert!(
        agi.contains(&"4930401".to_string()),
        "the caller during the drain went to the AGI script: {agi:?}"
    );
    assert!(!agi.contains(&"4930400".to_string()));
}
