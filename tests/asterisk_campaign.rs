//! `aiagc campaign` against the real Asterisk: numbers that answer, are
//! busy, never answer, are busy once and then answer, are congested, and
//! one Asterisk cannot dial; answered calls continue into the dialplan
//! with the list's columns as channel variables; the state file lets a
//! second run skip everything.

mod common;
use common::asterisk::{Asterisk, Setup};
use std::process::Command;

const DIALPLAN: &str = "[campaign-callee]\n\
    exten => 100,1,Answer()\n\
    same => n,Wait(2)\n\
    same => n,Hangup()\n\
    exten => 200,1,Hangup(17)\n\
    exten => 300,1,Ringing()\n\
    same => n,Wait(30)\n\
    exten => 400,1,GotoIf(${DB_EXISTS(camp/400)}?up)\n\
    same => n,Set(DB(camp/400)=1)\n\
    same => n,Hangup(17)\n\
    same => n(up),Answer()\n\
    same => n,Wait(2)\n\
    same => n,Hangup()\n\
    exten => 500,1,Hangup(34)\n\
    [campaign-answered]\n\
    exten => s,1,Set(DB(answered/${AIAGC_NUMBER})=${AIAGC_NAME})\n\
    same => n,Hangup()\n";

fn campaign(ast: &Asterisk, list: &std::path::Path, state: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_aiagc"))
        .args(["campaign"])
        .arg(list)
        .args([
            "--endpoint",
            "Local/{number}@campaign-callee",
            "--context",
            "campaign-answered",
            "--cps",
            "5",
            "--concurrency",
            "3",
            "--attempts",
            "2",
            "--retry-after",
            "1",
            "--timeout",
            "3",
            "--state",
        ])
        .arg(state)
        .env("ASTERISK_ARI_HOST", "127.0.0.1")
        .env("ASTERISK_ARI_PORT", ast.http_port.to_string())
        .env("ASTERISK_ARI_USERNAME", common::asterisk::ARI_USER)
        .env("ASTERISK_ARI_PASSWORD", common::asterisk::ARI_PASSWORD)
        .env("AIAGC_LOG", "warn")
        .current_dir(&ast.dir)
        .output()
        .unwrap();
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
fn a_campaign_retries_busy_numbers_and_hands_answered_calls_on() {
    let ast = Asterisk::start(Setup::default());
    ast.set_dialplan(DIALPLAN);
    let list = ast.dir.join("list.csv");
    std::fs::write(
        &list,
        "number,name\n100,Anna\n200,Bernd\n300,Clara\n400,Dieter\n500,Eva\n",
    )
    .unwrap();
    let state = ast.dir.join("state.jsonl");
    let (ok, text) = campaign(&ast, &list, &state);
    eprintln!("{text}");
    assert!(ok, "{text}");
    let line = |n: &str| {
        text.lines()
            .find(|l| l.starts_with(n))
            .unwrap_or_else(|| panic!("{n} missing: {text}"))
            .to_owned()
    };
    assert!(line("100").contains("answered") && line("100").contains("attempts 1"));
    assert!(line("200").contains("busy") && line("200").contains("attempts 2"));
    assert!(line("300").contains("no_answer") && line("300").contains("attempts 2"));
    assert!(line("400").contains("answered") && line("400").contains("attempts 2"));
    assert!(line("500").contains("congestion") && line("500").contains("attempts 2"));
    assert!(text.contains("5 of 5 numbers finished"), "{text}");
    // The answered calls went on into the dialplan with their columns.
    for (n, name) in [("100", "Anna"), ("400", "Dieter")] {
        let got = ast.cli(&format!("database get answered {n}"));
        assert!(got.contains(name), "{n}: {got}");
    }
    assert!(!ast.cli("database get answered 200").contains("Value"));

    // Again with the same state file: nothing is dialled.
    ast.cli("database deltree answered");
    let (ok, again) = campaign(&ast, &list, &state);
    assert!(ok && again.contains("5 of 5 numbers finished"), "{again}");
    assert!(
        !ast.cli("database get answered 100").contains("Value"),
        "not called twice"
    );

    // A list Asterisk cannot dial at all: refused, not retried.
    std::fs::write(&list, "number\n999\n").unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_aiagc"))
        .args(["campaign"])
        .arg(&list)
        .args(["--endpoint", "Bogus/{number}", "--timeout", "2"])
        .env("ASTERISK_ARI_HOST", "127.0.0.1")
        .env("ASTERISK_ARI_PORT", ast.http_port.to_string())
        .env("ASTERISK_ARI_USERNAME", common::asterisk::ARI_USER)
        .env("ASTERISK_ARI_PASSWORD", common::asterisk::ARI_PASSWORD)
        .current_dir(&ast.dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(
        text.contains("999") && text.contains("invalid") && text.contains("attempts 1"),
        "{text}"
    );
}
