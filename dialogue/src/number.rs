//! German numbers as said or as STT writes them: "zweiundvierzig", "42",
//! "hundertdrei", ordinals "dritten", "einundzwanzigsten", "3.".

const UNITS: [(&str, u32); 24] = [
    ("null", 0),
    ("eins", 1),
    ("einen", 1),
    ("einem", 1),
    ("einer", 1),
    ("eine", 1),
    ("ein", 1),
    ("zwei", 2),
    ("zwo", 2),
    ("drei", 3),
    ("vier", 4),
    ("fuenf", 5),
    ("sechs", 6),
    ("sieben", 7),
    ("acht", 8),
    ("neun", 9),
    ("zehn", 10),
    ("elf", 11),
    ("zwoelf", 12),
    ("sechzehn", 16),
    ("siebzehn", 17),
    ("dreizehn", 13),
    ("vierzehn", 14),
    ("fuenfzehn", 15),
];

const TEENS: [(&str, u32); 2] = [("achtzehn", 18), ("neunzehn", 19)];

const TENS: [(&str, u32); 8] = [
    ("zwanzig", 20),
    ("dreissig", 30),
    ("vierzig", 40),
    ("fuenfzig", 50),
    ("sechzig", 60),
    ("siebzig", 70),
    ("achtzig", 80),
    ("neunzig", 90),
];

fn below_hundred(w: &str) -> Option<u32> {
    if w.is_empty() {
        return None;
    }
    if let Some(&(_, n)) = UNITS
        .iter()
        .chain(&TEENS)
        .chain(&TENS)
        .find(|(s, _)| *s == w)
    {
        return Some(n);
    }
    // "zweiundvierzig": unit + "und" + tens
    let (unit, tens) = w.split_once("und")?;
    let u = UNITS.iter().find(|(s, _)| *s == unit).map(|&(_, n)| n)?;
    let t = TENS.iter().find(|(s, _)| *s == tens).map(|&(_, n)| n)?;
    (1..10).contains(&u).then_some(u + t)
}

fn below_thousand(w: &str) -> Option<u32> {
    // "hundert" contains "und": split on it before the tens.
    match w.split_once("hundert") {
        Some((h, rest)) => {
            let h = if h.is_empty() { 1 } else { below_hundred(h)? };
            let rest = rest.strip_prefix("und").unwrap_or(rest);
            let r = if rest.is_empty() {
                0
            } else {
                below_hundred(rest)?
            };
            (h < 100).then_some(h * 100 + r)
        }
        None => below_hundred(w),
    }
}

/// A cardinal number word or digits, folded (see [`super::text::fold`]).
pub fn cardinal(word: &str) -> Option<u32> {
    if !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit()) {
        return word.parse().ok();
    }
    match word.split_once("tausend") {
        Some((t, rest)) => {
            let t = if t.is_empty() { 1 } else { below_thousand(t)? };
            let rest = rest.strip_prefix("und").unwrap_or(rest);
            let r = if rest.is_empty() {
                0
            } else {
                below_thousand(rest)?
            };
            Some(t * 1000 + r)
        }
        None => below_thousand(word),
    }
}

const ORDINAL_STEMS: [(&str, u32); 20] = [
    ("erst", 1),
    ("zweit", 2),
    ("dritt", 3),
    ("viert", 4),
    ("fuenft", 5),
    ("sechst", 6),
    ("siebent", 7),
    ("siebt", 7),
    ("acht", 8),
    ("neunt", 9),
    ("zehnt", 10),
    ("elft", 11),
    ("zwoelft", 12),
    ("dreizehnt", 13),
    ("vierzehnt", 14),
    ("fuenfzehnt", 15),
    ("sechzehnt", 16),
    ("siebzehnt", 17),
    ("achtzehnt", 18),
    ("neunzehnt", 19),
];

