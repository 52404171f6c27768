//! What a short caller sound over the agent's reply was: a turn, or not.
//!
//! German callers say "ja", "mhm", "genau", "okay" while they listen; they
//! cough, a door slams, and our own voice comes back over a poor line. The
//! runtime pauses the reply at the sound, has it transcribed, and asks
//! [`classify`]: everything but [`Overlap::Speech`] plays the reply on.

use super::text::tokens;

/// The verdict on a sound heard over a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Listener feedback ("ja", "mhm", "genau", "okay", "aha" …).
    Backchannel,
    /// No words (a cough, a click, breath) or words the recognizer makes up
    /// from noise.
    Noise,
    /// The words are the reply's own: our echo.
    Echo,
    /// Too short and too few words to be a request, and none that takes
    /// the turn: a mumble the recognizer made words of ("Gau" for a
    /// "genau", "button" for a "mhm").
    Short,
    /// The caller takes the turn.
    Speech,
}

impl Overlap {
    /// Whether the reply plays on.
    pub fn resumes(self) -> bool {
        self != Self::Speech
    }

    /// Name for records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backchannel => "backchannel",
            Self::Noise => "noise",
            Self::Echo => "echo",
            Self::Short => "short",
            Self::Speech => "speech",
        }
    }
}

/// Folded words a listener says without taking the turn. Whole phrases of
/// them count too ("ja genau", "ah okay").
const FEEDBACK: &[&str] = &[
    "ja", "jaja", "jap", "jo", "mhm", "mhmm", "mmh", "mm", "hm", "hmm", "hmhm", "aha", "ah",
    "ahja", "achso", "ach", "so", "genau", "okay", "ok", "okey", "gut", "klar", "richtig",
    "stimmt", "super", "prima", "alles", "schoen", "verstehe", "aja", "eben", "eh", "aeh", "oh",
    "uh",
];

/// What whisper writes for sound without words: bracketed tags
/// ("[Husten]", "(Musik)", "*hustet*") and the subtitle credits it learned
/// from silence.
/// Folded words that take the turn however short the sound (and what the
/// recognizer makes of a clipped "nein").
const TURN_WORDS: &[&str] = &[
    "nein",
    "nee",
    "ne",
    "noe",
    "rein",
    "kein",
    "dein",
    "mein",
    "stop",
    "stopp",
    "halt",
    "moment",
    "warte",
    "warten",
    "hallo",
    "entschuldigung",
    "aber",
    "doch",
    "falsch",
    "nicht",
    "bitte",
];

/// Sounds shorter than this with at most two words are no request.
const SHORT: std::time::Duration = std::time::Duration::from_millis(450);
/// Sounds shorter than this are no request if every word is feedback or
/// as short as a misheard one (≤ 4 letters).
const BRIEF: std::time::Duration = std::time::Duration::from_millis(1000);

const NOISE_PHRASES: &[&str] = &[
    "untertitel",
    "copyright",
    "amara",
    "vielen dank fuer",
    "swr",
    "zdf",
];

/// Classifies the transcript `heard` of a sound of `voiced` length over a
/// reply whose text (so far) is `reply`.
pub fn classify(heard: &str, reply: &str, voiced: std::time::Duration) -> Overlap {
    let text = heard.trim();
    let unbracketed = strip_tags(text);
    let words = tokens(&unbracketed);
    if words.is_empty() {
        return Overlap::Noise;
    }
    let folded = words.join(" ");
    if NOISE_PHRASES.iter().any(|p| folded.contains(p)) {
        return Overlap::Noise;
    }
    if words.iter().all(|w| FEEDBACK.contains(&w.as_str())) && words.len() <= 4 {
        return Overlap::Backchannel;
    }
    // Echo: nearly every word heard is a word of the reply, and there are
    // enough of them not to be a caller repeating a part ("Dienstag?",
    // "um zehn?" are answers).
    let reply_words = tokens(reply);
    let shared = words
        .iter()
        .filter(|w| reply_words.iter().any(|r| r == *w))
        .count();
    if words.len() >= 3 && shared * 10 >= words.len() * 8 {
        return Overlap::Echo;
    }
    let takes_turn = words.iter().any(|w| TURN_WORDS.contains(&w.as_str()));
    // More words than anyone says in that time: made up from noise, or
    // from our echo under the sound (German runs at about 3 words/s). Only
    // for a brief sound: a second and more of voice over the reply is the
    // caller speaking, whatever the recognizer made of it under our echo
    // ("Nein, warten Sie bitte." was heard as nine wrong words in 1.4 s).
    let possible = 1 + (voiced.as_millis() as usize * 4) / 1000;
    if !takes_turn && voiced < BRIEF && words.len() > possible {
        return Overlap::Short;
    }
    let slight = |w: &String| FEEDBACK.contains(&w.as_str()) || w.chars().count() <= 4;
    if !takes_turn
        && ((voiced < SHORT && words.len() <= 2)
            || (voiced < BRIEF && words.len() <= 3 && words.iter().all(slight)))
    {
        return Overlap::Short;
    }
    Overlap::Speech
}

