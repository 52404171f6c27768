//! The German dialogue: the shipped scenario's flows, a malformed scenario,
//! and the LLM client against a loopback server that speaks the real
//! OpenAI streaming wire format.

use aiagc_dialogue::llm::{
    read_events, LlmClient, LlmConfig, LlmDialogue, LlmError, Message, SentenceCutter,
};
use aiagc_dialogue::scenario::{Scenario, ScenarioError};
use aiagc_dialogue::{Action, Dialogue, Input, Reply, TurnHint};
use chrono::NaiveDate;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::Duration;

/// Tuesday, 24 November 2026.
fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
}

fn say(d: &mut dyn Dialogue, input: Input<'_>) -> Reply {
    let mut said = Vec::new();
    let reply = d.respond(input, today(), &mut |s| {
        said.push(s.to_owned());
        true
    });
    assert_eq!(said.concat(), reply.text, "callback and reply agree");
    reply
}

#[test]
fn booking_in_three_turns() {
    let scenario = Scenario::praxis();
    let mut d = scenario.session();
    let r = say(&mut d, Input::Start);
    assert!(r.text.starts_with("Praxis Doktor Sommer"), "{}", r.text);
    assert!(r.text.contains("vereinbaren, verschieben oder absagen"));
    let r = say(
        &mut d,
        Input::Speech("Ich möchte einen Termin vereinbaren."),
    );
    assert_eq!(d.state(), "book_when");
    assert!(r.text.contains("An welchem Tag"), "{}", r.text);
    let r = say(&mut d, Input::Speech("Nächsten Dienstag um halb drei."));
    assert_eq!(d.state(), "book_confirm");
    assert_eq!(
        r.text,
        "Ich trage Sie ein für Dienstag, den 1. Dezember um 14 Uhr 30. Ist das richtig?"
    );
    let r = say(&mut d, Input::Speech("Ja, genau."));
    assert_eq!(r.action, Some(Action::Hangup));
    assert_eq!(r.outcome.as_deref(), Some("booked"));
    assert_eq!(d.outcome(), Some("booked"));
    assert!(r.text.contains("ist eingetragen"));
}

#[test]
fn one_sentence_with_everything_goes_straight_to_confirmation() {
    let mut d = Scenario::praxis().session();
    let r = say(
        &mut d,
        Input::Speech("Ich brauche einen Termin am dritten Dezember um Viertel nach neun"),
    );
    assert_eq!(d.state(), "book_confirm");
    assert!(
        r.text.contains("Donnerstag, den 3. Dezember um 9 Uhr 15"),
        "{}",
        r.text
    );
}

#[test]
fn missing_slot_is_asked_for_and_closed_hours_are_refused() {
    let mut d = Scenario::praxis().session();
    say(&mut d, Input::Speech("einen Termin buchen bitte"));
    let r = say(&mut d, Input::Speech("am Mittwoch"));
    assert_eq!(d.state(), "book_when");
    assert_eq!(r.text, "Um wie viel Uhr am Mittwoch, den 25. November?");
    // Wednesday afternoon: closed.
    let r = say(&mut d, Input::Speech("um vier"));
    assert!(
        r.text
            .starts_with("Zu dieser Zeit hat die Praxis leider geschlossen."),
        "{}",
        r.text
    );
    assert_eq!(d.state(), "book_when");
    assert!(d.slots().time.is_none() && d.slots().date.is_some());
    let r = say(&mut d, Input::Speech("dann um zehn"));
    assert_eq!(d.state(), "book_confirm", "{}", r.text);
}