/// An ordinal ("dritten", "einunddreissigste", "3.") as its number.
pub fn ordinal(word: &str) -> Option<u32> {
    if let Some(d) = word.strip_suffix('.') {
        if !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()) {
            return d.parse().ok();
        }
    }
    let stem = ["en", "er", "em", "es", "e"]
        .iter()
        .find_map(|e| word.strip_suffix(e))?;
    if let Some(&(_, n)) = ORDINAL_STEMS.iter().find(|(s, _)| *s == stem) {
        return Some(n);
    }
    // 20 and up: cardinal + "st" ("zwanzigst", "einunddreissigst").
    let n = cardinal(stem.strip_suffix("st")?)?;
    (n >= 20).then_some(n)
}

/// The first number in `words` and its index: digits, a cardinal word, or
/// a cardinal said in parts ("zwei und vierzig").
pub fn first_number(words: &[String]) -> Option<(usize, u32)> {
    for (i, w) in words.iter().enumerate() {
        // Articles are not numbers here ("einen Termin").
        if matches!(w.as_str(), "ein" | "eine" | "einen" | "einem" | "einer") {
            continue;
        }
        // "Meine Nummer ist 12345.": the sentence's full stop stays on the
        // digits; a short number with a dot inside a sentence is an
        // ordinal ("am 3. Dezember").
        let last = i + 1 == words.len();
        let bare = w
            .strip_suffix('.')
            .filter(|d| last || d.len() > 2)
            .unwrap_or(w);
        if let Some(n) = cardinal(bare) {
            if let (Some(a), Some(b)) = (words.get(i + 1), words.get(i + 2)) {
                if a == "und" && n < 10 {
                    if let Some(t) = TENS.iter().find(|(s, _)| s == b) {
                        return Some((i, n + t.1));
                    }
                }
            }
            return Some((i, n));
        }
    }
    None
}

/// Digits said one by one or typed ("eins zwei drei", "1 2 3", "123").
pub fn digits(words: &[String]) -> String {
    let mut out = String::new();
    for w in words {
        let w = w.strip_suffix('.').unwrap_or(w);
        if !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(w);
        } else if let Some(n) = cardinal(w).filter(|&n| n < 10) {
            out.push(char::from(b'0' + n as u8));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::tokens;

    #[test]
    fn cardinals() {
        for (w, n) in [
            ("null", 0),
            ("eins", 1),
            ("zwo", 2),
            ("zwoelf", 12),
            ("siebzehn", 17),
            ("zwanzig", 20),
            ("einundzwanzig", 21),
            ("zweiundvierzig", 42),
            ("dreissig", 30),
            ("neunundneunzig", 99),
            ("hundert", 100),
            ("hundertdrei", 103),
            ("hundertunddrei", 103),
            ("zweihundertfuenfundsiebzig", 275),
            ("tausend", 1000),
            ("zweitausendsechsundzwanzig", 2026),
            ("neunzehnhundertachtzig", 1980),
            ("42", 42),
        ] {
            assert_eq!(cardinal(w), Some(n), "{w}");
        }
        for w in ["", "und", "zwanzigund", "elfundzwanzig", "hallo", "4a"] {
            assert_eq!(cardinal(w), None, "{w}");
        }
    }

    #[test]
    fn ordinals() {
        for (w, n) in [
            ("ersten", 1),
            ("dritte", 3),
            ("siebten", 7),
            ("siebenten", 7),
            ("achten", 8),
            ("zwoelften", 12),
            ("neunzehnten", 19),
            ("zwanzigsten", 20),
            ("einunddreissigsten", 31),
            ("3.", 3),
        ] {
            assert_eq!(ordinal(w), Some(n), "{w}");
        }
        assert_eq!(ordinal("acht"), None);
        assert_eq!(ordinal("montag"), None);
    }

    #[test]
    fn numbers_in_sentences() {
        assert_eq!(
            first_number(&tokens("Meine Nummer ist zwei und vierzig")),
            Some((3, 42))
        );
        assert_eq!(first_number(&tokens("Zimmer 17 bitte")), Some((1, 17)));
        assert_eq!(first_number(&tokens("keine Ahnung")), None);
        assert_eq!(first_number(&tokens("einen Termin für eins")), Some((3, 1)));
        assert_eq!(digits(&tokens("eins zwei drei 4 56")), "123456");
    }
}