/// `text` without `[…]`, `(…)` and `*…*` spans.
fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut close: Option<char> = None;
    for c in text.chars() {
        match close {
            Some(end) if c == end => close = None,
            Some(_) => {}
            None => match c {
                '[' => close = Some(']'),
                '(' => close = Some(')'),
                '*' => close = Some('*'),
                _ => out.push(c),
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLY: &str = "Gern. Für welchen Tag möchten Sie den Termin?";
    const LONG: Duration = Duration::from_millis(1200);
    use std::time::Duration;

    #[test]
    fn listener_feedback_is_no_turn() {
        for heard in [
            "Ja.",
            "Mhm.",
            "Genau.",
            "Okay.",
            "Aha.",
            "Ja, genau.",
            "Ah, okay.",
            "ja ja",
            "Hm?",
            "Alles klar.",
        ] {
            assert_eq!(
                classify(heard, REPLY, LONG),
                Overlap::Backchannel,
                "{heard}"
            );
        }
    }

    #[test]
    fn sound_without_words_is_noise() {
        for heard in [
            "",
            "  ",
            "...",
            "[Husten]",
            "(hustet)",
            "*räuspert sich*",
            "Untertitel im Auftrag des ZDF, 2017",
            "Untertitel der Amara.org-Community",
        ] {
            assert_eq!(classify(heard, REPLY, LONG), Overlap::Noise, "{heard:?}");
        }
    }

    #[test]
    fn the_replys_own_words_are_echo() {
        assert_eq!(classify("für welchen Tag", REPLY, LONG), Overlap::Echo);
        assert_eq!(classify("welchen Tag möchten", REPLY, LONG), Overlap::Echo);
        // A word or two of the reply could be an answer: it is speech.
        assert_eq!(classify("Termin", REPLY, LONG), Overlap::Speech);
        assert_eq!(classify("den Termin?", REPLY, LONG), Overlap::Speech);
    }

    #[test]
    fn words_that_take_the_turn_are_speech() {
        for heard in [
            "Nein.",
            "Nein, am Donnerstag.",
            "Moment mal, ich wollte absagen.",
            "Ja, aber lieber am Freitag.",
            "Warten Sie bitte.",
            "Ich möchte einen Termin absagen.",
            "ja ja ja ja ja",
        ] {
            assert_eq!(classify(heard, REPLY, LONG), Overlap::Speech, "{heard}");
        }
        assert!(!Overlap::Speech.resumes());
    }

    #[test]
    fn a_mumble_the_recognizer_made_words_of_is_no_turn_unless_it_says_no() {
        let ms = Duration::from_millis;
        // Heard for espeak-ng's "mhm", "genau", "ja, genau" (whisper base).
        for (heard, voiced) in [
            ("Maden", 320),
            ("button", 300),
            ("Gau", 330),
            ("Ciao!", 300),
            ("Ja, gutt.", 780),
            ("Ja, du, oh.", 760),
            // Our echo under a "hm hm", made into a sentence.
            ("Wir sind ein Tag.", 330),
            ("und dann kommt der Kaffer.", 400),
        ] {
            assert_eq!(
                classify(heard, REPLY, ms(voiced)),
                Overlap::Short,
                "{heard}"
            );
        }
        for (heard, voiced) in [
            ("Rein", 300),
            ("Dein", 400),
            ("Nein", 300),
            ("Moment", 400),
            ("Hallo?", 350),
            ("Termin absagen", 700),
            ("Ja, Donnerstag.", 800),
            ("Maden", 1200),
            ("Nein, nicht am Dienstag.", 300),
            // "Nein, warten Sie bitte." under a 12 dB echo of the reply.
            ("Ich bin jetzt noch mehr als ein paar Leute.", 1400),
        ] {
            assert_eq!(
                classify(heard, REPLY, ms(voiced)),
                Overlap::Speech,
                "{heard}"
            );
        }
        assert!(Overlap::Echo.resumes() && Overlap::Noise.resumes());
    }
}
