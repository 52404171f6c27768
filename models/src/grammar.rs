//! Grammars for closed answers ("ja", "am Dienstag um halb drei"): a small
//! regular language over words, compiled to a byte-level DFA, and the
//! token-level view of it that constrained decoding needs.
//!
//! Text is compared after [`normalize`]: lower case (ASCII and the German
//! capitals Ä Ö Ü), punctuation dropped, runs of spaces as one. So the
//! grammar need not know whisper's capitals, commas or `14:30` vs `14.30`.
//!
//! Why not whisper.cpp's own GBNF grammars: whisper-rs 0.16 hands
//! `set_grammar` a flat element array where whisper.cpp expects an array of
//! rule pointers, so they cannot be used safely; the logits-filter hook
//! with this DFA does the same job and also tells how much probability the
//! model gave the grammar, which is what the fallback needs.

use std::collections::HashMap;

/// Why a grammar could not be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GrammarError {
    /// The language needs more DFA states than allowed.
    #[error("grammar needs more than {0} DFA states")]
    TooLarge(usize),
}

/// A pattern over words.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// Words separated by single spaces ("am dienstag").
    Words(String),
    /// Pieces glued without spaces ("zwei" "und" "vierzig").
    Glue(Vec<Pattern>),
    /// One after the other, words separated by a space.
    Seq(Vec<Pattern>),
    /// Any one of them.
    Alt(Vec<Pattern>),
    /// Zero or one.
    Opt(Box<Pattern>),
    /// `min..=max` repetitions, separated by spaces.
    Repeat(Box<Pattern>, usize, usize),
}

/// Words ("halb drei").
pub fn words(s: &str) -> Pattern {
    Pattern::Words(s.to_owned())
}

/// Any of the phrases in `list`.
pub fn any_of<S: AsRef<str>>(list: impl IntoIterator<Item = S>) -> Pattern {
    Pattern::Alt(list.into_iter().map(|s| words(s.as_ref())).collect())
}

/// Any of the patterns.
pub fn alt(list: impl IntoIterator<Item = Pattern>) -> Pattern {
    Pattern::Alt(list.into_iter().collect())
}

/// One after the other.
pub fn seq(list: impl IntoIterator<Item = Pattern>) -> Pattern {
    Pattern::Seq(list.into_iter().collect())
}

/// Glued into one word.
pub fn glue(list: impl IntoIterator<Item = Pattern>) -> Pattern {
    Pattern::Glue(list.into_iter().collect())
}

/// Zero or one.
pub fn opt(p: Pattern) -> Pattern {
    Pattern::Opt(Box::new(p))
}

/// `min..=max` times.
pub fn repeat(p: Pattern, min: usize, max: usize) -> Pattern {
    Pattern::Repeat(Box::new(p), min, max)
}

/// One byte of text as the grammar sees it: `None` drops it.
fn norm_byte(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b + 32),
        b' ' | b'\t' | b'\n' | b'\r' => Some(b' '),
        // UTF-8 continuation bytes of Ä Ö Ü (C3 84/96/9C) → ä ö ü.
        0x84 | 0x96 | 0x9C => Some(b + 0x20),
        _ if b.is_ascii_punctuation() => None,
        _ => Some(b),
    }
}

/// Whether a token is a plain piece of written German: no punctuation
/// inside words (`ko'mmen`, `Drei-Ton`) and capitals only at a word's
/// start (`MöchtEN`, `ALLES`). A forced decode would otherwise reach the
/// grammar's words through spellings no writer uses.
fn plain_word_piece(raw: &[u8]) -> bool {
    // A token without a leading space continues the word before it (the
    // decode's first token has one too), so a capital needs the space.
    let starts_word = |i: usize| i > 0 && raw[i - 1] == b' ';
    for (i, &b) in raw.iter().enumerate() {
        if b.is_ascii_uppercase() && !starts_word(i) {
            return false;
        }
        // Capital umlauts (C3 84/96/9C) count from their lead byte.
        if matches!(b, 0x84 | 0x96 | 0x9C) && i > 0 && raw[i - 1] == 0xC3 && !starts_word(i - 1) {
            return false;
        }
        if b.is_ascii_punctuation() && !matches!(b, b'.' | b',' | b'?' | b'!' | b':') {
            return false;
        }
    }
    true
}