#[test]
fn a_bare_no_to_the_confirmation_asks_what_to_change() {
    let mut d = Scenario::praxis().session();
    say(&mut d, Input::Speech("Termin vereinbaren, Montag um 8 Uhr"));
    assert_eq!(d.state(), "book_confirm");
    let r = say(&mut d, Input::Speech("Nein, das stimmt nicht."));
    assert_eq!(d.state(), "book_when");
    assert_eq!(
        r.text,
        "Kein Problem. Was soll ich ändern: den Tag oder die Uhrzeit?"
    );
    assert!(d.slots().date.is_some() && d.slots().time.is_some());
    // Naming the slot asks for it; the other one stays.
    let r = say(&mut d, Input::Speech("Die Uhrzeit."));
    assert_eq!(r.text, "Um wie viel Uhr am Montag, den 30. November?");
    let r = say(&mut d, Input::Speech("Um zehn."));
    assert_eq!(
        r.text,
        "Ich trage Sie ein für Montag, den 30. November um 10 Uhr. Ist das richtig?"
    );
    // A value right away changes just that slot.
    let r = say(&mut d, Input::Speech("Nein."));
    assert!(r.text.ends_with("den Tag oder die Uhrzeit?"), "{}", r.text);
    let r = say(&mut d, Input::Speech("Am Donnerstag."));
    assert_eq!(
        r.text,
        "Ich trage Sie ein für Donnerstag, den 26. November um 10 Uhr. Ist das richtig?"
    );
    let r = say(&mut d, Input::Speech("Ja."));
    assert_eq!(r.outcome.as_deref(), Some("booked"));
}

#[test]
fn a_correction_in_the_confirmation_changes_that_slot_and_confirms_again() {
    let start = |d: &mut dyn Dialogue| {
        say(
            d,
            Input::Speech("Einen Termin am Dienstag um zehn Uhr, bitte."),
        );
    };
    let cases = [
        (
            "Nein, Donnerstag.",
            "Donnerstag, den 26. November um 10 Uhr",
        ),
        (
            "Nein, am Donnerstag",
            "Donnerstag, den 26. November um 10 Uhr",
        ),
        ("Nein, um drei.", "Dienstag, den 1. Dezember um 15 Uhr"),
        // A "ja" that names another value is no confirmation of the old one.
        (
            "Ja, am Donnerstag.",
            "Donnerstag, den 26. November um 10 Uhr",
        ),
        (
            "Nicht Dienstag, sondern Donnerstag um elf.",
            "Donnerstag, den 26. November um 11 Uhr",
        ),
    ];
    for (answer, want) in cases {
        let mut d = Scenario::praxis().session();
        start(&mut d);
        assert_eq!(d.state(), "book_confirm");
        let r = say(&mut d, Input::Speech(answer));
        assert_eq!(d.state(), "book_confirm", "{answer}: {}", r.text);
        assert_eq!(r.outcome, None, "{answer}");
        assert_eq!(
            r.text,
            format!("Ich trage Sie ein für {want}. Ist das richtig?"),
            "{answer}"
        );
    }
    // The same value again is a plain yes.
    let mut d = Scenario::praxis().session();
    start(&mut d);
    let r = say(&mut d, Input::Speech("Ja, am Dienstag um zehn."));
    assert_eq!(r.outcome.as_deref(), Some("booked"), "{}", r.text);
    // A correction into closed hours is refused like any other answer.
    let mut d = Scenario::praxis().session();
    start(&mut d);
    let r = say(&mut d, Input::Speech("Nein, am Mittwoch um vier."));
    assert!(r.text.contains("geschlossen"), "{}", r.text);
    assert_eq!(d.state(), "book_when");
    assert_eq!(d.outcome(), None);
}

