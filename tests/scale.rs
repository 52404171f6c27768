//! Scaling out and load against an Asterisk, with the simulator standing
//! in for it: `aiagc loadtest --target ari` originating `Local/` channels
//! whose dialplan half plays the caller, and several `aiagc serve`
//! processes sharing one Asterisk, each with its own app name.

mod common;
use common::*;

use aiagc_ari::sim::{CallerScript, SimConfig, Simulator};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn silence(ms: usize) -> Vec<i16> {
    vec![0; ms * 16]
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("aiagc-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn aiagc(sim: &Simulator, dir: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_aiagc"));
    c.args(args)
        .current_dir(dir)
        .env("ASTERISK_ARI_HOST", "127.0.0.1")
        .env("ASTERISK_ARI_PORT", sim.addr().port().to_string())
        .env("ASTERISK_ARI_USERNAME", "aiagc")
        .env("ASTERISK_ARI_PASSWORD", "aiagc-secret");
    c
}

/// The dialplan plays the caller into Local channels that `loadtest`
/// originates into its own app; the report is the contract, the plot is
/// drawn, and nothing is left in Asterisk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadtest_drives_asterisk_through_local_channels() {
    // As `exten => s,1,Answer() / Wait(3) / Playback(book_01) / Wait(4)
    // / Playback(book_02) / Wait(5) / Hangup()` would.
    let audio = [
        silence(3000),
        wav16("book_01_v1_r150_16k.wav"),
        silence(4000),
        wav16("book_02_v1_r150_16k.wav"),
    ]
    .concat();
    let mut config = SimConfig::default();
    config.dialplan.insert(
        "s@aiagc-loadtest".into(),
        CallerScript {
            audio,
            hangup_after: Some(Duration::from_secs(5)),
            ..Default::default()
        },
    );
    let sim = Simulator::start(config).await.unwrap();
    let dir = temp_dir("load-ari");
    // The dialplan caller speaks on a fixed schedule: a filler on a slow
    // machine would be talked over; replies are what is measured here.
    std::fs::write(dir.join("aiagc.toml"), "[media]\nfiller_after_ms = 0\n").unwrap();
    let plot = dir.join("latency.svg");
    let child = aiagc(
        &sim,
        &dir,
        &[
            "loadtest",
            "--target",
            "ari",
            "--calls",
            "2",
            "--concurrency",
            "2",
            "--json",
            "--plot",
            plot.to_str().unwrap(),
        ],
    )
    .env("AIAGC_MEDIA_PORTS", "34000-34099")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(
        (v["calls"].as_u64(), v["completed"].as_u64()),
        (Some(2), Some(2)),
        "{v}"
    );
    assert_eq!(v["target"], "ari");
    let p50 = v["latency_ms"]["p50"].as_f64().unwrap();
    assert!(p50 > 100.0 && p50 < 3000.0, "{v}");
    assert!(
        v["rtp"]["pacing_jitter_p99_ms"].is_null(),
        "not measured at Asterisk"
    );
    for k in ["channels", "bridges", "sockets", "tasks"] {
        assert_eq!(v["leaks"][k], 0, "{k} left behind: {v}");
    }
    let stt = v["stages_ms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "stt")
        .expect("an stt stage");
    assert!(stt["p50"].as_f64().unwrap() > 10.0, "{v}");
    // Originated as Local channels into the loadtest's own app.
    let originated: Vec<_> = sim
        .events()
        .into_iter()
        .filter(|e| e["type"] == "StasisStart" && e["args"][0] == "loadtest")
        .collect();
    assert_eq!(originated.len(), 2, "two callers entered the app");
    assert!(originated.iter().all(|e| e["channel"]["name"]
        .as_str()
        .unwrap()
        .starts_with("Local/s@aiagc-loadtest")));
    assert_eq!(sim.alive().channels, 0);
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("turn latency, 4 turns"),
        "{}",
        &svg[..200.min(svg.len())]
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A child process that is killed when the test ends, also on a panic.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

fn serve(sim: &Simulator, dir: &std::path::Path, app: &str, ports: &str) -> Running {
    Running(
        aiagc(sim, dir, &["serve"])
            .env("AIAGC_APP", app)
            .env("AIAGC_MEDIA_PORTS", ports)
            .env("AIAGC_METRICS_BIND", "")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn greeted(sim: &Simulator, caller: &str) {
    let t = Instant::now();
    while !sim.received_for_caller(caller).iter().any(loud) {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{caller} was not greeted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two processes, two app names, one Asterisk: the dialplan spreads calls
/// over both; stopping one leaves the other's calls untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_asterisk_by_app_name() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir("scale-out");
    // A short drain, so stopping one process does not wait 30 s.
    std::fs::write(
        dir.join("aiagc.toml"),
        "[serve]\ndrain_grace_s = 1\n[speech]\nworkers = 1\n",
    )
    .unwrap();
    let mut a = serve(&sim, &dir, "aiagc-1", "34100-34199");
    let mut b = serve(&sim, &dir, "aiagc-2", "34200-34299");
    let t = Instant::now();
    while sim.connections() < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "both did not register"
        );
        assert!(a.try_wait().unwrap().is_none() && b.try_wait().unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // As `Set(N=${RAND(1,2)})` + `Stasis(aiagc-${N})` would spread them.
    let mut calls = Vec::new();
    for i in 0..4 {
        let app = format!("aiagc-{}", i % 2 + 1);
        calls.push((
            app.clone(),
            sim.place_call(&app, CallerScript::default()).unwrap(),
        ));
    }
    for (_, caller) in &calls {
        greeted(&sim, caller).await;
    }
    // Each process bridged only the calls of its own app.
    for (app, caller) in &calls {
        let bridged = sim.events().into_iter().any(|e| {
            e["type"] == "ChannelEnteredBridge"
                && e["channel"]["id"] == caller.as_str()
                && e["application"] == app.as_str()
        });
        assert!(bridged, "{caller} bridged by {app}");
    }
    // One process goes away (SIGTERM drains and hangs up its calls); the
    // other keeps its calls and takes new ones.
    assert!(Command::new("kill")
        .args(["-TERM", &a.id().to_string()])
        .status()
        .unwrap()
        .success());
    let t = Instant::now();
    while a.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "aiagc-1 did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let alive: Vec<String> = sim
        .events()
        .into_iter()
        .filter(|e| e["type"] == "ChannelDestroyed")
        .filter_map(|e| e["channel"]["id"].as_str().map(str::to_owned))
        .collect();
    for (app, caller) in &calls {
        assert_eq!(
            alive.contains(caller),
            app == "aiagc-1",
            "{caller} of {app}: only aiagc-1's calls ended"
        );
    }
    assert!(sim.place_call("aiagc-1", CallerScript::default()).is_err());
    let late = sim.place_call("aiagc-2", CallerScript::default()).unwrap();
    greeted(&sim, &late).await;
    let _ = Command::new("kill")
        .args(["-TERM", &b.id().to_string()])
        .status();
    let t = Instant::now();
    while b.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "aiagc-2 did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_dir_all(dir);
}