/// `text` as the grammar compares it (see the module doc).
pub fn normalize(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for b in text.bytes().filter_map(norm_byte) {
        if b == b' ' && out.last().is_none_or(|&l| l == b' ') {
            continue;
        }
        out.push(b);
    }
    while out.last() == Some(&b' ') {
        out.pop();
    }
    out
}

#[derive(Default)]
struct Nfa {
    eps: Vec<Vec<u32>>,
    edges: Vec<Vec<(u8, u32)>>,
}

impl Nfa {
    fn state(&mut self) -> u32 {
        self.eps.push(Vec::new());
        self.edges.push(Vec::new());
        (self.eps.len() - 1) as u32
    }

    fn bytes(&mut self, from: u32, bytes: &[u8]) -> u32 {
        let mut at = from;
        for &b in bytes {
            let next = self.state();
            self.edges[at as usize].push((b, next));
            at = next;
        }
        at
    }

    /// Compiles `p` from `from`; `space` says whether a word starting here
    /// needs a separating space first. Returns the end state.
    fn compile(&mut self, p: &Pattern, from: u32, space: bool) -> u32 {
        match p {
            Pattern::Words(s) => {
                let text = normalize(s);
                if text.is_empty() {
                    return from;
                }
                let at = if space { self.bytes(from, b" ") } else { from };
                self.bytes(at, &text)
            }
            Pattern::Glue(parts) => {
                let mut at = from;
                let mut first = true;
                for part in parts {
                    at = self.compile(part, at, space && first);
                    first = false;
                }
                at
            }
            Pattern::Seq(parts) => {
                // A part may be empty (an unused Opt), so each part after
                // the first is compiled with a leading space, and the
                // sequence as a whole with the caller's.
                let mut at = from;
                let mut sp = space;
                for part in parts {
                    let end = self.compile(part, at, sp);
                    // Whether anything was emitted is not known statically
                    // (Opt): a part that may be empty keeps `sp` as it was,
                    // handled by giving every word its own leading space.
                    at = end;
                    sp = true;
                }
                at
            }
            Pattern::Alt(list) => {
                let join = self.state();
                for p in list {
                    let start = self.state();
                    self.eps[from as usize].push(start);
                    let end = self.compile(p, start, space);
                    self.eps[end as usize].push(join);
                }
                join
            }
            Pattern::Opt(p) => {
                let join = self.state();
                self.eps[from as usize].push(join);
                let start = self.state();
                self.eps[from as usize].push(start);
                let end = self.compile(p, start, space);
                self.eps[end as usize].push(join);
                join
            }
            Pattern::Repeat(p, min, max) => {
                let mut at = from;
                let mut sp = space;
                let join = self.state();
                for i in 0..*max {
                    if i >= *min {
                        self.eps[at as usize].push(join);
                    }
                    at = self.compile(p, at, sp);
                    sp = true;
                }
                self.eps[at as usize].push(join);
                join
            }
        }
    }

    /// Extends `set` by everything reachable without reading; `mark` is
    /// scratch space (one slot per NFA state, stamped with `stamp`).
    fn closure(&self, set: &mut Vec<u32>, mark: &mut [u32], stamp: u32) {
        for &s in set.iter() {
            mark[s as usize] = stamp;
        }
        let mut i = 0;
        while i < set.len() {
            for &e in &self.eps[set[i] as usize] {
                if mark[e as usize] != stamp {
                    mark[e as usize] = stamp;
                    set.push(e);
                }
            }
            i += 1;
        }
        set.sort_unstable();
    }
}

/// A compiled grammar: a DFA over normalized bytes whose language starts
/// with a space before every word (the text's first space is implied).
#[derive(Debug, Clone)]
pub struct Grammar {
    name: String,
    /// Per state: sorted (byte, next state).
    next: Vec<Vec<(u8, u32)>>,
    accept: Vec<bool>,
}

/// Most DFA states a grammar may have.
const MAX_STATES: usize = 200_000;

impl Grammar {
    /// Compiles `pattern`; `name` is for logs and reports.
    pub fn new(name: &str, pattern: &Pattern) -> Result<Self, GrammarError> {
        Self::with_limit(name, pattern, MAX_STATES)
    }

