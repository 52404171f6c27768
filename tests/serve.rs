//! `aiagc serve` as a process against the Asterisk simulator: configured
//! by a file and the deployment's environment names, it registers the
//! app, greets a caller, and on SIGTERM drains: the call in progress gets
//! the grace period, then it is hung up and the process exits cleanly.
//! The ARI password never reaches the logs.

use aiagc_ari::sim::{CallerScript, SimConfig, Simulator};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_greets_then_drains_on_sigterm() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = std::env::temp_dir().join(format!("aiagc-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("aiagc.toml");
    std::fs::write(
        &config,
        "[media]\nports = \"33000-33099\"\n[speech]\nworkers = 1\n[serve]\ndrain_grace_s = 2\n[metrics]\nbind = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_aiagc"))
        .args(["serve", "-c", config.to_str().unwrap()])
        .current_dir(&dir)
        .env("ASTERISK_ARI_HOST", "127.0.0.1")
        .env("ASTERISK_ARI_PORT", sim.addr().port().to_string())
        .env("ASTERISK_ARI_USERNAME", "aiagc")
        .env("ASTERISK_ARI_PASSWORD", "aiagc-secret")
        .env("AIAGC_LOG", "debug")
        .env("AIAGC_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while sim.connections() == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "serve did not register"
        );
        assert!(child.try_wait().unwrap().is_none(), "serve exited early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let caller = sim.place_call("aiagc", CallerScript::default()).unwrap();
    let t = Instant::now();
    while !sim.received_for_caller(&caller).iter().any(|r| r.loud()) {
        assert!(t.elapsed() < Duration::from_secs(10), "no greeting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGTERM: the caller is still on the line, so the drain waits its 2 s.
    let term = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            term.elapsed() < Duration::from_secs(15),
            "serve did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let waited = term.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        waited >= Duration::from_secs(2),
        "the grace period was kept: {waited:?}"
    );
    assert_eq!(sim.alive().channels, 0, "the remaining call was hung up");
    let mut logs = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(logs.contains("draining"), "{logs}");
    // JSON lines, one event each, call ids as fields.
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["fields"].is_object() && v["level"].is_string(), "{line}");
    }
    assert!(
        logs.lines()
            .any(|l| l.contains(&format!("\"call\":\"{caller}\""))),
        "events carry the call id: {logs}"
    );
    assert!(
        !logs.contains("aiagc-secret"),
        "the ARI password leaked into the logs"
    );
    let _ = std::fs::remove_dir_all(dir);
}
