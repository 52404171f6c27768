//! Grammars of the closed answers a state can expect — yes/no, a date, a
//! clock time, both, a number — written in the spellings whisper produces
//! ("halb drei", "14:30 Uhr", "am 3. Dezember", "zweiundvierzig") and the
//! short carrier phrases callers wrap them in ("Haben Sie … etwas frei?").
//! Each grammar accepts what the slot parsers in [`super::when`] and
//! [`super::number`] understand (tested both ways in `tests`).

use super::scenario::{NO, YES};
use super::text::unfold;
use super::when::MONTHS;
use aiagc_models::grammar::{
    alt, any_of, glue, opt, repeat, seq, words, Grammar, GrammarError, Pattern,
};
use aiagc_models::nbest::Confusions;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// A kind of answer a state expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Answer {
    /// "Ja, genau." / "Nein, danke."
    YesNo,
    /// "Am Dienstag", "übermorgen", "am dritten Dezember".
    Date,
    /// "Um halb drei", "14 Uhr 30".
    Time,
    /// A date, a time, or both in either order.
    DateTime,
    /// "Zweiundvierzig", "eins zwei drei", "1980".
    Number,
    /// A confirmation answered with a correction of the date or time read
    /// back: "Nein, am Donnerstag", "Nein, um drei", "Nicht Dienstag,
    /// sondern Donnerstag".
    Correction,
}

impl Answer {
    /// Short name (reports).
    pub fn name(self) -> &'static str {
        match self {
            Self::YesNo => "yes_no",
            Self::Date => "date",
            Self::Time => "time",
            Self::DateTime => "date_time",
            Self::Number => "number",
            Self::Correction => "correction",
        }
    }
}

const UNITS: [&str; 20] = [
    "null",
    "eins",
    "zwei",
    "drei",
    "vier",
    "fünf",
    "sechs",
    "sieben",
    "acht",
    "neun",
    "zehn",
    "elf",
    "zwölf",
    "dreizehn",
    "vierzehn",
    "fünfzehn",
    "sechzehn",
    "siebzehn",
    "achtzehn",
    "neunzehn",
];
const TENS: [&str; 10] = [
    "", "zehn", "zwanzig", "dreißig", "vierzig", "fünfzig", "sechzig", "siebzig", "achtzig",
    "neunzig",
];

/// `n` (0..=99) in words; `ein` as the unit of a compound.
pub fn spell(n: u32) -> String {
    match n {
        0..=19 => UNITS[n as usize].to_owned(),
        _ if n.is_multiple_of(10) => TENS[(n / 10) as usize % 10].to_owned(),
        _ => {
            let unit = if n % 10 == 1 {
                "ein"
            } else {
                UNITS[(n % 10) as usize]
            };
            format!("{unit}und{}", TENS[(n / 10) as usize % 10])
        }
    }
}

/// The ordinal of `n` (1..=31) as said after "am": "ersten", "dritten".
fn ordinal(n: u32) -> Vec<String> {
    match n {
        1 => vec!["ersten".into()],
        3 => vec!["dritten".into()],
        7 => vec!["siebten".into(), "siebenten".into()],
        8 => vec!["achten".into()],
        2..=19 => vec![format!("{}ten", spell(n))],
        _ => vec![format!("{}sten", spell(n))],
    }
}

/// A number said in words or written in digits.
fn number_forms(range: std::ops::RangeInclusive<u32>) -> Pattern {
    let mut forms = Vec::new();
    for n in range {
        forms.push(spell(n));
        forms.push(n.to_string());
        if n == 1 {
            forms.push("ein".into());
        }
        if n == 2 {
            forms.push("zwo".into());
        }
    }
    any_of(forms)
}

const WEEKDAYS: [&str; 8] = [
    "montag",
    "dienstag",
    "mittwoch",
    "donnerstag",
    "freitag",
    "samstag",
    "sonnabend",
    "sonntag",
];