    /// Compiles `pattern` into at most `limit` DFA states.
    pub fn with_limit(name: &str, pattern: &Pattern, limit: usize) -> Result<Self, GrammarError> {
        let mut nfa = Nfa::default();
        let start = nfa.state();
        let end = nfa.compile(pattern, start, true);
        let mut mark = vec![0u32; nfa.eps.len()];
        let mut stamp = 1;
        let mut first = vec![start];
        nfa.closure(&mut first, &mut mark, stamp);
        let mut ids: HashMap<Vec<u32>, u32> = HashMap::new();
        let mut sets = vec![first.clone()];
        ids.insert(first, 0);
        let mut next = Vec::new();
        let mut accept = Vec::new();
        let mut i = 0;
        while i < sets.len() {
            let set = sets[i].clone();
            accept.push(set.contains(&end));
            let mut by_byte: Vec<(u8, u32)> = set
                .iter()
                .flat_map(|&s| nfa.edges[s as usize].iter().copied())
                .collect();
            by_byte.sort_unstable();
            let mut out = Vec::new();
            let mut j = 0;
            while j < by_byte.len() {
                let b = by_byte[j].0;
                let mut target = Vec::new();
                stamp += 1;
                while j < by_byte.len() && by_byte[j].0 == b {
                    if mark[by_byte[j].1 as usize] != stamp {
                        mark[by_byte[j].1 as usize] = stamp;
                        target.push(by_byte[j].1);
                    }
                    j += 1;
                }
                nfa.closure(&mut target, &mut mark, stamp);
                let id = match ids.get(&target) {
                    Some(&id) => id,
                    None => {
                        if sets.len() >= limit {
                            return Err(GrammarError::TooLarge(limit));
                        }
                        let id = sets.len() as u32;
                        ids.insert(target.clone(), id);
                        sets.push(target);
                        id
                    }
                };
                out.push((b, id));
            }
            next.push(out);
            i += 1;
        }
        Ok(Self {
            name: name.to_owned(),
            next,
            accept,
        })
    }

    /// The grammar's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// DFA states (a size figure for reports).
    pub fn states(&self) -> usize {
        self.next.len()
    }

    /// Where the walk starts: as if a space had been read.
    pub fn start(&self) -> Cursor {
        Cursor {
            state: self.step_raw(0, b' ').unwrap_or(0),
            after_space: true,
        }
    }

    fn step_raw(&self, state: u32, b: u8) -> Option<u32> {
        let edges = self.next.get(state as usize)?;
        edges
            .binary_search_by_key(&b, |e| e.0)
            .ok()
            .map(|i| edges[i].1)
    }

    /// Reads one normalized byte; `None` when the text leaves the grammar.
    pub fn step(&self, at: Cursor, b: u8) -> Option<Cursor> {
        if b == b' ' && at.after_space {
            return Some(at);
        }
        Some(Cursor {
            state: self.step_raw(at.state, b)?,
            after_space: b == b' ',
        })
    }

    /// Reads raw text (normalizing it byte by byte).
    pub fn feed(&self, mut at: Cursor, raw: &[u8]) -> Option<Cursor> {
        for b in raw.iter().copied().filter_map(norm_byte) {
            at = self.step(at, b)?;
        }
        Some(at)
    }

    /// Whether the text read so far is a whole sentence of the grammar
    /// (trailing spaces allowed).
    pub fn is_complete(&self, at: Cursor) -> bool {
        self.accept.get(at.state as usize).copied().unwrap_or(false)
    }

    /// Whether `text` is a sentence of the grammar.
    pub fn accepts(&self, text: &str) -> bool {
        self.feed(self.start(), text.as_bytes())
            .is_some_and(|c| self.is_complete(c))
    }

    /// Whether `text` can be continued into a sentence of the grammar.
    pub fn accepts_prefix(&self, text: &str) -> bool {
        self.feed(self.start(), text.as_bytes()).is_some()
    }
}