#[test]
fn a_slot_comes_from_where_the_caller_said_it() {
    let cases = [
        // Recognizers run on after a complete answer.
        (
            "Am Dienstag um halb drei. Am Vormittag",
            "Dienstag, den 1. Dezember um 14 Uhr 30",
        ),
        (
            "Am Dienstag um zehn Uhr, ein Früh, einen. Termin, frei,",
            "Dienstag, den 1. Dezember um 10 Uhr",
        ),
        // A correction inside the answer wins; a negated clause gives nothing.
        (
            "Am Dienstag, nein, am Donnerstag um zehn",
            "Donnerstag, den 26. November um 10 Uhr",
        ),
        (
            "Nicht am Montag, am Freitag um neun.",
            "Freitag, den 27. November um 9 Uhr",
        ),
        (
            "Um zehn, lieber um elf, am Montag",
            "Montag, den 30. November um 11 Uhr",
        ),
    ];
    for (answer, want) in cases {
        let mut d = Scenario::praxis().session();
        say(&mut d, Input::Dtmf("1"));
        let r = say(&mut d, Input::Speech(answer));
        assert_eq!(
            r.text,
            format!("Ich trage Sie ein für {want}. Ist das richtig?"),
            "{answer}"
        );
    }
}

#[test]
fn moving_an_appointment_does_not_reuse_the_old_date() {
    let mut d = Scenario::praxis().session();
    say(&mut d, Input::Speech("Ich muss meinen Termin verschieben"));
    assert_eq!(d.state(), "move_old");
    let r = say(&mut d, Input::Speech("Der ist am dritten Dezember"));
    assert_eq!(d.state(), "move_new", "{}", r.text);
    assert!(d.slots().date.is_none());
    let r = say(&mut d, Input::Speech("Donnerstag um 10 Uhr"));
    // Both appointments are named: a misheard old date is heard too.
    assert_eq!(
        r.text,
        "Ich verlege Ihren Termin vom Donnerstag, den 3. Dezember auf Donnerstag, den 26. November um 10 Uhr. Ist das richtig?"
    );
    // A bare "nein" starts the move again; a new date corrects just that.
    let r = say(&mut d, Input::Speech("Nein, am Freitag."));
    assert!(
        r.text.contains("auf Freitag, den 27. November um 10 Uhr"),
        "{}",
        r.text
    );
    let r = say(&mut d, Input::Speech("Nein."));
    assert_eq!(d.state(), "move_old", "{}", r.text);
    assert_eq!(*d.slots(), Default::default());
    say(&mut d, Input::Speech("Am dritten Dezember."));
    say(&mut d, Input::Speech("Donnerstag um 10 Uhr"));
    let r = say(&mut d, Input::Dtmf("1"));
    assert_eq!(r.outcome.as_deref(), Some("moved"));
    assert!(
        r.text.contains("Donnerstag, den 26. November um 10 Uhr"),
        "{}",
        r.text
    );
}

#[test]
fn cancelling_with_dtmf_and_menu_keys() {
    let mut d = Scenario::praxis().session();
    say(&mut d, Input::Dtmf("3"));
    assert_eq!(d.state(), "cancel_when");
    let r = say(&mut d, Input::Speech("übermorgen"));
    assert_eq!(d.state(), "cancel_confirm");
    assert!(r.text.contains("Donnerstag, den 26. November"));
    let r = say(&mut d, Input::Dtmf("1"));
    assert_eq!(r.outcome.as_deref(), Some("cancelled"));
    assert_eq!(r.action, Some(Action::Hangup));
}

#[test]
fn global_intents_reprompts_and_fallback() {
    let mut d = Scenario::praxis().session();
    let r = say(&mut d, Input::Speech("Wann haben Sie denn geöffnet?"));
    assert!(r.text.contains("Montag bis Freitag von 8 bis 12 Uhr"));
    assert!(
        r.text.ends_with("verschieben oder absagen?"),
        "stays and re-asks: {}",
        r.text
    );
    assert_eq!(d.state(), "menu");
    let r = say(&mut d, Input::Speech("Blumenkohl"));
    assert!(r.text.starts_with("Sagen Sie zum Beispiel"));
    let r = say(&mut d, Input::Silence);
    assert!(r.text.starts_with("Sind Sie noch da?"));
    // Silence is not a misunderstanding: two more of those lead on.
    let r = say(&mut d, Input::Speech("Wetter"));
    assert!(r.action.is_none(), "{}", r.text);
    let r = say(&mut d, Input::Speech("Regen"));
    assert_eq!(r.outcome.as_deref(), Some("transferred"));
    assert_eq!(
        r.action,
        Some(Action::Transfer {
            context: "from-ai-agent".into(),
            extension: "s".into(),
            priority: 1
        })
    );
    let mut d = Scenario::praxis().session();
    let r = say(
        &mut d,
        Input::Speech("Können Sie mich bitte mit einem Mitarbeiter verbinden?"),
    );
    assert!(matches!(r.action, Some(Action::Transfer { .. })));
    let mut d = Scenario::praxis().session();
    let r = say(&mut d, Input::Speech("Nein danke, das wars. Tschüss!"));
    assert_eq!(r.action, Some(Action::Hangup));
}