fn daypart() -> Pattern {
    any_of([
        "morgens",
        "früh",
        "vormittags",
        "mittags",
        "nachmittags",
        "abends",
        "am morgen",
        "am vormittag",
        "am mittag",
        "am nachmittag",
        "am abend",
        "vormittag",
        "nachmittag",
    ])
}

/// A clock time: "halb drei", "Viertel nach vier", "14 Uhr 30", "14:30",
/// "um zehn", each optionally "um …" and "… nachmittags".
fn time() -> Pattern {
    let hour = || number_forms(0..=24);
    let minute = number_forms(1..=59);
    let mut digital = Vec::new();
    for h in 0..24 {
        for m in 0..60 {
            digital.push(format!("{h}{m:02}"));
            if h < 10 {
                digital.push(format!("0{h}{m:02}"));
            }
        }
    }
    let clock = alt([
        seq([hour(), words("uhr"), opt(minute)]),
        seq([any_of(digital), opt(words("uhr"))]),
    ]);
    let relative = alt([
        seq([words("halb"), hour()]),
        seq([
            any_of(["viertel nach", "viertel vor", "viertel", "dreiviertel"]),
            hour(),
        ]),
        seq([
            // Minutes as the parser takes them: in fives ("zehn nach drei").
            alt([5, 10, 15, 20, 25].map(|m| number_forms(m..=m))),
            any_of(["nach", "vor", "nach halb", "vor halb"]),
            hour(),
        ]),
    ]);
    let at = any_of(["um", "gegen", "so um", "so gegen", "ab", "so ab"]);
    seq([
        alt([
            seq([opt(at), alt([clock, relative])]),
            // A bare hour needs the "um": "um zehn".
            seq([any_of(["um", "so um"]), hour()]),
            any_of(["um mittag", "so um mittag"]),
        ]),
        opt(daypart()),
    ])
}