impl Grammar {
    /// A random sentence of the grammar that avoids the bytes `skip`
    /// rejects (`None` when the walk runs into a dead end); `seed` is an
    /// xorshift state. For tests of what a grammar accepts (here and in
    /// the dialogue's answer grammars).
    pub fn sample(&self, seed: &mut u64, skip: impl Fn(u8) -> bool) -> Option<String> {
        let mut rand = || {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed
        };
        let mut at = self.start();
        let mut out = Vec::new();
        for _ in 0..300 {
            let edges: Vec<(u8, u32)> = self.next[at.state as usize]
                .iter()
                .copied()
                .filter(|e| !skip(e.0))
                .collect();
            if self.is_complete(at) && (edges.is_empty() || rand() % 4 == 0) {
                return String::from_utf8(out).ok();
            }
            if edges.is_empty() {
                return None;
            }
            let (b, _) = edges[(rand() % edges.len() as u64) as usize];
            at = self.step(at, b)?;
            out.push(b);
        }
        None
    }
}

/// A position in a grammar's DFA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor {
    state: u32,
    after_space: bool,
}

/// The model's text tokens as a trie over normalized bytes, for finding
/// every token that may come next in a grammar without trying them all.
#[derive(Debug, Default)]
pub struct TokenIndex {
    /// Per trie node: sorted (byte, child).
    children: Vec<Vec<(u8, u32)>>,
    /// Per trie node: tokens whose normalized text ends here.
    ends: Vec<Vec<u32>>,
    /// Raw bytes per token id (text tokens only).
    raw: Vec<Vec<u8>>,
    /// Tokens of punctuation only (`.`, `,`, `?`, `!`, `:`), allowed
    /// anywhere: they do not move the grammar.
    neutral: Vec<u32>,
}

impl TokenIndex {
    /// Builds the index from each text token's bytes (index = token id).
    pub fn new(tokens: Vec<Vec<u8>>) -> Self {
        let mut idx = Self {
            children: vec![Vec::new()],
            ends: vec![Vec::new()],
            raw: Vec::new(),
            neutral: Vec::new(),
        };
        for (id, raw) in tokens.iter().enumerate() {
            if !plain_word_piece(raw) {
                continue;
            }
            let norm: Vec<u8> = raw.iter().copied().filter_map(norm_byte).collect();
            if norm.iter().all(|&b| b == b' ') {
                if !raw.is_empty()
                    && raw
                        .iter()
                        .all(|b| matches!(b, b'.' | b',' | b'?' | b'!' | b':' | b' '))
                    && raw.iter().any(|&b| b != b' ')
                {
                    idx.neutral.push(id as u32);
                }
                continue;
            }
            let mut node = 0usize;
            for &b in &norm {
                node = match idx.children[node].iter().find(|c| c.0 == b) {
                    Some(&(_, child)) => child as usize,
                    None => {
                        idx.children.push(Vec::new());
                        idx.ends.push(Vec::new());
                        let child = idx.children.len() - 1;
                        idx.children[node].push((b, child as u32));
                        child
                    }
                };
            }
            idx.ends[node].push(id as u32);
        }
        for c in &mut idx.children {
            c.sort_unstable();
        }
        idx.raw = tokens;
        idx
    }

    /// Number of text tokens.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Raw bytes of token `id`.
    pub fn bytes(&self, id: u32) -> Option<&[u8]> {
        self.raw.get(id as usize).map(Vec::as_slice)
    }

    /// Whether `id` is punctuation only.
    pub fn is_neutral(&self, id: u32) -> bool {
        self.neutral.binary_search(&id).is_ok()
    }

