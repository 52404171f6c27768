//! The `aiagc` binary as a user runs it.

use std::process::Command;

fn aiagc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_aiagc"))
        .args(args)
        .output()
        .expect("aiagc runs")
}

/// Runs aiagc, which must succeed and print one JSON object.
fn aiagc_json(args: &[&str]) -> serde_json::Value {
    let out = aiagc(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

/// `aiagc demo --engine-only --json` finds every scripted utterance for each codec,
/// and every turn gets a reply whose latency the far end measured.
#[test]
fn engine_only_demo_json_reports_every_turn() {
    for codec in ["slin16", "ulaw", "opus"] {
        let v = aiagc_json(&["demo", "--engine-only", "--json", "--codec", codec]);
        let summary = &v["summary"];
        assert_eq!(summary["turns"], summary["expected_turns"], "{codec}");
        assert!(summary["turns"].as_u64().unwrap() >= 6);
        let turns = v["turns"].as_array().unwrap();
        for t in turns {
            let total = t["latency_ms"]["total"].as_f64().expect("total measured");
            let endpoint = t["latency_ms"]["endpoint"].as_f64().unwrap();
            // The reply cannot reach the caller before the endpoint decided,
            // and the endpointer waits for its 500 ms hangover.
            assert!(
                endpoint >= 450.0 && total > endpoint && total < 1500.0,
                "{codec}: {t}"
            );
        }
        assert!(
            turns.iter().any(|t| t["barge_in"] == true),
            "echo replies overlap the next utterance"
        );
    }
}

#[test]
fn demo_rejects_an_unknown_codec_with_the_accepted_values() {
    let out = aiagc(&["demo", "--engine-only", "--codec", "g729"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ulaw, alaw, g722, slin16, opus"), "{err}");
}

#[test]
fn models_check_reports_a_missing_folder() {
    let out = aiagc(&["models", "list", "--dir", "/nonexistent/aiagc-models"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("MISSING"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("scripts/setup.sh"));
}

/// `aiagc say` then `aiagc transcribe`: the speech core from the command line.
#[test]
fn say_then_transcribe_round_trip() {
    let wav = std::env::temp_dir().join(format!("aiagc-say-{}.wav", std::process::id()));
    let out = aiagc(&[
        "say",
        "Guten Tag, hier ist die Praxis.",
        "-o",
        wav.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = aiagc(&["transcribe", wav.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(text.contains("praxis"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("RTF"));
    let missing = aiagc(&["transcribe", "/nonexistent.wav"]);
    assert!(!missing.status.success());
    std::fs::remove_file(&wav).ok();
}

/// `aiagc demo --json` on the real path (simulator, ARI, engine, whisper,
/// the practice scenario, espeak-ng): the JSON contract, every turn
/// answered, a barge-in and a key press, latency measured.
#[test]
fn live_demo_json_contract() {
    let v = aiagc_json(&["demo", "--json"]);
    let turns = v["turns"].as_array().unwrap();
    let s = &v["summary"];
    // 12 scripted caller turns; a misheard answer can end a call (a
    // transfer) before the caller's last one, never before their first.
    assert!((10..=12).contains(&turns.len()), "{s}");
    assert_eq!(s["turns"], turns.len(), "every turn taken answered: {s}");
    for t in turns {
        for key in ["call", "reference", "transcript", "reply", "barge_in"] {
            assert!(t.get(key).is_some(), "{key} missing in {t}");
        }
        let l = &t["latency_ms"];
        for key in ["endpoint", "stt", "dialogue", "tts_first_audio", "total"] {
            assert!(l[key].is_number(), "{key} not measured in {t}");
        }
        assert!(l["total"].as_f64().unwrap() >= l["endpoint"].as_f64().unwrap());
        assert!(!t["reply"].as_str().unwrap().is_empty(), "{t}");
        if t.get("dtmf").is_none() {
            assert!(!t["transcript"].as_str().unwrap().is_empty(), "{t}");
        }
    }
    // The scripted barge-in is heard. The caller speaks 700 ms after the
    // agent fell silent, so when a reply's next sentence comes later than
    // that (tests share two cores) the caller talks into it and barges in
    // once more, truly: that one is counted, not false.
    let b = &s["barge_in"];
    assert_eq!(b["intended"], 1, "{b}");
    assert_eq!(b["detected"], 1, "the scripted barge-in heard: {b}");
    assert_eq!(b["false_barge_ins"], 0, "{b}");
    assert!(
        turns.iter().any(|t| t["barge_in"] == true),
        "the barge-in shows in its turn"
    );
    assert_eq!(
        turns.iter().filter(|t| t.get("dtmf").is_some()).count(),
        1,
        "one key press"
    );
    assert_eq!(s["calls"], 4);
    let wer = s["wer"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&wer), "{wer}");
    assert!(s["completed_tasks"].as_u64().unwrap() <= 4);
    assert!(s["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    assert!(s["latency_ms"]["p95"].as_f64().unwrap() >= s["latency_ms"]["p50"].as_f64().unwrap());
    // What the callers were told is what the booking system did: each
    // "eingetragen"/"verlegt" the agent said is an accepted request there.
    let calendar = &s["booking_system"];
    let confirmed = turns
        .iter()
        .filter(|t| {
            let r = t["reply"].as_str().unwrap();
            r.contains("ist eingetragen") || r.contains("ist verlegt auf")
        })
        .count();
    let accepted = calendar["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r[1] == true && (r[0] == "book" || r[0] == "move"))
        .count();
    assert_eq!(confirmed, accepted, "{calendar}");
    assert!(
        calendar["appointments"].as_array().unwrap().len() >= confirmed.min(1),
        "{calendar}"
    );
    // The calls' RTP counters are the app's own, not a placeholder: both
    // directions flowed, and the 1 % loss showed.
    let rtp = &s["rtp"];
    assert!(rtp["received"].as_u64().unwrap() > 1000, "{rtp}");
    assert!(rtp["sent"].as_u64().unwrap() > 1000, "{rtp}");
    assert!(
        rtp["lost"].as_u64().unwrap() < rtp["received"].as_u64().unwrap() / 10,
        "{rtp}"
    );
}

/// The whole demo over a bad network (20 % loss, 60 ms jitter, which
/// reorders): every turn is still answered, the loss is concealed, and
/// whisper still hears most words.
///
/// One run is a noisy figure: which words the loss takes depends on when
/// each caller starts speaking, so the same build read WER 0.45, 0.45,
/// 0.68 and 0.71 on one machine and 0.80 on another, with 1 to 3 of the 4
/// tasks completed (a "nein" heard as "nicht" ends a booking). The bars
/// catch a broken loss path (a jitter buffer that drops reordered packets,
/// concealment that stops): the quality figures are in BENCHMARKS.md.
#[test]
fn live_demo_holds_under_loss_and_jitter() {
    let v = aiagc_json(&["demo", "--json", "--loss", "0.2", "--jitter-ms", "60"]);
    let s = &v["summary"];
    // Every turn a caller took is answered (a misheard answer can finish
    // a task a turn early).
    assert_eq!(
        s["turns"], s["expected_turns"],
        "every caller turn answered: {s}"
    );
    assert!(s["turns"].as_u64().unwrap() >= 9, "{s}");
    assert!(s["completed_tasks"].as_u64().unwrap() >= 1, "{s}");
    let wer = s["wer"].as_f64().unwrap();
    assert!(wer < 0.9, "WER {wer} under loss");
    // The loss happened and was concealed, not skipped.
    let rtp = &s["rtp"];
    let (received, lost) = (
        rtp["received"].as_u64().unwrap(),
        rtp["lost"].as_u64().unwrap(),
    );
    assert!(lost * 10 > received, "20 % loss shows: {rtp}");
    let concealed = rtp["concealed_frames"].as_u64().unwrap();
    assert!(
        concealed * 10 >= lost * 9,
        "each lost frame concealed: {rtp}"
    );
    // 60 ms of jitter reorders: the buffer puts packets in place instead
    // of dropping them as late.
    assert!(rtp["late"].as_u64().unwrap() * 100 < received, "{rtp}");
}

/// `aiagc loadtest --json`: concurrent callers through the whole app; the
/// contract object, every call completed, nothing left behind.
#[test]
fn loadtest_json_contract_and_no_leaks() {
    let v = aiagc_json(&["loadtest", "--calls", "2", "--concurrency", "2", "--json"]);
    assert_eq!(v["calls"], 2);
    assert_eq!(v["completed"], 2);
    assert_eq!(v["failed"], 0);
    for k in ["p50", "p95", "p99"] {
        assert!(v["latency_ms"][k].as_f64().unwrap() > 0.0, "{v}");
    }
    for k in ["underruns", "pacing_jitter_p99_ms", "lost"] {
        assert!(v["rtp"][k].is_number(), "{v}");
    }
    for k in ["channels", "bridges", "sockets", "tasks"] {
        assert_eq!(v["leaks"][k], 0, "{k} left behind: {v}");
    }
    assert!(v["rss_mb_per_call"].is_number());
    let bad = aiagc(&["loadtest", "--target", "pbx"]);
    assert!(!bad.status.success());
}

/// `aiagc demo --long` over a line that echoes the agent (120 ms, 12 dB,
/// line noise): up to 33 caller turns in one call, a barge-in every fifth.
/// Every turn is answered, every intended barge-in is heard within 300 ms,
/// the agent's own echo stops a reply at most twice, replies sit at telephone
/// level, and the call's memory does not grow with the conversation. A
/// misheard "no" can end the call early (a booking): the checks hold for
/// however many turns it lasted. The latency comparison of turns 1–5 and
/// 26–30 is in BENCHMARKS.md, from release runs (timing is not asserted).
#[test]
fn live_demo_long_call_over_an_echoing_line() {
    let v = aiagc_json(&[
        "demo",
        "--long",
        "--json",
        "--echo-delay-ms",
        "120",
        "--echo-loss-db",
        "12",
        "--line-noise-dbfs=-60",
    ]);
    let s = &v["summary"];
    assert_eq!(s["turns"], s["expected_turns"], "every turn answered: {s}");
    assert!(s["turns"].as_u64().unwrap() >= 3, "{s}");
    let b = &s["barge_in"];
    assert!(b["intended"].as_u64().unwrap() >= 1, "{b}");
    assert_eq!(b["detected"], b["intended"], "{b}");
    for l in b["latency_ms"].as_array().unwrap() {
        assert!(l.as_f64().unwrap() <= 300.0, "{b}");
    }
    // Our own echo may pause a reply for a moment (it then plays on from
    // its sentence): 0–1 in 33 turns here, 4 in a CI run on a slower
    // machine, where a decode beside the media task shifts the echo
    // against its reference. What the caller must not lose is the reply:
    // the echo drops it at most twice.
    let turns = s["turns"].as_u64().unwrap();
    assert!(b["false_stops"].as_u64().unwrap() <= 2, "{b}");
    assert!(
        b["false_barge_ins"].as_u64().unwrap() * 5 <= turns,
        "at most one false pause in five turns: {b}"
    );
    let r = &s["reply_levels"];
    assert!(r["replies"].as_u64().unwrap() >= 3, "{r}");
    for k in ["lufs_min", "lufs_max"] {
        assert!((r[k].as_f64().unwrap() + 18.0).abs() <= 2.0, "{r}");
    }
    assert!(r["peak_dbfs"].as_f64().unwrap() < -0.3, "{r}");
    let mem = s["long"]["memory"].as_array().unwrap();
    if let [at5, at30] = &mem[..] {
        let growth = at30["heap_mb"].as_f64().unwrap() - at5["heap_mb"].as_f64().unwrap();
        assert!(growth < 8.0, "live heap grew {growth:.1} MB over 25 turns");
    }
}

/// `aiagc eval --json` over a slice of the labelled turns: one cell per
/// condition × bias with its figures, one record per decode, and the
/// grammar used only where asked for.
#[test]
fn eval_reports_each_condition_and_bias() {
    let v = aiagc_json(&[
        "eval",
        "--json",
        "--conditions",
        "alaw,wide",
        "--bias",
        "none,grammar",
        "--voices",
        "0",
        "--rates",
        "150",
        "--limit",
        "4",
    ]);
    let cells = v["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 4);
    let decodes = v["decodes"].as_array().unwrap();
    assert_eq!(decodes.len(), 16);
    for c in cells {
        assert_eq!(c["decodes"], 4);
        for key in ["wer", "intent_accuracy", "slot_accuracy", "stt_p50_ms"] {
            assert!(c[key].as_f64().unwrap() >= 0.0, "{key}: {c}");
        }
        assert!(c["intent_accuracy"].as_f64().unwrap() <= 1.0);
        let constrained =
            c["grammar_held"].as_u64().unwrap() + c["grammar_fell_back"].as_u64().unwrap();
        if c["bias"] == "none" {
            assert_eq!(constrained, 0, "{c}");
        }
    }
    // The first four turns are said in the menu, which has no grammar.
    assert!(decodes
        .iter()
        .all(|d| d["state"] == "menu" && d["grammar"] == "-"));
    // Wideband speech of the greeting is understood as booking.
    assert!(decodes
        .iter()
        .any(|d| d["condition"] == "wide" && d["decided"] == "book" && d["expected"] == "book"));

    let bad = aiagc(&["eval", "--bias", "loud"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown bias"));
}

/// `aiagc eval --calls` over one voice on the µ-law band: every goal is
/// called, nothing the caller did not ask for is ever committed, what is
/// committed is exactly the goal, and readings are scored where dates and
/// yes/no are expected (and not with `--single`).
#[test]
fn eval_calls_commit_nothing_the_caller_did_not_ask_for() {
    let run = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--calls",
            "--json",
            "--conditions",
            "ulaw",
            "--voices",
            "0",
            "--rates",
            "150",
        ];
        args.extend_from_slice(extra);
        aiagc_json(&args)
    };
    let v = run(&[]);
    let band = &v["bands"][0];
    assert_eq!(band["calls"], 10, "{band}");
    assert_eq!(band["wrong_commits"], 0, "{band}");
    let calls = v["calls"].as_array().unwrap();
    for c in calls {
        let committed = matches!(
            c["outcome"].as_str(),
            Some("booked" | "moved" | "cancelled")
        );
        assert_eq!(committed, c["completed"].as_bool().unwrap(), "{c}");
        assert!(!c["turns"].as_array().unwrap().is_empty());
    }
    assert!(band["completed"].as_u64().unwrap() >= 2, "{band}");
    let scored = calls
        .iter()
        .flat_map(|c| c["turns"].as_array().unwrap())
        .filter(|t| t["readings"].as_u64().unwrap() > 1)
        .count();
    assert!(scored >= 5, "{scored} turns with readings");
    let single = run(&["--single", "--limit", "2"]);
    assert!(single["calls"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["turns"].as_array().unwrap())
        .all(|t| t["readings"] == 0));
}
