//! The deployment files say what the code does: the dialplan's contexts
//! and app names, the load-test context's recordings, the units' keys.

use std::collections::BTreeMap;

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// Context name → its lines (comments and blanks dropped).
fn contexts(conf: &str) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut current = None;
    for line in conf
        .lines()
        .map(|l| l.split(';').next().unwrap_or("").trim())
    {
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.to_owned());
            out.insert(name.to_owned(), Vec::new());
        } else if let Some(c) = &current {
            out.get_mut(c).unwrap().push(line.to_owned());
        } else {
            panic!("line outside a context: {line}");
        }
    }
    out
}

#[test]
fn the_dialplan_has_every_context_and_enters_our_apps() {
    let conf = read("deploy/asterisk/extensions.conf");
    let ctx = contexts(&conf);
    for name in [
        "incoming-ari",
        "ai-agent-ari",
        "outbound-calls-ari",
        "incoming-hybrid",
        "incoming-agi-only",
        "from-ai-agent",
        "aiagc-drained",
        "incoming-ari-pool",
        "aiagc-loadtest",
    ] {
        assert!(ctx.contains_key(name), "[{name}] missing");
    }
    for (name, lines) in &ctx {
        // Every extension starts at priority 1 and continues with `same`.
        assert!(
            lines[0].starts_with("exten =>") && lines[0].contains(",1,"),
            "[{name}] {lines:?}"
        );
        for l in lines {
            assert!(
                l.starts_with("exten =>") || l.starts_with("same =>"),
                "[{name}] {l}"
            );
            if let Some(args) = l.split("Stasis(").nth(1) {
                let app = args.split([',', ')']).next().unwrap();
                assert!(
                    app == "aiagc" || app.starts_with("aiagc-"),
                    "[{name}] enters {app:?}, not an aiagc app"
                );
            }
        }
    }
    // The pool fails over to the other instance, then to the AGI script.
    let pool = ctx["incoming-ari-pool"].join("\n");
    assert_eq!(pool.matches("Stasis(").count(), 2);
    assert!(pool.contains("STASISSTATUS") && pool.contains("AGI("));
}

#[test]
fn the_loadtest_context_plays_what_the_sounds_script_installs() {
    let ctx = contexts(&read("deploy/asterisk/extensions.conf"));
    let script = read("scripts/loadtest-sounds.sh");
    let plays: Vec<String> = ctx["aiagc-loadtest"]
        .iter()
        .filter_map(|l| l.split("Playback(aiagc/").nth(1))
        .map(|r| r.trim_end_matches(')').to_owned())
        .collect();
    assert_eq!(plays, ["book_01", "book_02"]);
    for p in &plays {
        assert!(
            script.contains(p),
            "loadtest-sounds.sh does not install {p}"
        );
    }
    assert!(script.contains("sounds/de/aiagc"));
}

#[test]
fn units_restart_drain_and_raise_the_file_limit() {
    for unit in ["deploy/aiagc.service", "deploy/aiagc@.service"] {
        let text = read(unit);
        for key in [
            "Restart=on-failure",
            "User=aiagc",
            "WorkingDirectory=",
            "EnvironmentFile=",
            "LimitNOFILE=",
            "KillSignal=SIGTERM",
            "ExecStart=/opt/aiagc/bin/aiagc serve",
        ] {
            assert!(text.contains(key), "{unit} lacks {key}");
        }
        // The stop timeout outlasts the default drain grace (30 s).
        let stop: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("TimeoutStopSec="))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        assert!(stop > 30, "{unit}: TimeoutStopSec={stop}");
    }
    assert!(read("deploy/aiagc@.service").contains("instance-%i.env"));
}