    /// Calls `allow` with every token that keeps `at` inside `grammar`.
    /// Punctuation comes only at a word's end and not twice in a row
    /// (`after_punctuation`), so a forced decode cannot spell a word out
    /// letter by letter ("M.O.R.G.E.N.") or trail off in dots.
    pub fn allowed(
        &self,
        grammar: &Grammar,
        at: Cursor,
        after_punctuation: bool,
        allow: &mut dyn FnMut(u32),
    ) {
        let word_end =
            !at.after_space && (grammar.is_complete(at) || grammar.step(at, b' ').is_some());
        if word_end && !after_punctuation {
            for &t in &self.neutral {
                allow(t);
            }
        }
        let mut stack = vec![(0u32, at)];
        while let Some((node, cur)) = stack.pop() {
            for &t in &self.ends[node as usize] {
                allow(t);
            }
            for &(b, child) in &self.children[node as usize] {
                if let Some(next) = grammar.step(cur, b) {
                    stack.push((child, next));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yes_no() -> Grammar {
        let word = any_of(["ja", "nein", "genau"]);
        Grammar::new(
            "yes_no",
            &seq([
                repeat(word, 1, 2),
                opt(any_of(["das passt", "danke", "das passt leider nicht"])),
            ]),
        )
        .unwrap()
    }

    #[test]
    fn normalization_drops_case_punctuation_and_extra_spaces() {
        assert_eq!(normalize("  Ja,  genau. "), b"ja genau");
        assert_eq!(
            normalize("Übermorgen um 14:30 Uhr!"),
            "übermorgen um 1430 uhr".as_bytes()
        );
        assert_eq!(normalize("ÄÖÜ äöü ß"), "äöü äöü ß".as_bytes());
    }

    #[test]
    fn sentences_prefixes_and_strangers() {
        let g = yes_no();
        for s in [
            "Ja.",
            "Ja, genau.",
            "nein danke",
            "Nein, das passt leider nicht.",
            "genau ja das passt",
        ] {
            assert!(g.accepts(s), "{s}");
        }
        assert!(!g.accepts("Ja, das"), "a prefix is not a sentence");
        assert!(g.accepts_prefix("Ja, das"));
        for s in [
            "",
            "Jein",
            "Ich möchte lieber mit jemandem sprechen",
            "ja ja ja",
            "jadas passt",
        ] {
            assert!(!g.accepts(s), "{s:?}");
        }
    }

    #[test]
    fn glue_builds_compound_words() {
        let unit = any_of(["ein", "zwei"]);
        let tens = any_of(["zwanzig", "vierzig"]);
        let g = Grammar::new(
            "n",
            &seq([words("nummer"), glue([unit, words("und"), tens])]),
        )
        .unwrap();
        assert!(g.accepts("Nummer zweiundvierzig"));
        assert!(!g.accepts("Nummer zwei und vierzig"));
        assert!(!g.accepts("Nummer zweiund"));
    }

    #[test]
    fn tokens_that_fit_are_found_in_the_trie() {
        let g = yes_no();
        let vocab: Vec<Vec<u8>> = [
            " Ja", "Ja", " ja", ",", " gen", "au", " Nein", " Hallo", ".", " das", " pass", "t",
            "x",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        let idx = TokenIndex::new(vocab);
        let names = |at: Cursor| {
            let mut v = Vec::new();
            idx.allowed(&g, at, false, &mut |t| {
                v.push(String::from_utf8_lossy(idx.bytes(t).unwrap()).into_owned())
            });
            v.sort();
            v
        };
        assert_eq!(
            names(g.start()),
            [" Ja", " Nein", " gen", " ja"],
            "no punctuation first"
        );
        let after_ja = g.feed(g.start(), b" Ja,").unwrap();
        assert!(g.is_complete(after_ja));
        let next = names(after_ja);
        assert!(next.contains(&" das".to_string()) && next.contains(&" gen".to_string()));
        assert!(!next.contains(&" Hallo".to_string()) && !next.contains(&"t".to_string()));
        assert!(next.contains(&",".to_string()), "punctuation after a word");
        let mid = g.feed(g.start(), b" Ja das pass").unwrap();
        assert!(names(mid).contains(&"t".to_string()));
        assert!(
            !names(mid).contains(&".".to_string()),
            "no punctuation inside a word"
        );
    }

    #[test]
    fn odd_spellings_are_not_word_pieces() {
        for ok in [
            " Übermorgen",
            " Ja",
            " ja",
            ",",
            " 14",
            ":",
            "ß",
            " Öffnungszeiten",
            "en",
        ] {
            assert!(plain_word_piece(ok.as_bytes()), "{ok}");
        }
        for odd in [
            "EN",
            "E",
            " ALLES",
            "ko'",
            "-Ton",
            " MöchtEN",
            "aÜ",
            "Über",
            "\"x",
        ] {
            assert!(!plain_word_piece(odd.as_bytes()), "{odd}");
        }
    }

    #[test]
    fn oversized_languages_are_refused() {
        let many: Vec<String> = (0..2000).map(|i| format!("w{i}")).collect();
        assert!(matches!(
            Grammar::with_limit("big", &any_of(&many), 1000),
            Err(GrammarError::TooLarge(1000))
        ));
        assert!(Grammar::with_limit("big", &any_of(&many), 10_000).is_ok());
    }
}