/// A date: a weekday, a day relative to today, a day of a month, "in drei
/// Tagen".
fn date() -> Pattern {
    let weekday = any_of(
        WEEKDAYS
            .iter()
            .flat_map(|d| [d.to_string(), format!("{d}s")]),
    );
    let week = any_of([
        "nächste woche",
        "in der nächsten woche",
        "kommende woche",
        "diese woche",
        "in dieser woche",
        "übernächste woche",
    ]);
    let by_weekday = seq([
        opt(alt([
            any_of([
                "am",
                "nächsten",
                "am nächsten",
                "kommenden",
                "am kommenden",
                "diesen",
                "an diesem",
                "den",
            ]),
            week.clone(),
        ])),
        weekday,
        opt(week),
    ]);
    let relative = any_of(["heute", "morgen", "übermorgen"]);
    // Day and month, each month with the days it has ("am dritten
    // Dezember", "3. Dezember", "am dritten zwölften"); 29 February counts.
    let day_forms = |d: u32| {
        let mut f = ordinal(d);
        f.push(d.to_string());
        if d < 10 {
            f.push(format!("0{d}"));
        }
        f
    };
    let mut with_month = Vec::new();
    for m in 1..=12u32 {
        let last = match m {
            2 => 29,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let mut names: Vec<String> = ordinal(m);
        names.push(unfold(MONTHS[m as usize - 1]));
        if m == 1 {
            names.push("jänner".into());
        }
        with_month.push(seq([any_of((1..=last).flat_map(day_forms)), any_of(names)]));
    }
    let with_month = alt(with_month);
    let mut numeric = Vec::new();
    for d in 1..=31u32 {
        for m in 1..=12u32 {
            for form in [
                format!("{d}{m}"),
                format!("{d:02}{m:02}"),
                format!("{d}{m:02}"),
            ] {
                if !numeric.contains(&form) {
                    numeric.push(form);
                }
            }
        }
    }
    // A day without its month needs the "am" ("am zweiten").
    let on = || any_of(["am", "den", "zum", "ab"]);
    let of_month = alt([
        seq([
            on(),
            alt([with_month.clone(), any_of((1..=31).flat_map(day_forms))]),
        ]),
        with_month,
        seq([opt(on()), any_of(numeric)]),
    ]);
    let ahead = seq([
        words("in"),
        number_forms(1..=30),
        any_of(["tag", "tagen", "woche", "wochen"]),
    ]);
    alt([by_weekday, relative, of_month, ahead])
}

/// Words callers put before a date or time.
fn lead_in() -> Pattern {
    any_of([
        "ja",
        "ja gerne",
        "gerne",
        "also",
        "ähm",
        "äh",
        "hm",
        "dann",
        "vielleicht",
        "am liebsten",
        "lieber",
        "ich könnte",
        "ich kann",
        "ich komme",
        "ich würde gerne",
        "ich würde gern",
        "ich möchte",
        "ich hätte gerne einen termin",
        "ich hätte gern einen termin",
        "ich möchte einen termin",
        "ich brauche einen termin",
        "einen termin",
        "haben sie",
        "haben sie noch",
        "geht es",
        "geht",
        "ginge es",
        "passt es",
        "passt",
        "wie wäre es",
        "wie wäre es mit",
        "wie sieht es aus",
        "mir passt",
        "mir würde",
        "es ist",
        "das ist",
        "der termin ist",
        "mein termin ist",
        "er ist",
        "der ist",
        "ich habe einen termin",
        "ich hatte einen termin",
        "ich habe den termin",
        "wäre",
    ])
}

/// Words callers put after a date or time.
fn lead_out() -> Pattern {
    any_of([
        "etwas frei",
        "noch etwas frei",
        "was frei",
        "noch was frei",
        "einen termin frei",
        "wäre gut",
        "wäre mir recht",
        "wäre schön",
        "wäre super",
        "passt mir",
        "passt mir gut",
        "wenn das geht",
        "wenn es geht",
        "wenn möglich",
        "bitte",
        "geht das",
        "passt das",
        "ginge das",
        "ist das möglich",
        "würde mir passen",
        "wäre das möglich",
        "danke",
    ])
}

fn wrapped(core: Pattern) -> Pattern {
    seq([opt(lead_in()), core, opt(lead_out())])
}

fn date_time() -> Pattern {
    wrapped(alt([
        seq([date(), opt(daypart()), opt(time())]),
        seq([time(), opt(date())]),
    ]))
}

fn yes_no() -> Pattern {
    // The parser's words as written, and phrases around them.
    let word = any_of(
        YES.iter().chain(NO).map(|w| unfold(w)).chain(
            [
                "ganz genau",
                "sehr gut",
                "in ordnung",
                "auf jeden fall",
                "auf keinen fall",
                "leider nicht",
            ]
            .map(String::from),
        ),
    );
    let tail = any_of([
        "das passt",
        "das passt mir",
        "das passt mir gut",
        "das passt gut",
        "das passt so",
        "das ist richtig",
        "das ist korrekt",
        "das stimmt",
        "das ist gut",
        "das ist in ordnung",
        "das ist falsch",
        "das stimmt nicht",
        "das ist nicht richtig",
        "das passt nicht",
        "das passt leider nicht",
        "das geht nicht",
        "das geht leider nicht",
        "danke",
        "vielen dank",
        "danke schön",
        "bitte",
        "gerne",
        "so ist es",
        "machen sie das",
        "das wäre gut",
        "das wäre super",
        "so machen wir das",
    ]);
    seq([repeat(word, 1, 3), opt(tail), opt(words("danke"))])
}

fn number() -> Pattern {
    // "ein" alone is an article to the parser, not a number.
    let below_hundred = || any_of((0..=99).map(spell).chain(["zwo".into()]));
    let hundreds = alt([
        words("hundert"),
        glue([
            any_of((1..=99).map(spell).chain(["ein".into()])),
            words("hundert"),
        ]),
    ]);
    let below_thousand = alt([
        below_hundred(),
        hundreds.clone(),
        glue([hundreds.clone(), below_hundred()]),
        glue([hundreds, words("und"), below_hundred()]),
    ]);
    let thousands = alt([
        words("tausend"),
        words("eintausend"),
        glue([below_thousand.clone(), words("tausend")]),
    ]);
    let spelled = alt([
        below_thousand.clone(),
        thousands.clone(),
        glue([thousands, below_thousand]),
    ]);
    let digit = any_of(["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    let mut run = digit.clone();
    for _ in 1..12 {
        run = glue([digit.clone(), opt(run)]);
    }
    let single = any_of([
        "null", "eins", "zwei", "zwo", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun",
    ]);
    let lead = seq([
        opt(any_of(["meine", "mein", "die", "also", "ja"])),
        opt(any_of([
            "versichertennummer",
            "nummer",
            "kundennummer",
            "telefonnummer",
            "patientennummer",
            "mitgliedsnummer",
            "geburtsjahr",
            "postleitzahl",
            "hausnummer",
        ])),
        any_of(["ist", "lautet", "ist die", "wäre"]),
    ]);
    seq([
        opt(alt([
            lead,
            any_of([
                "ich bin",
                "geboren",
                "ich bin geboren",
                "im jahr",
                "ich bin im jahr",
            ]),
        ])),
        alt([repeat(alt([spelled, run]), 1, 4), repeat(single, 2, 12)]),
        opt(any_of(["geboren", "bitte", "danke"])),
    ])
}

fn correction() -> Pattern {
    let when = || {
        alt([
            seq([date(), opt(daypart()), opt(time())]),
            seq([time(), opt(date())]),
        ])
    };
    alt([
        seq([
            yes_no(),
            opt(any_of(["lieber", "sondern", "dann", "besser"])),
            when(),
        ]),
        seq([
            opt(any_of(["nein", "nee"])),
            words("nicht"),
            when(),
            words("sondern"),
            when(),
        ]),
    ])
}

/// The pattern for one kind of answer.
pub fn pattern(answer: Answer) -> Pattern {
    match answer {
        Answer::YesNo => yes_no(),
        Answer::Date => wrapped(seq([date(), opt(daypart()), opt(time())])),
        Answer::Time => wrapped(time()),
        Answer::DateTime => date_time(),
        Answer::Number => number(),
        Answer::Correction => correction(),
    }
}

/// The words of the expected answers that whisper confuses on the
/// telephone band, for their n-best: in dates and times the weekdays the
/// practice is open, hours that rhyme, months, a dropped or added "halb";
/// in a confirmation "ja" and "nein" (a "Nein, am Mittwoch" held to "Ja,"
/// is a wrong booking). `None` where `answers` hold neither.
pub fn confusions(answers: &[Answer]) -> Option<Arc<Confusions>> {
    /// Per (dates and times, yes/no).
    type Tables = Mutex<HashMap<(bool, bool), Arc<Confusions>>>;
    static TABLES: OnceLock<Tables> = OnceLock::new();
    let when = answers.iter().any(|a| {
        matches!(
            a,
            Answer::Date | Answer::Time | Answer::DateTime | Answer::Correction
        )
    });
    let yes_no = answers.contains(&Answer::YesNo);
    if !when && !yes_no {
        return None;
    }
    let tables = TABLES.get_or_init(Default::default);
    let mut tables = tables.lock().unwrap_or_else(|p| p.into_inner());
    let table = tables.entry((when, yes_no)).or_insert_with(|| {
        const HOURS: [&str; 12] = [
            "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn",
            "elf", "zwölf",
        ];
        let mut groups: Vec<&[&str]> = Vec::new();
        if yes_no {
            groups.push(&["Ja", "Nein"]);
        }
        if when {
            groups.extend([
                &["Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag"][..],
                &["zwei", "drei"],
                &["elf", "zwölf"],
                &["vierzehn", "fünfzehn"],
                &["sechzehn", "siebzehn"],
                &["September", "Oktober", "November", "Dezember"],
            ]);
        }
        let optional: &[(&str, &[&str])] = if when { &[("halb", &HOURS)] } else { &[] };
        Arc::new(Confusions::new(&groups, optional, 8))
    });
    Some(table.clone())
}

/// The grammar for any of `answers` (sorted, deduplicated), compiled once
/// per process and shared.
pub fn grammar(answers: &[Answer]) -> Result<Option<Arc<Grammar>>, GrammarError> {
    // One build per answer set in the process, however many calls ask at
    // once: a big set takes seconds to determinize (the confirmation's
    // yes/no + date/time + correction ~3.6 s in release), and a second
    // build beside the first would only double it. Callers of other sets
    // are never held up by it.
    type Slot = Arc<OnceLock<Result<Arc<Grammar>, GrammarError>>>;
    static CACHE: OnceLock<Mutex<HashMap<Vec<Answer>, Slot>>> = OnceLock::new();
    let mut key = answers.to_vec();
    key.sort_unstable();
    key.dedup();
    if key.is_empty() {
        return Ok(None);
    }
    let slot: Slot = {
        let cache = CACHE.get_or_init(Default::default);
        let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
        c.entry(key.clone()).or_default().clone()
    };
    let built = slot.get_or_init(|| {
        let name: Vec<&str> = key.iter().map(|a| a.name()).collect();
        let t0 = std::time::Instant::now();
        let g = Grammar::new(&name.join("+"), &alt(key.iter().map(|&a| pattern(a))));
        tracing::debug!(grammar = %name.join("+"), ms = t0.elapsed().as_millis() as u64, "answer grammar built");
        g.map(Arc::new)
    });
    built.clone().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::number::first_number;
    use crate::scenario::yes_no as parse_yes_no;
    use crate::text::tokens;
    use crate::when::{parse_date, parse_time};
    use chrono::NaiveDate;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
    }

    fn g(a: Answer) -> Arc<Grammar> {
        grammar(&[a]).unwrap().unwrap()
    }

    const DATES: [&str; 30] = [
        "heute",
        "Morgen bitte",
        "übermorgen",
        "Am Mittwoch.",
        "nächsten Dienstag",
        "Dienstag",
        "am Freitag",
        "Montag",
        "nächste Woche Mittwoch",
        "am Donnerstag nächste Woche",
        "am dritten Dezember",
        "am 3. Dezember",
        "am 3 Dezember",
        "den einunddreißigsten Dezember",
        "am ersten Januar",
        "am zwanzigsten November",
        "3.12.",
        "am 3.12",
        "am dritten zwölften",
        "am achtundzwanzigsten",
        "am zweiten",
        "in drei Tagen",
        "in zwei Wochen",
        "Samstags",
        "Am Sonnabend.",
        "Übermorgen.",
        "Geht es nächste Woche Donnerstag?",
        "Mein Termin ist am Freitag.",
        "Am siebten Januar, bitte.",
        "am kommenden Montag",
    ];

    const TIMES: [&str; 30] = [
        "halb drei",
        "um halb drei",
        "halb zehn",
        "halb eins",
        "Viertel nach vier",
        "viertel vor fünf",
        "dreiviertel fünf",
        "viertel neun",
        "14 Uhr 30",
        "vierzehn Uhr dreißig",
        "14:30",
        "um 14.30 Uhr",
        "um zwei",
        "um 9",
        "um 10 Uhr",
        "neun Uhr morgens",
        "um sieben Uhr früh",
        "um drei Uhr nachmittags",
        "um acht Uhr abends",
        "zehn nach drei",
        "fünf vor vier",
        "fünf vor halb drei",
        "zehn nach halb elf",
        "um zwölf Uhr",
        "um Mittag",
        "um elf Uhr fünfzehn",
        "halb acht",
        "Um 16 Uhr.",
        "Gegen halb vier.",
        "um ein Uhr",
    ];

    const DATE_TIMES: [&str; 12] = [
        "Am Dienstag um halb drei.",
        "Haben Sie am Dienstag um halb drei etwas frei?",
        "Am liebsten morgen früh um neun Uhr.",
        "Passt es am Montag um Viertel nach vier?",
        "Ich könnte am Freitag um Viertel vor fünf.",
        "Am dritten Dezember um vierzehn Uhr dreißig.",
        "Übermorgen um zehn Uhr wäre gut.",
        "Heute Nachmittag um drei, wenn das geht.",
        "Am Mittwoch um elf Uhr.",
        "Dienstag um 16 Uhr",
        "um halb drei am Donnerstag",
        "Am 3.12. um 14:30 Uhr.",
    ];

    const YES_NO: [&str; 16] = [
        "Ja.",
        "Ja, genau.",
        "Ja, das passt mir gut.",
        "Nein.",
        "Nein, danke.",
        "Nein, das passt leider nicht.",
        "Genau.",
        "Richtig, danke.",
        "Stimmt.",
        "Jawohl.",
        "Okay.",
        "Ja, gerne.",
        "Nee.",
        "In Ordnung.",
        "Ja, das ist richtig.",
        "Auf jeden Fall.",
    ];

    const NUMBERS: [&str; 13] = [
        "Zweiundvierzig.",
        "42",
        "Die Nummer lautet eins zwei drei vier fünf.",
        "Meine Versichertennummer ist zweiundvierzig.",
        "Mein Geburtsjahr ist neunzehnhundertachtzig.",
        "1980",
        "neunzehnhundertachtzig",
        "Meine Nummer ist 12345.",
        "dreihundertsiebzehn",
        "zweitausendsechsundzwanzig",
        "eins zwo drei",
        "hundertdrei",
        "eintausendzwei",
    ];

    const CORRECTIONS: [&str; 6] = [
        "Nein, am Donnerstag.",
        "Nein, Donnerstag.",
        "Nein, um drei.",
        "Nein, lieber am Freitag um halb zehn.",
        "Nicht Dienstag, sondern Donnerstag.",
        "Ja, am Donnerstag um 10 Uhr.",
    ];

    /// Every phrasing the slot parsers understand is inside its grammar:
    /// the grammar never keeps a caller's valid answer from being heard.
    #[test]
    fn grammars_accept_what_the_parsers_understand() {
        let mut checked = 0;
        for s in DATES {
            assert!(parse_date(&tokens(s), today()).is_some(), "parser: {s}");
            assert!(g(Answer::Date).accepts(s), "date grammar: {s}");
            assert!(g(Answer::DateTime).accepts(s), "date_time grammar: {s}");
            checked += 1;
        }
        for s in TIMES {
            assert!(parse_time(&tokens(s)).is_some(), "parser: {s}");
            assert!(g(Answer::Time).accepts(s), "time grammar: {s}");
            assert!(g(Answer::DateTime).accepts(s), "date_time grammar: {s}");
            checked += 1;
        }
        for s in DATE_TIMES {
            let w = tokens(s);
            assert!(
                parse_date(&w, today()).is_some() && parse_time(&w).is_some(),
                "parser: {s}"
            );
            assert!(g(Answer::DateTime).accepts(s), "date_time grammar: {s}");
            checked += 1;
        }
        for s in YES_NO {
            assert!(parse_yes_no(&tokens(s)).is_some(), "parser: {s}");
            assert!(g(Answer::YesNo).accepts(s), "yes/no grammar: {s}");
            checked += 1;
        }
        for s in NUMBERS {
            assert!(first_number(&tokens(s)).is_some(), "parser: {s}");
            assert!(g(Answer::Number).accepts(s), "number grammar: {s}");
            checked += 1;
        }
        for s in CORRECTIONS {
            let w = tokens(s);
            assert!(
                parse_date(&w, today()).is_some() || parse_time(&w).is_some(),
                "parser: {s}"
            );
            assert!(g(Answer::Correction).accepts(s), "correction grammar: {s}");
            assert!(!g(Answer::YesNo).accepts(s), "yes/no alone takes {s}");
            checked += 1;
        }
        assert!(checked >= 50, "{checked} phrases");
    }

    /// Answers outside a state's grammar are outside it, so the recognizer
    /// falls back to free decoding for them.
    #[test]
    fn off_grammar_answers_are_refused() {
        for s in [
            "Ich möchte lieber mit jemandem sprechen.",
            "Wann haben Sie geöffnet?",
            "Ich möchte meinen Termin absagen.",
            "Vielen Dank, auf Wiederhören.",
        ] {
            for a in [
                Answer::YesNo,
                Answer::Date,
                Answer::Time,
                Answer::DateTime,
                Answer::Number,
                Answer::Correction,
            ] {
                assert!(!g(a).accepts(s), "{} accepts {s}", a.name());
                assert!(
                    !g(a).accepts_prefix(s),
                    "{} accepts the start of {s}",
                    a.name()
                );
            }
        }
        assert!(!g(Answer::YesNo).accepts("am Dienstag"));
        assert!(!g(Answer::Date).accepts("Ja."));
        assert!(!g(Answer::Time).accepts("zehn"), "a bare hour needs its um");
    }

    /// The other way round: sentences drawn at random from the grammars
    /// (spelled-out words; digits lose their `:` and `.` in the grammar's
    /// normal form) are understood by the parsers.
    #[test]
    fn random_grammar_sentences_are_understood() {
        let no_digits = |b: u8| b.is_ascii_digit();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        type Understood<'a> = &'a dyn Fn(&[String]) -> bool;
        let cases: [(Answer, Understood<'_>); 5] = [
            (Answer::Correction, &|w| {
                parse_date(w, today()).is_some() || parse_time(w).is_some()
            }),
            (Answer::Date, &|w| parse_date(w, today()).is_some()),
            (Answer::Time, &|w| parse_time(w).is_some()),
            (Answer::YesNo, &|w| parse_yes_no(w).is_some()),
            (Answer::Number, &|w| first_number(w).is_some()),
        ];
        for (answer, understood) in cases {
            let grammar = g(answer);
            let mut n = 0;
            while n < 300 {
                let Some(s) = grammar.sample(&mut seed, no_digits) else {
                    continue;
                };
                // 29 February is a date only in leap years.
                let leap_day = s.contains("neunundzwanzigsten zweiten")
                    || s.contains("neunundzwanzigsten februar");
                assert!(
                    understood(&tokens(&s)) || leap_day,
                    "{}: {s:?}",
                    answer.name()
                );
                n += 1;
            }
        }
    }

    #[test]
    fn numbers_are_spelled_as_written() {
        assert_eq!(spell(42), "zweiundvierzig");
        assert_eq!(spell(21), "einundzwanzig");
        assert_eq!(spell(30), "dreißig");
        assert_eq!(spell(17), "siebzehn");
        assert_eq!(ordinal(31), ["einunddreißigsten"]);
        assert_eq!(ordinal(12), ["zwölften"]);
    }

    #[test]
    fn grammars_are_compiled_once_and_stay_small() {
        let a = grammar(&[Answer::DateTime, Answer::YesNo])
            .unwrap()
            .unwrap();
        let b = grammar(&[Answer::YesNo, Answer::DateTime])
            .unwrap()
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(grammar(&[]).unwrap().is_none());
        for x in [
            Answer::YesNo,
            Answer::Date,
            Answer::Time,
            Answer::DateTime,
            Answer::Number,
            Answer::Correction,
        ] {
            assert!(g(x).states() < 100_000, "{}: {}", x.name(), g(x).states());
        }
    }
}
