//! The command line against a real Asterisk 22.10.1: `aiagc check` passing
//! and failing for real causes (the media round trip in formats Asterisk
//! does and does not play back, wrong credentials), and `aiagc originate`
//! into the shipped `outbound-calls-ari` context.

mod common;
use common::asterisk::{Asterisk, Setup, ARI_PASSWORD, ARI_USER};

use std::process::Command;

fn aiagc(ast: &Asterisk, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aiagc"));
    cmd.args(args)
        .current_dir(std::env::temp_dir())
        .env("ASTERISK_ARI_HOST", "127.0.0.1")
        .env("ASTERISK_ARI_PORT", ast.http_port.to_string())
        .env("ASTERISK_ARI_USERNAME", ARI_USER)
        .env("ASTERISK_ARI_PASSWORD", ARI_PASSWORD)
        .env("AIAGC_MEDIA_PORTS", "35100-35199");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn check_proves_the_media_path_and_names_what_fails() {
    let ast = Asterisk::start(Setup::default());
    // The default configuration: everything passes, the media round trip
    // included.
    let (ok, text) = aiagc(&ast, &["check"], &[]);
    eprintln!("{text}");
    assert!(ok, "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok") && l.contains("media path") && l.contains("g722")),
        "{text}"
    );
    for format in ["ulaw", "alaw"] {
        let (ok, text) = aiagc(&ast, &["check", "--format", format], &[]);
        assert!(ok, "{format}: {text}");
    }
    // slin16 and Opus: the tone does not come back; the reason and the fix.
    let (ok, text) = aiagc(&ast, &["check", "--format", "slin16"], &[]);
    eprintln!("{text}");
    assert!(!ok);
    assert!(
        text.contains("FAIL media path")
            && text.contains("payload type 118 is dynamic")
            && text.contains("format = \"g722\""),
        "{text}"
    );
    let (ok, text) = aiagc(&ast, &["check", "--format", "opus"], &[]);
    assert!(!ok);
    assert!(
        text.contains("FAIL media path") && text.contains("Opus transcoder"),
        "{text}"
    );
    // A configuration that asks for slin16 is refused before any call.
    let (ok, text) = aiagc(&ast, &["check"], &[("AIAGC_MEDIA_FORMAT", "slin16")]);
    assert!(!ok && text.contains("cannot reach the caller"), "{text}");
    // Wrong password: Asterisk's 401, and where to fix it.
    let (ok, text) = aiagc(&ast, &["check"], &[("ASTERISK_ARI_PASSWORD", "nope")]);
    assert!(!ok);
    assert!(
        text.contains("FAIL credentials") && text.contains("ari.conf"),
        "{text}"
    );
    // Nothing left on Asterisk by the checks.
    let channels = ast.cli("core show channels count");
    assert!(channels.contains("0 active channels"), "{channels}");
}

#[test]
fn check_proves_the_websocket_media_path_and_names_a_missing_chan_websocket() {
    let ast = Asterisk::start(Setup::default());
    let ws = [("AIAGC_MEDIA_TRANSPORT", "websocket")];
    let (ok, text) = aiagc(&ast, &["check"], &ws);
    eprintln!("{text}");
    assert!(ok, "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("ok")
            && l.contains("WebSocket media")
            && l.contains("came out")),
        "{text}"
    );
    let channels = ast.cli("core show channels count");
    assert!(channels.contains("0 active channels"), "{channels}");
    // An Asterisk without chan_websocket: refused, with the fix.
    let old = Asterisk::start(Setup {
        noload: vec!["chan_websocket".into()],
        ..Setup::default()
    });
    let (ok, text) = aiagc(&old, &["check"], &ws);
    eprintln!("{text}");
    assert!(!ok);
    assert!(
        text.contains("FAIL WebSocket media") && text.contains("module load chan_websocket.so"),
        "{text}"
    );
    let (ok, text) = aiagc(&ast, &["check"], &[("AIAGC_MEDIA_TRANSPORT", "udp")]);
    assert!(!ok && text.contains("media.transport"), "{text}");
}
