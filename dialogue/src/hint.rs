//! Turn-taking hints from words: a transcript that ends in a conjunction,
//! a filler, a preposition or an article is not finished, however long
//! the pause. (Whether it is *complete* depends on what the dialogue
//! expects: see [`super::scenario`].)

use super::text::tokens;
use super::TurnHint;

/// Last words after which a German speaker is not done.
const UNFINISHED: &[&str] = &[
    "und",
    "oder",
    "aber",
    "sondern",
    "denn",
    "dass",
    "weil",
    "wenn",
    "ob",
    "als",
    "also",
    "aeh",
    "aehm",
    "ehm",
    "oehm",
    "hm",
    "hmm",
    "am",
    "um",
    "an",
    "in",
    "im",
    "fuer",
    "mit",
    "von",
    "vom",
    "zu",
    "zum",
    "zur",
    "bei",
    "beim",
    "nach",
    "vor",
    "auf",
    "ab",
    "bis",
    "gegen",
    "den",
    "die",
    "der",
    "das",
    "dem",
    "des",
    "ein",
    "eine",
    "einen",
    "einem",
    "einer",
    "mein",
    "meine",
    "meinen",
    "ich",
    "wir",
    "moechte",
    "wuerde",
    "haette",
    "brauche",
    "naechsten",
    "naechste",
    "halb",
    "viertel",
];

/// [`TurnHint::Unfinished`] when `partial` ends in a word after which a
/// speaker goes on (or in "…"), otherwise [`TurnHint::Unknown`].
pub fn by_words(partial: &str) -> TurnHint {
    if partial.trim_end().ends_with("...") || partial.trim_end().ends_with('…') {
        return TurnHint::Unfinished;
    }
    match tokens(partial).last() {
        None => TurnHint::Unknown,
        Some(w) if UNFINISHED.contains(&w.as_str()) => TurnHint::Unfinished,
        Some(_) => TurnHint::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_endings() {
        for s in [
            "Ich möchte einen Termin und",
            "Am Dienstag, ähm",
            "Ich hätte gern einen Termin am",
            "Um halb",
            "Also ich wollte...",
            "Ich möchte",
        ] {
            assert_eq!(by_words(s), TurnHint::Unfinished, "{s}");
        }
        for s in [
            "Ich möchte einen Termin.",
            "Am Dienstag um halb drei.",
            "Ja.",
            "",
        ] {
            assert_eq!(by_words(s), TurnHint::Unknown, "{s}");
        }
    }
}