#[test]
fn stt_variants_are_understood() {
    for (heard, state) in [
        ("ich möchte einen termien vereinbaren", "book_when"),
        ("TERMIN VERSCHIBEN", "move_old"),
        ("Ich will absagen.", "cancel_when"),
        ("Ich moechte einen Termin stornieren", "cancel_when"),
        ("Hallo, ja, ich hätte gern einen neuen Termin.", "book_when"),
    ] {
        let mut d = Scenario::praxis().session();
        say(&mut d, Input::Speech(heard));
        assert_eq!(d.state(), state, "{heard}");
    }
}

#[test]
fn turn_hints_follow_the_state() {
    let mut d = Scenario::praxis().session();
    assert_eq!(
        d.hint("Ich möchte einen Termin vereinbaren"),
        TurnHint::Complete
    );
    assert_eq!(d.hint("Ich möchte einen Termin und"), TurnHint::Unfinished);
    assert_eq!(d.hint("Also"), TurnHint::Unfinished);
    assert_eq!(d.hint("Hm ja gut"), TurnHint::Unknown);
    say(&mut d, Input::Speech("Termin vereinbaren"));
    assert_eq!(d.hint("am Dienstag um halb drei"), TurnHint::Complete);
    assert_eq!(
        d.hint("am Dienstag"),
        TurnHint::Unknown,
        "the time may follow"
    );
    assert_eq!(d.hint("am Dienstag um"), TurnHint::Unfinished);
    say(&mut d, Input::Speech("am Dienstag um halb drei"));
    assert_eq!(d.hint("Ja"), TurnHint::Complete);
}

#[test]
fn malformed_scenarios_are_refused_with_the_place_named() {
    let base = aiagc_dialogue::scenario::PRAXIS;
    let cases = [
        (
            base.replace("start = \"menu\"", "start = \"nirgends\""),
            "start state `nirgends`",
        ),
        (
            base.replace("goto = \"book_confirm\"", "goto = \"bestaetigen\""),
            "book_when.next goes to undefined state `bestaetigen`",
        ),
        (
            base.replace(
                "collect = [\"date\"]\nnext = { goto = \"cancel_confirm\" }",
                "collect = [\"farbe\"]\nnext = { goto = \"cancel_confirm\" }",
            ),
            "unknown slot `farbe`",
        ),
        (
            base.replace("on.book = ", "on.kaufen = "),
            "intent `kaufen`",
        ),
        (
            base.replace(
                "mon = [\"08:00-12:00\", \"14:00-18:00\"]",
                "mon = [\"8-12\"]",
            ),
            "hours.mon",
        ),
        (base.replace("dtmf.0 =", "dtmf.x ="), "DTMF key `x`"),
        (
            base.replace("action = \"hangup\"", "action = \"explode\""),
            "action `explode`",
        ),
    ];
    for (text, expected) in cases {
        match Scenario::from_toml(&text) {
            Err(ScenarioError::Invalid(m)) => assert!(m.contains(expected), "{m} / {expected}"),
            other => panic!("{expected}: {other:?}"),
        }
    }
    assert!(matches!(
        Scenario::from_toml("name = 3"),
        Err(ScenarioError::Toml(_))
    ));
    assert!(matches!(
        Scenario::from_toml(&format!("{base}\nunbekannt = 1")),
        Err(ScenarioError::Toml(_))
    ));
}

