//! `aiagc originate` against the simulator: the channel id first, then the
//! call followed through ringing and answer to its hangup; `--detach`
//! returns at once with the variables set; bad input is refused.

use aiagc_ari::client::AriClient;
use aiagc_ari::sim::{SimConfig, Simulator};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn aiagc(port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aiagc"));
    cmd.arg("originate")
        .current_dir(std::env::temp_dir())
        .env("ASTERISK_ARI_HOST", "127.0.0.1")
        .env("ASTERISK_ARI_PORT", port.to_string())
        .env("ASTERISK_ARI_USERNAME", "aiagc")
        .env("ASTERISK_ARI_PASSWORD", "aiagc-secret");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn originate_follows_the_call_and_detach_returns() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let port = sim.addr().port();
    let mut child = aiagc(port)
        .args([
            "--endpoint",
            "PJSIP/+4930123456@trunk",
            "--caller-id",
            "+4930999",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let id = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("channel id");
    let t = Instant::now();
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.ends_with("answered")) {
        assert!(t.elapsed() < Duration::from_secs(10), "{lines:?}");
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            lines.push(l);
        }
    }
    assert!(lines.iter().any(|l| l.ends_with("Up")), "{lines:?}");
    assert!(sim.hangup(&id));
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(rest.iter().any(|l| l.ends_with("hung up")), "{rest:?}");

    let out = aiagc(port)
        .args([
            "--endpoint",
            "PJSIP/+4930777@trunk",
            "--var",
            "AIAGC_TASK=reminder",
            "--detach",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let client = AriClient::new(sim.client_config("aiagc")).unwrap();
    assert_eq!(
        client.get_variable(&id, "AIAGC_TASK").await.unwrap(),
        "reminder"
    );

    let bad = aiagc(port)
        .args(["--endpoint", "PJSIP/1", "--var", "=x"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("KEY=VALUE"));
    let bad = aiagc(port)
        .args(["--endpoint", "nonsense"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("originating nonsense"));
}
