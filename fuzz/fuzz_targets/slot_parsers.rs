//! What a caller says (any text) through the German slot parsers and a
//! whole scenario turn: no panic, and what they return is in range.
#![no_main]

use aiagc_dialogue::number::{cardinal, digits, first_number, ordinal};
use aiagc_dialogue::scenario::Scenario;
use aiagc_dialogue::text::tokens;
use aiagc_dialogue::when::{parse_date, parse_time};
use aiagc_dialogue::{Dialogue, Input};
use chrono::{Datelike, NaiveDate};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static SCENARIO: OnceLock<std::sync::Arc<Scenario>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let words = tokens(&text);
    let today = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
    if let Some(d) = parse_date(&words, today) {
        // A birth date or an appointment within ten years, nothing else.
        assert!(
            (today.year() - 120..=today.year() + 10).contains(&d.year()),
            "{d} from {text:?}"
        );
    }
    if let Some(t) = parse_time(&words) {
        let _ = t.speak();
    }
    for w in &words {
        let _ = cardinal(w);
        let _ = ordinal(w);
    }
    if let Some((i, _)) = first_number(&words) {
        assert!(i < words.len());
    }
    assert!(digits(&words).chars().all(|c| c.is_ascii_digit()));
    let scenario = SCENARIO.get_or_init(Scenario::praxis);
    let mut session = scenario.session();
    let _ = session.respond(Input::Start, today, &mut |_| true);
    let _ = session.hint(&text);
    let reply = session.respond(Input::Speech(&text), today, &mut |_| true);
    assert!(!reply.text.is_empty() || reply.action.is_some());
});