// ---- LLM ----

fn sse(chunks: &[&str]) -> String {
    let mut body = String::new();
    for c in chunks {
        let json = serde_json::json!({"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":c},"finish_reason":null}]});
        body.push_str(&format!("data: {json}\n\n"));
    }
    body.push_str("data: [DONE]\n\n");
    body
}

#[test]
fn event_stream_parsing() {
    let mut got = Vec::new();
    let text = format!(
        ": keep-alive\n\nevent: message\r\n{}",
        sse(&["Guten", " Tag."])
    );
    let answer = read_events(BufReader::new(text.as_bytes()), &mut |t| {
        got.push(t.to_owned());
        true
    })
    .unwrap();
    assert_eq!(answer, "Guten Tag.");
    assert_eq!(got, ["Guten", " Tag."]);
    // A role-only first chunk and a final chunk without content are fine.
    let text = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"Ja\"}}]}\n\ndata: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    assert_eq!(
        read_events(BufReader::new(text.as_bytes()), &mut |_| true).unwrap(),
        "Ja"
    );
    for bad in [
        "data: {nope\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
        "data: [1,2]\n\n",
    ] {
        let err = read_events(BufReader::new(bad.as_bytes()), &mut |_| true).unwrap_err();
        assert!(matches!(err, LlmError::Stream(_)), "{bad}: {err}");
    }
    let err = read_events(BufReader::new(sse(&["a", "b"]).as_bytes()), &mut |_| false).unwrap_err();
    assert!(matches!(err, LlmError::Cancelled));
}

#[test]
fn sentences_are_cut_as_they_stream() {
    let mut out = Vec::new();
    let mut cutter = SentenceCutter::default();
    for piece in [
        "Gerne. Ihr Ter",
        "min ist am 3. Dez",
        "ember bei Dr. Sommer",
        ". Bis dann!",
        " Tschüss",
    ] {
        cutter.push(piece, &mut |s| {
            out.push(s.to_owned());
            true
        });
    }
    cutter.finish(&mut |s| {
        out.push(s.to_owned());
        true
    });
    assert_eq!(
        out,
        [
            "Gerne.",
            "Ihr Termin ist am 3. Dezember bei Dr. Sommer.",
            "Bis dann!",
            "Tschüss"
        ]
    );
}

/// Serves `responses` in turn on loopback (one per connection); returns the
/// base URL and the requests' bodies as they arrive.
fn server(
    responses: Vec<(u16, String, Duration)>,
) -> (String, std::sync::mpsc::Receiver<serde_json::Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for (status, body, delay) in responses {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut request = vec![0; length];
            reader.read_exact(&mut request).ok();
            let _ = tx.send(serde_json::from_slice(&request).unwrap_or_default());
            let mut stream = stream;
            let kind = if status == 200 {
                "text/event-stream"
            } else {
                "application/json"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: {kind}\r\nconnection: close\r\n\r\n"
            );
            // Stream event by event, as a server does.
            for part in body.split_inclusive("\n\n") {
                std::thread::sleep(delay);
                if stream.write_all(part.as_bytes()).is_err() {
                    break;
                }
                let _ = stream.flush();
            }
        }
    });
    (format!("http://{addr}/v1"), rx)
}

fn client(url: &str) -> LlmClient {
    LlmClient::new(LlmConfig {
        base_url: url.into(),
        model: "test-model".into(),
        api_key: Some("geheim".into()),
        first_token_timeout: Duration::from_millis(500),
        total_timeout: Duration::from_secs(3),
        ..LlmConfig::default()
    })
    .unwrap()
}

