//! Text as STT writes it, made comparable: lower case, umlauts and ß folded
//! to their two-letter spellings, punctuation dropped (except inside numbers
//! like `3.12.` and `14:30`), and fuzzy word matching for misheard words.

pub use aiagc_models::fold::{fold, unfold};

/// The words of `text`, folded. A token that starts with a digit keeps
/// inner `.` and `:` and a trailing `.` (dates, times, ordinals); other
/// punctuation separates words.
pub fn tokens(text: &str) -> Vec<String> {
    let folded = fold(text);
    let mut out = Vec::new();
    for raw in folded.split(|c: char| {
        c.is_whitespace() || matches!(c, ',' | ';' | '!' | '?' | '"' | '(' | ')' | '-' | '–' | '/')
    }) {
        let word = raw.trim_matches(|c: char| !c.is_alphanumeric() && c != '.' && c != ':');
        if word.is_empty() {
            continue;
        }
        if word.starts_with(|c: char| c.is_ascii_digit()) {
            let w = word.trim_end_matches(':');
            out.push(w.to_owned());
        } else {
            for part in word.split(|c: char| !c.is_alphanumeric()) {
                if !part.is_empty() {
                    out.push(part.to_owned());
                }
            }
        }
    }
    out
}

/// The words of `text` clause by clause ([`tokens`] of each): a clause
/// ends at `,` `;` `!` `?`, and at a `.` after a letter that a space or the
/// end follows (so "3.12." and "am 3. Dezember" stay whole). Recognizers
/// run on past a complete answer ("… um halb drei. Am Vormittag"): the
/// clauses let a slot come from where the caller said it and not from a
/// trailing fragment.
pub fn clauses(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        let ends = match c {
            ',' | ';' | '!' | '?' => true,
            '.' => prev.is_some_and(char::is_alphabetic) && next.is_none_or(char::is_whitespace),
            _ => false,
        };
        if ends {
            out.push(tokens(&text[start..i]));
            start = i + c.len_utf8();
        }
        prev = Some(c);
    }
    out.push(tokens(&text[start..]));
    out.retain(|c| !c.is_empty());
    out
}

/// Whether `heard` is `expected` or close enough to be a mishearing:
/// exact for words under six letters, otherwise a similarity of at least 0.8
/// (normalized Levenshtein), e.g. "termien" for "termin".
pub fn similar(heard: &str, expected: &str) -> bool {
    if heard == expected {
        return true;
    }
    let n = expected.chars().count();
    if n < 6 {
        return false;
    }
    strsim::normalized_levenshtein(heard, expected) >= 0.8
}

/// Whether a prefix of `word` about as long as `stem` (±1 letter) is a
/// mishearing of it ("verschiben" for `verschieb*`).
fn similar_prefix(word: &str, stem: &str) -> bool {
    let n = stem.chars().count();
    n >= 6
        && (n - 1..=n + 1).any(|len| {
            let prefix: String = word.chars().take(len).collect();
            prefix.chars().count() == len && similar(&prefix, stem)
        })
}

/// Where the words of `phrase` (folded) occur in order and adjacent in
/// `words`, fuzzily; the index of the first word.
pub fn find_phrase(words: &[String], phrase: &str) -> Option<usize> {
    let wanted = tokens(phrase);
    if wanted.is_empty() || wanted.len() > words.len() {
        return None;
    }
    (0..=words.len() - wanted.len())
        .find(|&i| wanted.iter().zip(&words[i..]).all(|(w, h)| similar(h, w)))
}

/// Whether a prefix-keyword such as `absag*` matches any word, or a plain
/// phrase occurs (see [`find_phrase`]).
pub fn contains(words: &[String], pattern: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(stem) => {
            let stem = fold(stem);
            words
                .iter()
                .any(|w| w.starts_with(&stem) || similar_prefix(w, &stem))
        }
        None => find_phrase(words, pattern).is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_and_tokens() {
        assert_eq!(fold("Übermorgen Straße"), "uebermorgen strasse");
        assert_eq!(
            tokens("Am 3.12. um 14:30 Uhr, bitte!"),
            vec!["am", "3.12.", "um", "14:30", "uhr", "bitte"]
        );
        assert_eq!(tokens("Ja. Genau."), vec!["ja", "genau"]);
        assert_eq!(tokens("Halb-drei"), vec!["halb", "drei"]);
        assert!(tokens("  ... ,,, ").is_empty());
    }

    #[test]
    fn clauses_split_where_the_caller_paused() {
        assert_eq!(
            clauses("Am Dienstag um zehn Uhr, ein Früh, einen. Termin, frei,"),
            vec![
                vec!["am", "dienstag", "um", "zehn", "uhr"],
                vec!["ein", "frueh"],
                vec!["einen"],
                vec!["termin"],
                vec!["frei"],
            ]
        );
        assert_eq!(
            clauses("Am 3. Dezember um 14.30 Uhr. Am Vormittag"),
            vec![
                vec!["am", "3.", "dezember", "um", "14.30", "uhr"],
                vec!["am", "vormittag"],
            ]
        );
        assert_eq!(
            clauses("am 3.12. bitte"),
            vec![vec!["am", "3.12.", "bitte"]]
        );
        assert!(clauses(" , . ").is_empty());
        assert_eq!(clauses("Ja"), vec![vec!["ja"]]);
    }

    #[test]
    fn fuzzy_words_and_phrases() {
        assert!(similar("termien", "termin"));
        assert!(similar("verschiben", "verschieben"));
        assert!(!similar("nein", "ein"));
        let w = tokens("Ich würde gern meinen Termin verschiben.");
        assert_eq!(find_phrase(&w, "termin verschieben"), Some(4));
        assert!(contains(&w, "termin verschieben"));
        assert!(contains(&w, "mein*"));
        assert!(!contains(&w, "absag*"));
    }
}
