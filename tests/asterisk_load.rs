//! `aiagc loadtest` against a real Asterisk 22.10.1 and against the
//! simulator, side by side in one run, at 1, 4 and 8 concurrent calls: the
//! figures for BENCHMARKS.md. Not part of the suite (it takes minutes and
//! measures speed, which tests do not assert); run it with
//!   cargo test --release --test asterisk_load -- --ignored --nocapture
//! It does check that every call completed and nothing was left behind.

mod common;
use common::asterisk::{prefix, Asterisk, Setup, ARI_PASSWORD, ARI_USER};

use std::process::Command;

fn loadtest(ast: Option<&Asterisk>, calls: usize, concurrency: usize) -> serde_json::Value {
    loadtest_over(ast, calls, concurrency, "rtp")
}

fn loadtest_over(
    ast: Option<&Asterisk>,
    calls: usize,
    concurrency: usize,
    transport: &str,
) -> serde_json::Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aiagc"));
    cmd.args([
        "loadtest",
        "--calls",
        &calls.to_string(),
        "--concurrency",
        &concurrency.to_string(),
        "--json",
    ])
    .current_dir(std::env::temp_dir())
    .env("AIAGC_MEDIA_TRANSPORT", transport)
    .env("AIAGC_MEDIA_PORTS", "36000-36999")
    .env("AIAGC_LOG", "warn");
    if ast.is_none() {
        cmd.args(["--transport", transport]);
    }
    if let Some(ast) = ast {
        cmd.args(["--target", "ari"])
            .env("ASTERISK_ARI_HOST", "127.0.0.1")
            .env("ASTERISK_ARI_PORT", ast.http_port.to_string())
            .env("ASTERISK_ARI_USERNAME", ARI_USER)
            .env("ASTERISK_ARI_PASSWORD", ARI_PASSWORD);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("")).unwrap_or_else(|e| {
        panic!(
            "loadtest output: {e}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The shipped dialplan on a private Asterisk, with the loadtest caller's
/// recordings where `[aiagc-loadtest]` plays them from.
fn loadtest_asterisk() -> Asterisk {
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/asterisk/extensions.conf"),
    )
    .unwrap();
    let ast = Asterisk::start(Setup {
        dialplan: shipped,
        ..Setup::default()
    });
    let sounds = prefix().join("var/lib/asterisk/sounds/de/aiagc");
    let status = Command::new("bash")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/loadtest-sounds.sh"))
        .arg(&sounds)
        .status()
        .unwrap();
    assert!(status.success());
    ast
}

/// RTP (G.722) and the WebSocket (slin16) on the same Asterisk, one after
/// the other, twice: turn latency (our side: speech end to the first reply
/// frame handed out), aiagc's CPU and Asterisk's CPU per call.
///   cargo test --release --test asterisk_load -- --ignored --nocapture transports
#[test]
#[ignore = "a benchmark: minutes of real-time calls"]
fn transports_side_by_side_on_the_real_asterisk() {
    let ast = loadtest_asterisk();
    println!(
        "| transport | calls | completed | p50 ms | p95 ms | aiagc CPU s | aiagc CPU-ms per turn | Asterisk CPU s | CPU s per call (both) | left (ch/br/sock/tasks) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for _round in 0..2 {
        for transport in ["rtp", "websocket"] {
            let before = ast.cpu_seconds();
            let r = loadtest_over(Some(&ast), 8, 4, transport);
            let asterisk = ast.cpu_seconds() - before;
            let l = &r["leaks"];
            let ours = r["cpu"]["seconds"].as_f64().unwrap_or(f64::NAN);
            let calls = r["calls"].as_f64().unwrap_or(f64::NAN);
            println!(
                "| {} over {} | {} | {} | {:.0} | {:.0} | {:.1} | {:.0} | {:.1} | {:.2} | {}/{}/{}/{} |",
                r["format"].as_str().unwrap_or("?"),
                r["transport"].as_str().unwrap_or("?"),
                r["calls"],
                r["completed"],
                r["latency_ms"]["p50"].as_f64().unwrap_or(f64::NAN),
                r["latency_ms"]["p95"].as_f64().unwrap_or(f64::NAN),
                ours,
                r["cpu"]["ms_per_turn"].as_f64().unwrap_or(f64::NAN),
                asterisk,
                (ours + asterisk) / calls,
                l["channels"],
                l["bridges"],
                l["sockets"],
                l["tasks"]
            );
            assert_eq!(r["completed"], r["calls"], "{r}");
            assert_eq!(r["transport"], transport, "{r}");
        }
    }
}

#[test]
#[ignore = "a benchmark: minutes of real-time calls"]
fn loadtest_real_asterisk_beside_the_simulator() {
    let ast = loadtest_asterisk();
    println!(
        "| concurrency | target | calls | completed | p50 ms | p95 ms | p99 ms | underruns | lost | left (ch/br/sock/tasks) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for concurrency in [1, 4, 8] {
        let calls = concurrency * 2;
        for target in [Some(&ast), None] {
            let r = loadtest(target, calls, concurrency);
            let l = &r["leaks"];
            println!(
                "| {concurrency} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {}/{}/{}/{} |",
                r["target"].as_str().unwrap_or("?"),
                r["calls"],
                r["completed"],
                r["latency_ms"]["p50"].as_f64().unwrap_or(f64::NAN),
                r["latency_ms"]["p95"].as_f64().unwrap_or(f64::NAN),
                r["latency_ms"]["p99"].as_f64().unwrap_or(f64::NAN),
                r["rtp"]["underruns"],
                r["rtp"]["lost"],
                l["channels"],
                l["bridges"],
                l["sockets"],
                l["tasks"]
            );
            assert_eq!(r["completed"], r["calls"], "{r}");
            for k in ["channels", "bridges", "sockets", "tasks"] {
                assert_eq!(l[k], 0, "{k} left: {r}");
            }
        }
    }
}