#[test]
fn llm_streams_sentences_before_the_answer_is_complete() {
    let body = sse(&[
        "Gerne",
        ", ich schaue nach.",
        " Am Dienstag",
        " ist noch etwas frei.",
    ]);
    let (url, requests) = server(vec![(200, body, Duration::from_millis(150))]);
    let scenario = Scenario::praxis();
    let mut d = LlmDialogue::new(client(&url), &scenario, "Die Praxis liegt in Berlin.");
    let start = std::time::Instant::now();
    let mut said = Vec::new();
    let reply = d.respond(
        Input::Speech("Haben Sie Dienstag Zeit?"),
        today(),
        &mut |s| {
            said.push((s.to_owned(), start.elapsed()));
            true
        },
    );
    assert_eq!(
        reply.text,
        "Gerne, ich schaue nach. Am Dienstag ist noch etwas frei."
    );
    assert_eq!(said.len(), 2);
    assert_eq!(said[0].0, "Gerne, ich schaue nach.");
    // The first sentence was out before the last chunk was sent.
    assert!(said[0].1 < said[1].1, "{said:?}");
    let request = requests.recv_timeout(Duration::from_secs(2)).unwrap();
    assert_eq!(request["model"], "test-model");
    assert_eq!(request["stream"], true);
    assert_eq!(request["messages"][0]["role"], "system");
    assert!(request["messages"][0]["content"]
        .as_str()
        .unwrap()
        .ends_with("Die Praxis liegt in Berlin."));
    assert!(request["messages"][1]["content"]
        .as_str()
        .unwrap()
        .starts_with("Haben Sie Dienstag Zeit?"));
    assert_eq!(d.history().len(), 3);
    assert_eq!(
        d.history()[2],
        Message::new("assistant", reply.text.clone())
    );
}

#[test]
fn llm_errors_and_timeouts_fall_back_to_the_scenario_reprompt() {
    let (url, _requests) = server(vec![
        (500, "{\"error\":\"overloaded\"}".into(), Duration::ZERO),
        (200, sse(&["Zu langsam."]), Duration::from_millis(900)),
    ]);
    let scenario = Scenario::praxis();
    let mut d = LlmDialogue::new(client(&url), &scenario, "");
    for _ in 0..2 {
        let reply = say(&mut d, Input::Speech("Was kostet das?"));
        assert!(
            reply.text.starts_with("Sagen Sie zum Beispiel"),
            "{}",
            reply.text
        );
        assert_eq!(
            d.history().len(),
            1,
            "a failed turn leaves no trace in the history"
        );
    }
    let err = client(&url.replace("/v1", "/nix"))
        .stream(&[], &mut |_| true)
        .unwrap_err();
    assert!(matches!(err, LlmError::Transport(_)), "{err}");
    // A transfer request never reaches the model.
    let reply = say(
        &mut d,
        Input::Speech("Verbinden Sie mich mit der Rezeption"),
    );
    assert!(matches!(reply.action, Some(Action::Transfer { .. })));
}

#[test]
fn llm_status_errors_carry_the_body() {
    let (url, _r) = server(vec![(
        401,
        "{\"error\":\"bad key\"}".into(),
        Duration::ZERO,
    )]);
    match client(&url).stream(&[], &mut |_| true) {
        Err(LlmError::Status { status: 401, body }) => assert!(body.contains("bad key")),
        other => panic!("{other:?}"),
    }
    assert!(
        !format!("{:?}", client(&url)).contains("geheim"),
        "api key redacted"
    );
}

#[test]
fn an_endless_stream_is_cut_at_its_bound() {
    // A well-formed answer of 2 MiB: read up to the bound, then an error
    // (the turn falls back to the scenario), not 2 MiB buffered and spoken.
    let line = format!(
        "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{}\"}}}}]}}\n\ndata: [DONE]\n\n",
        "a".repeat(2 << 20)
    );
    let (url, _r) = server(vec![(200, line, Duration::ZERO)]);
    let err = client(&url).stream(&[], &mut |_| true).unwrap_err();
    assert!(
        matches!(err, LlmError::Stream(_) | LlmError::Transport(_)),
        "{err}"
    );
    const { assert!(aiagc_dialogue::llm::MAX_STREAM_BYTES < 2 << 20) };
}

