//! `aiagc check` against the simulator, with each fault injected: it names
//! the failing step and its fix, and exits 0 only when everything passes.

use aiagc_ari::sim::{Fault, SimConfig, Simulator};
use std::process::Command;

async fn check(port: u16, env: &[(&str, &str)]) -> (bool, String) {
    check_args(port, &[], env).await
}

async fn check_args(port: u16, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aiagc"));
    cmd.arg("check")
        .args(args)
        .current_dir(std::env::temp_dir())
        .env("ASTERISK_ARI_HOST", "127.0.0.1")
        .env("ASTERISK_ARI_PORT", port.to_string())
        .env("ASTERISK_ARI_USERNAME", "aiagc")
        .env("ASTERISK_ARI_PASSWORD", "aiagc-secret")
        .env("AIAGC_MEDIA_PORTS", "34000-34099");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_is_named_with_its_fix() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let port = sim.addr().port();

    let (ok, text) = check(port, &[]).await;
    assert!(ok, "{text}");
    for step in [
        "ARI reachable",
        "credentials",
        "Asterisk version",
        "ARI resources",
        "app registration",
        "media path",
        "RTP ports",
        "models",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with("ok") && l.contains(step)),
            "{step}: {text}"
        );
    }

    let (ok, text) = check(port, &[("ASTERISK_ARI_PASSWORD", "wrong")]).await;
    assert!(!ok);
    assert!(
        text.contains("FAIL credentials") && text.contains("ari.conf"),
        "{text}"
    );
    assert!(
        !text.contains("wrong"),
        "the password is not echoed: {text}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().port();
    drop(closed);
    let (ok, text) = check(dead, &[]).await;
    assert!(!ok);
    assert!(
        text.contains("FAIL ARI reachable") && text.contains("http.conf"),
        "{text}"
    );

    sim.inject(Fault::Fail {
        method: "GET".into(),
        path_contains: "/channels".into(),
        status: 404,
        body: "{\"message\":\"Resource not found\"}".into(),
        times: 1,
    });
    let (ok, text) = check(port, &[]).await;
    assert!(!ok);
    assert!(
        text.contains("FAIL ARI resources") && text.contains("module load res_ari_channels.so"),
        "{text}"
    );

    let (ok, text) = check(port, &[("AIAGC_MEDIA_BIND", "192.0.2.1")]).await;
    assert!(!ok);
    assert!(text.contains("FAIL RTP ports"), "{text}");

    // The simulator drops slin16 toward Asterisk as the real one does
    // (tests/asterisk_cli.rs runs the same against Asterisk 22.10.1).
    let (ok, text) = check_args(port, &["--format", "slin16"], &[]).await;
    assert!(!ok);
    assert!(
        text.contains("FAIL media path") && text.contains("payload type 118"),
        "{text}"
    );

    let (ok, text) = check(port, &[("AIAGC_MODELS", "/nonexistent/models")]).await;
    assert!(!ok);
    assert!(
        text.contains("FAIL models") && text.contains("scripts/setup.sh"),
        "{text}"
    );

    let (ok, text) = check(port, &[("AIAGC_APP", "other-app")]).await;
    assert!(ok, "any app name registers: {text}");

    let old = Simulator::start(SimConfig {
        version: "18.20.0".into(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (ok, text) = check(old.addr().port(), &[]).await;
    assert!(ok, "a warning does not fail: {text}");
    assert!(
        text.contains("WARN Asterisk version") && text.contains("18.20.0"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_media_path_is_checked_against_the_simulator() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let port = sim.addr().port();
    let (ok, text) = check(port, &[("AIAGC_MEDIA_TRANSPORT", "websocket")]).await;
    assert!(ok, "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("WebSocket media"))
        .unwrap_or_else(|| panic!("no WebSocket step: {text}"));
    assert!(line.starts_with("ok"), "{line}");
    assert!(line.contains("came out of the other"), "{line}");
    // The check removed what it made: bridge, both channels, both connections.
    let t = std::time::Instant::now();
    while sim.alive() != aiagc_ari::sim::Alive::default() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "left behind: {:?}",
            sim.alive()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
