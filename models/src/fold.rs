//! German words made comparable: lower case, umlauts and ß folded to
//! their two-letter spellings. Shared by the readings of a transcript
//! ([`crate::nbest`]) and the dialogue's parsers.

/// Lower-cases and folds `ä ö ü ß` (and their capitals) to `ae oe ue ss`,
/// so "Übermorgen", "uebermorgen" and "übermorgen" compare equal.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars().flat_map(char::to_lowercase) {
        match c {
            'ä' => out.push_str("ae"),
            'ö' => out.push_str("oe"),
            'ü' => out.push_str("ue"),
            'ß' => out.push_str("ss"),
            'é' | 'è' => out.push('e'),
            _ => out.push(c),
        }
    }
    out
}

/// The written form of a folded word: `ae oe ue` as `ä ö ü` ("maerz" →
/// "märz"); for word lists kept folded that must also be matched as
/// written (the recognizer's grammars).
pub fn unfold(word: &str) -> String {
    word.replace("ae", "ä")
        .replace("oe", "ö")
        .replace("ue", "ü")
}
