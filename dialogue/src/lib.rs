//! The German dialogue: what the agent answers. Behind one trait, two
//! backends: the built-in [`scenario`] engine (TOML states, intents, slots)
//! and an OpenAI-compatible [`llm`] with streaming. Parsers for what
//! callers say ([`text`], [`number`], [`when`]) are shared.
//!
//! A dialogue is per call and clock-free: today's date comes in with each
//! input, and reply text goes out sentence by sentence through a callback
//! so the first sentence can be synthesized while the rest is produced.

pub mod answers;
pub mod hint;
pub mod llm;
pub mod number;
pub mod overlap;
pub mod scenario;
pub mod text;
pub mod tools;
pub mod when;

use aiagc_models::grammar::Grammar;
use aiagc_models::nbest::{Confusions, Hypothesis};
use chrono::NaiveDate;
use std::sync::Arc;

/// What the dialogue expects the caller to say next, for the recognizer:
/// the recognizer learns the words to expect, never the dialogue's states.
#[derive(Debug, Clone, Default)]
pub struct Expectation {
    /// Example answers for whisper's initial prompt (kept short).
    pub prompt: Option<String>,
    /// The closed answers the state can take ("ja", "am Dienstag um halb
    /// drei"); the recognizer holds decoding to them while the audio fits.
    pub grammar: Option<Arc<Grammar>>,
    /// Words of those answers that sound alike: the recognizer scores the
    /// transcript's variants with them swapped (see [`aiagc_models::nbest`]).
    pub confusions: Option<Arc<Confusions>>,
}

/// The call a dialogue serves, handed over once when media starts: who
/// called (for tool arguments), and whether the turn being answered is
/// still wanted (a tool stops waiting when the caller spoke or hung up).
#[derive(Clone)]
pub struct CallContext {
    /// Call id (the caller's channel id).
    pub call: String,
    /// Caller id number.
    pub caller: String,
    /// True once the turn being answered is cancelled.
    pub cancelled: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("call", &self.call)
            .field("caller", &self.caller)
            .finish()
    }
}

/// What the caller did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Input<'a> {
    /// The call was answered: greet.
    Start,
    /// The caller said this (the transcript).
    Speech(&'a str),
    /// The caller said one of these: the decoded transcript and its
    /// variants, likeliest first (see [`aiagc_models::nbest`]); never empty.
    Readings(&'a [Hypothesis]),
    /// The caller pressed these keys.
    Dtmf(&'a str),
    /// The caller said nothing for a while.
    Silence,
}

/// What the call should do after the reply has played.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Hang up.
    Hangup,
    /// Leave the app into the dialplan (ARI `continue`): a human takes over.
    Transfer {
        /// Dialplan context.
        context: String,
        /// Extension (default `s`).
        extension: String,
        /// Priority (default 1).
        priority: u32,
    },
    /// Send these tones into the line (`0-9*#`), then go on listening.
    SendDtmf(String),
}

/// The agent's answer to one input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// All of the reply text (also given sentence-wise to the callback).
    pub text: String,
    /// What to do after it has played.
    pub action: Option<Action>,
    /// The task the call completed with this reply ("booked", …).
    pub outcome: Option<String>,
}

/// Whether a partial transcript ends the caller's turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnHint {
    /// A complete answer or question: end the turn at the pause.
    Complete,
    /// Clearly unfinished ("… und", "ähm", "am"): wait longer.
    Unfinished,
    /// No opinion: the hangover decides.
    Unknown,
}

/// A per-call German dialogue.
pub trait Dialogue: Send {
    /// Answers `input`. `say` receives reply text as it becomes available
    /// (whole sentences); it returns `false` when the turn was cancelled
    /// (barge-in, hangup) and the dialogue should stop producing.
    fn respond(
        &mut self,
        input: Input<'_>,
        today: NaiveDate,
        say: &mut dyn FnMut(&str) -> bool,
    ) -> Reply;

    /// Whether `partial` (heard up to a pause) completes the caller's turn
    /// in the current state.
    fn hint(&self, partial: &str) -> TurnHint {
        hint::by_words(partial)
    }

    /// Words the caller is likely to say next, as a hint for STT (whisper's
    /// initial prompt): biases recognition towards the expected answers.
    fn vocabulary(&self) -> Option<String> {
        None
    }

    /// What to listen for next: the vocabulary as a prompt, and where the
    /// state takes closed answers, their grammar.
    fn expectation(&self) -> Expectation {
        Expectation {
            prompt: self.vocabulary(),
            ..Expectation::default()
        }
    }

    /// The outcome so far ("booked", "transferred", …), if any.
    fn outcome(&self) -> Option<&str> {
        None
    }

    /// The values collected so far, machine-readable (`date` →
    /// `2026-12-03`, `time` → `14:30`): for the post-call document and
    /// the operator's systems, not for speech.
    fn slots(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// The call this dialogue serves (before its first input).
    fn attach(&mut self, _call: CallContext) {}
}