/// Found by the `slot_parsers` fuzz target (kept in
/// fuzz/regressions/slot_parsers/): a date in the year 7777 was booked.
#[test]
fn implausible_years_and_distances_are_no_date() {
    use aiagc_dialogue::text::tokens;
    use aiagc_dialogue::when::parse_date;
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
    let crash = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/regressions/slot_parsers/crash-a50af00a18cd9f6d80959f0d56bac6dc79660dcd"
    ))
    .unwrap();
    let crash = String::from_utf8_lossy(&crash);
    assert_eq!(parse_date(&tokens(&crash), today), None, "{crash:?}");
    for text in [
        "am 7.7.7777",
        "am 1.1.1800",
        "in neunhundert Wochen",
        "in tausend Tagen",
    ] {
        assert_eq!(parse_date(&tokens(text), today), None, "{text}");
    }
    for (text, want) in [
        ("am 15.01.2027", (2027, 1, 15)),
        ("geboren am 3.4.1961", (1961, 4, 3)),
        ("in zwei Wochen", (2026, 12, 8)),
        ("in hundert Tagen", (2027, 3, 4)),
    ] {
        let d = chrono::NaiveDate::from_ymd_opt(want.0, want.1, want.2).unwrap();
        assert_eq!(parse_date(&tokens(text), today), Some(d), "{text}");
    }
}

/// A caller who stays silent is asked twice, then the call ends politely;
/// speaking in between starts the count again.
#[test]
fn a_silent_caller_is_asked_twice_then_the_call_ends() {
    let mut d = Scenario::praxis().session();
    say(&mut d, Input::Start);
    for _ in 0..2 {
        let r = say(&mut d, Input::Silence);
        assert!(r.text.starts_with("Sind Sie noch da?"), "{}", r.text);
        assert!(r.action.is_none());
    }
    let r = say(
        &mut d,
        Input::Speech("Ich möchte einen Termin vereinbaren."),
    );
    assert!(r.action.is_none());
    for _ in 0..2 {
        assert!(say(&mut d, Input::Silence).action.is_none());
    }
    let r = say(&mut d, Input::Silence);
    assert_eq!(r.action, Some(Action::Hangup));
    assert_eq!(r.outcome.as_deref(), Some("no_input"));
    assert!(r.text.contains("Auf Wiederhören"), "{}", r.text);
}

