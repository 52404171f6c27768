//! N-best readings of an answer. Greedy decoding gives one transcript;
//! on the telephone band its weakest words are the ones a booking hangs
//! on ("Dienstag" for "Donnerstag", "drei" for "halb drei"). The
//! expectation names the words that sound alike ([`Confusions`]); the
//! recognizer writes each variant of the transcript with one of them
//! swapped and scores it against the same audio (teacher forcing on the
//! decoder, the encoder's output reused), so every reading comes with the
//! model's log-probability and the dialogue can weigh them against what
//! makes sense or ask the caller.

use crate::fold::fold;

/// One reading of an utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    /// The text.
    pub text: String,
    /// Log-probability of this reading minus that of the decoded one
    /// (which has 0), under the model and the same audio.
    pub logprob: f32,
}

/// Words that sound alike on the telephone, in the spelling whisper
/// writes, and words it drops or adds ("halb").
#[derive(Debug, Clone, Default)]
pub struct Confusions {
    groups: Vec<Vec<String>>,
    /// Words that may be missing before one of their words, or too many
    /// ("halb" before an hour).
    optional: Vec<(String, Vec<String>)>,
    /// Most variants of one transcript.
    max: usize,
}

/// A variant of a transcript: words `at..at + remove` replaced by `insert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    /// Index of the first word replaced.
    pub at: usize,
    /// Words replaced (0: an insertion).
    pub remove: usize,
    /// Words put in their place.
    pub insert: Vec<String>,
}

/// Splits a word into its letters and the punctuation after them.
fn core(word: &str) -> (&str, &str) {
    let end = word
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_alphanumeric())
        .map(|(i, c)| i + c.len_utf8())
        .unwrap_or(0);
    word.split_at(end)
}

/// `word` written with the capitalisation of `like`.
fn styled(word: &str, like: &str) -> String {
    if like.chars().next().is_some_and(char::is_uppercase) {
        let mut c = word.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect())
            .unwrap_or_default()
    } else {
        word.to_lowercase()
    }
}

impl Confusions {
    /// Groups of words that sound alike; `optional` words that may be
    /// dropped or added before their words; at most `max` variants.
    pub fn new(groups: &[&[&str]], optional: &[(&str, &[&str])], max: usize) -> Self {
        let owned = |g: &[&str]| g.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
        Self {
            groups: groups.iter().map(|g| owned(g)).collect(),
            optional: optional
                .iter()
                .map(|(w, before)| ((*w).to_owned(), owned(before)))
                .collect(),
            max,
        }
    }

    fn group(&self, word: &str) -> Option<&[String]> {
        let w = fold(core(word).0);
        self.groups
            .iter()
            .find(|g| g.iter().any(|m| fold(m) == w))
            .map(Vec::as_slice)
    }

    /// The optional word that `word` is, if `next` is one of its words.
    fn optional_before(&self, word: &str, next: &str) -> bool {
        let (w, n) = (fold(core(word).0), fold(core(next).0));
        self.optional
            .iter()
            .any(|(o, before)| fold(o) == w && before.iter().any(|b| fold(b) == n))
    }

    /// The variants of `words` (a transcript split at spaces), nearest
    /// first: each member of a group swapped for each other member, an
    /// optional word dropped or added before one.
    pub fn variants(&self, words: &[&str]) -> Vec<Variant> {
        let mut out = Vec::new();
        for (i, word) in words.iter().enumerate() {
            let (letters, punct) = core(word);
            if let Some(group) = self.group(word) {
                for m in group.iter().filter(|m| fold(m) != fold(letters)) {
                    out.push(Variant {
                        at: i,
                        remove: 1,
                        insert: vec![format!("{}{punct}", styled(m, letters))],
                    });
                }
            }
            let before = i.checked_sub(1).map(|p| words[p]);
            let optional_here = before.is_some_and(|b| self.optional_before(b, word));
            if !optional_here {
                for (o, _) in self
                    .optional
                    .iter()
                    .filter(|(o, _)| self.optional_before(o, word))
                {
                    out.push(Variant {
                        at: i,
                        remove: 0,
                        insert: vec![styled(o, letters)],
                    });
                }
            }
            if punct.is_empty()
                && words
                    .get(i + 1)
                    .is_some_and(|n| self.optional_before(word, n))
            {
                out.push(Variant {
                    at: i,
                    remove: 1,
                    insert: Vec::new(),
                });
            }
        }
        // Swaps before insertions: they are the likelier mishearing.
        out.sort_by_key(|v| v.remove == 0);
        out.truncate(self.max);
        out
    }

    /// `words` with `v` applied, as text.
    pub fn apply(words: &[&str], v: &Variant) -> String {
        let mut out: Vec<String> = words[..v.at].iter().map(|w| (*w).to_owned()).collect();
        let insert = v.insert.clone();
        out.extend(insert);
        out.extend(words[v.at + v.remove..].iter().map(|w| (*w).to_owned()));
        out.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Confusions {
        Confusions::new(
            &[&["Dienstag", "Donnerstag"], &["zwei", "drei"]],
            &[("halb", &["zwei", "drei"])],
            8,
        )
    }

    fn texts(text: &str) -> Vec<String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        table()
            .variants(&words)
            .iter()
            .map(|v| Confusions::apply(&words, v))
            .collect()
    }

    #[test]
    fn alike_words_are_swapped_and_halb_dropped_or_added() {
        assert_eq!(
            texts("Am Dienstag um halb drei."),
            vec![
                "Am Donnerstag um halb drei.",
                "Am Dienstag um drei.",
                "Am Dienstag um halb zwei.",
            ]
        );
        assert_eq!(
            texts("am donnerstag um drei"),
            vec![
                "am dienstag um drei",
                "am donnerstag um zwei",
                "am donnerstag um halb drei",
            ]
        );
        assert!(texts("Ja, genau.").is_empty());
        // Bounded.
        let words: Vec<&str> = "zwei zwei zwei zwei zwei".split(' ').collect();
        let three = Confusions::new(&[&["zwei", "drei"]], &[("halb", &["zwei"])], 3);
        assert_eq!(three.variants(&words).len(), 3);
    }
}