/// A long call's requests stop growing: the system prompt plus the latest
/// exchanges, oldest first out, always starting with the caller.
#[test]
fn llm_history_is_bounded_over_a_long_call() {
    let answers = (0..12)
        .map(|i| (200, sse(&[&format!("Antwort {i}.")]), Duration::ZERO))
        .collect();
    let (url, requests) = server(answers);
    let client = LlmClient::new(LlmConfig {
        base_url: url,
        model: "test-model".into(),
        first_token_timeout: Duration::from_millis(500),
        total_timeout: Duration::from_secs(3),
        max_history: 4,
        ..LlmConfig::default()
    })
    .unwrap();
    let scenario = Scenario::praxis();
    let mut d = LlmDialogue::new(client, &scenario, "");
    for i in 0..12 {
        let r = say(&mut d, Input::Speech(&format!("Frage Nummer {i}")));
        assert_eq!(r.text, format!("Antwort {i}."));
        let request = requests.recv_timeout(Duration::from_secs(2)).unwrap();
        let messages = request["messages"].as_array().unwrap();
        assert!(messages.len() <= 1 + 4 + 1, "{} messages", messages.len());
        assert_eq!(messages[0]["role"], "system");
        assert_eq!(messages[1]["role"], "user");
        assert!(messages.last().unwrap()["content"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Frage Nummer {i}")));
    }
    assert!(d.history().len() <= 1 + 4 + 2);
}

fn readings(texts: &[(&str, f32)]) -> Vec<aiagc_models::nbest::Hypothesis> {
    texts
        .iter()
        .map(|(text, logprob)| aiagc_models::nbest::Hypothesis {
            text: (*text).into(),
            logprob: *logprob,
        })
        .collect()
}

/// Two close readings of a weekday: the caller is asked to choose (the
/// time kept), once; their answer fills the day and goes to confirmation.
#[test]
fn close_readings_are_put_to_the_caller() {
    let mut d = Scenario::praxis().session();
    say(&mut d, Input::Dtmf("1"));
    let heard = readings(&[
        ("Am Dienstag um zehn Uhr.", 0.0),
        ("Am Donnerstag um zehn Uhr.", -0.5),
        ("Am Montag um zehn Uhr.", -6.0),
    ]);
    let r = say(&mut d, Input::Readings(&heard));
    assert_eq!(
        r.text,
        "Meinten Sie Dienstag, den 1. Dezember oder Donnerstag, den 26. November?"
    );
    assert_eq!(d.state(), "book_when");
    assert!(d.slots().date.is_none() && d.slots().time.is_some());
    // Asked once: a second close answer takes the likelier reading.
    let answer = readings(&[("Donnerstag.", 0.0), ("Dienstag.", -0.3)]);
    let r = say(&mut d, Input::Readings(&answer));
    assert_eq!(
        r.text,
        "Ich trage Sie ein für Donnerstag, den 26. November um 10 Uhr. Ist das richtig?"
    );
}

/// Readings far apart are taken without asking; sense weighs in: a date
/// nine months ahead loses to a likely-enough one next week, a closed
/// time does not beat a reading much likelier on the audio.
#[test]
fn readings_are_weighed_by_probability_and_sense() {
    let cases = [
        (
            vec![
                ("Am Dienstag um zehn Uhr.", 0.0),
                ("Am Donnerstag um zehn Uhr.", -4.0),
            ],
            "Ich trage Sie ein für Dienstag, den 1. Dezember um 10 Uhr. Ist das richtig?",
        ),
        (
            vec![
                ("Am 3. September um zehn Uhr.", 0.0),
                ("Am 3. Dezember um zehn Uhr.", -1.8),
                ("Am 3. Oktober um zehn Uhr.", -5.0),
            ],
            "Ich trage Sie ein für Donnerstag, den 3. Dezember um 10 Uhr. Ist das richtig?",
        ),
        (
            // Friday afternoon is closed, yet Tuesday is 5 nats less likely.
            vec![("Am Freitag um fünf.", 0.0), ("Am Dienstag um fünf.", -5.1)],
            "Zu dieser Zeit hat die Praxis leider geschlossen.",
        ),
    ];
    for (heard, want) in cases {
        let mut d = Scenario::praxis().session();
        say(&mut d, Input::Dtmf("1"));
        let r = say(&mut d, Input::Readings(&readings(&heard)));
        assert!(r.text.starts_with(want), "{heard:?}: {}", r.text);
    }
}

/// A yes that would commit is taken only when no reading close to it
/// says no: otherwise the caller is asked again, with the keys.
#[test]
fn a_doubtful_yes_books_nothing() {
    let mut d = Scenario::praxis().session();
    say(
        &mut d,
        Input::Speech("Einen Termin am Dienstag um zehn Uhr"),
    );
    assert_eq!(d.state(), "book_confirm");
    let r = say(
        &mut d,
        Input::Readings(&readings(&[("Ja,", 0.0), ("Nein,", -1.2)])),
    );
    assert_eq!(r.outcome, None, "{}", r.text);
    assert!(r.text.contains("drücken Sie die 1 für ja"), "{}", r.text);
    let r = say(&mut d, Input::Speech("Ein, vor ein, passt mir."));
    assert_eq!(r.outcome, None, "a clipped nein is no yes: {}", r.text);
    let r = say(
        &mut d,
        Input::Readings(&readings(&[("Ja, genau.", 0.0), ("Nein, genau.", -9.0)])),
    );
    assert_eq!(r.outcome.as_deref(), Some("booked"));
}
