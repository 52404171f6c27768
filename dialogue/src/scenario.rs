//! The scenario engine: a call flow written in TOML (states with prompts,
//! intents, slots to collect, confirmations, reprompts, a fallback,
//! transfer to a human, goodbye) and run per call.
//!
//! A state answers an input in this order: its yes/no (confirmations), its
//! own intents, DTMF keys, the slots it collects, then the scenario's
//! global intents (opening hours, a human, goodbye); anything else gets the
//! state's reprompt, and after `max_reprompts` the fallback. Entering a
//! state that collects slots first tries the words that led there, so
//! "einen Termin am Dienstag um halb drei" goes straight to confirmation.

use super::answers::{self, Answer};
use super::hint;
use super::number::{digits, first_number};
use super::text::{clauses, contains, tokens};
use super::tools::{ToolAnswer, ToolContext, ToolError, Toolbox};
use super::when::{parse_date, parse_time, speak_date, Time};
use super::{Action, CallContext, Dialogue, Expectation, Input, Reply, TurnHint};
use aiagc_models::nbest::Hypothesis;
use chrono::{Datelike, NaiveDate};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The scenario shipped with aiagc: appointment booking for a practice.
pub const PRAXIS: &str = include_str!("../scenarios/praxis.toml");

/// Why a scenario file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Not TOML, or fields of the wrong type / unknown fields.
    #[error("scenario is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// Parsed, but inconsistent (a name that points nowhere, …).
    #[error("scenario is inconsistent: {0}")]
    Invalid(String),
}

/// Slots a state can collect (the name is the type).
/// `old_date` is a date too: the appointment a caller moves, kept apart
/// from the new one so the confirmation can name both.
pub const SLOTS: [&str; 5] = ["date", "time", "number", "digits", "old_date"];

/// What to do on an input.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    /// Text to say (with `{date}`, `{old_date}`, `{time}`, `{number}`,
    /// `{digits}`, `{hours}`).
    pub say: Option<String>,
    /// State to go to (its prompt follows `say`); none: stay and re-ask.
    pub goto: Option<String>,
    /// `hangup` or `transfer`, after the reply has played.
    pub action: Option<String>,
    /// Task completed with this transition ("booked", …).
    pub outcome: Option<String>,
    /// Slots to forget.
    #[serde(default)]
    pub clear: Vec<String>,
    /// A declared tool to call first with the slots (`book`, `check_free`):
    /// its answer's fields are `{tool.NAME}` in `say` (its `say` is spoken
    /// where the transition has none); if it declines (`"ok": false`),
    /// `rejected` applies instead; if it fails, the apology
    /// (`tool_failed`) and the fallback.
    pub tool: Option<String>,
    /// With `tool`: what happens when the endpoint declines (default:
    /// its `say`, then the state's question again).
    pub rejected: Option<Box<Transition>>,
}

/// One state of the flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// What the agent asks on entering.
    pub prompt: String,
    /// What it says when it did not understand (default: the prompt).
    pub reprompt: Option<String>,
    /// Slots to fill here (`date`, `time`, `number`, `digits`).
    #[serde(default)]
    pub collect: Vec<String>,
    /// A question per slot, asked while only that one is missing.
    #[serde(default)]
    pub ask: BTreeMap<String, String>,
    /// Where to go once all slots are filled.
    pub next: Option<Transition>,
    /// Intent name → transition.
    #[serde(default)]
    pub on: BTreeMap<String, Transition>,
    /// Answer "ja" (or DTMF 1).
    pub yes: Option<Transition>,
    /// Answer "nein" (or DTMF 2).
    pub no: Option<Transition>,
    /// DTMF key → transition.
    #[serde(default)]
    pub dtmf: BTreeMap<String, Transition>,
    /// Date and time must fall in the opening hours.
    #[serde(default)]
    pub within_hours: bool,
    /// Example answers, given to STT as a hint (default: the scenario's).
    pub vocabulary: Option<String>,
    /// The collecting state whose slots this one reads back for
    /// confirmation: an answer here that names a value of them ("Nein,
    /// Donnerstag", even "Ja, am Donnerstag" after "Dienstag") changes that
    /// slot alone and confirms again, instead of taking `yes` or `no`.
    pub corrects: Option<String>,
    /// With `corrects`: asked after a bare "nein" (after the `no`
    /// transition's `say`), keeping what was collected; the next answer
    /// changes what it names ("Donnerstag", "die Uhrzeit").
    pub change: Option<String>,
}

/// Where a transfer goes (ARI `continue`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferTarget {
    /// Dialplan context.
    pub context: String,
    /// Extension.
    #[serde(default = "default_extension")]
    pub extension: String,
    /// Priority.
    #[serde(default = "one")]
    pub priority: u32,
}

fn default_tool_failed() -> String {
    "Entschuldigung, das hat gerade nicht geklappt.".into()
}

fn default_choose() -> String {
    "Meinten Sie {a} oder {b}?".into()
}

fn default_extension() -> String {
    "s".into()
}
fn one() -> u32 {
    1
}
fn two() -> u32 {
    2
}

/// A scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Short name (logs, records).
    pub name: String,
    /// Said when the call is answered, before the start state's prompt.
    pub greeting: String,
    /// First state.
    pub start: String,
    /// Misunderstandings in one state before the fallback.
    #[serde(default = "two")]
    pub max_reprompts: u32,
    /// Said when the caller is silent (then the prompt).
    pub no_input: Option<String>,
    /// Silences in a row the agent asks again after; one more ends the
    /// call with `no_input_end`.
    #[serde(default = "two")]
    pub max_no_input: u32,
    /// What ends a call whose caller stays silent (default: a polite
    /// goodbye and hang up).
    #[serde(default = "silent_end")]
    pub no_input_end: Transition,
    /// What happens after too many reprompts.
    pub fallback: Transition,
    /// Said when a requested time is outside the opening hours.
    pub closed: Option<String>,
    /// Said when a tool fails or is too slow, before the fallback.
    #[serde(default = "default_tool_failed")]
    pub tool_failed: String,
    /// Asked when two readings of a date or time are close (`{a}`, `{b}`:
    /// the two values as the confirmation says them).
    #[serde(default = "default_choose")]
    pub choose: String,
    /// Opening hours as text, for `{hours}`.
    #[serde(default)]
    pub hours_text: String,
    /// Opening hours: weekday (`mon`…`sun`) → ranges `"08:00-12:00"`.
    #[serde(default)]
    pub hours: BTreeMap<String, Vec<String>>,
    /// Transfer target.
    pub transfer: Option<TransferTarget>,
    /// Example utterances for STT in states without their own.
    pub vocabulary: Option<String>,
    /// Intent name → keywords (phrases; `stem*` matches word prefixes).
    #[serde(default)]
    pub intents: BTreeMap<String, Vec<String>>,
    /// Intents understood in every state.
    #[serde(default)]
    pub global: BTreeMap<String, Transition>,
    /// The states.
    pub states: BTreeMap<String, State>,
}

/// A checked scenario, shared by the calls that run it.
#[derive(Debug)]
pub struct Scenario {
    spec: Spec,
    /// Per weekday (Monday = 0): opening ranges.
    hours: [Vec<(Time, Time)>; 7],
}

fn parse_hhmm(s: &str) -> Option<Time> {
    let (h, m) = s.trim().split_once(':')?;
    let (hour, minute) = (h.parse::<u8>().ok()?, m.parse::<u8>().ok()?);
    (hour < 24 && minute < 60).then_some(Time { hour, minute })
}

impl Scenario {
    /// Parses and checks a scenario.
    pub fn from_toml(text: &str) -> Result<Arc<Self>, ScenarioError> {
        let spec: Spec = toml::from_str(text)?;
        let bad = |m: String| Err(ScenarioError::Invalid(m));
        if !spec.states.contains_key(&spec.start) {
            return bad(format!("start state `{}` is not defined", spec.start));
        }
        let mut transitions: Vec<(String, &Transition)> = vec![("fallback".into(), &spec.fallback)];
        for (name, t) in &spec.global {
            transitions.push((format!("global.{name}"), t));
            if !spec.intents.contains_key(name) {
                return bad(format!(
                    "global intent `{name}` has no keywords in [intents]"
                ));
            }
        }
        for (sname, state) in &spec.states {
            for slot in &state.collect {
                if !SLOTS.contains(&slot.as_str()) {
                    return bad(format!(
                        "state `{sname}` collects unknown slot `{slot}` (known: {SLOTS:?})"
                    ));
                }
            }
            if !state.collect.is_empty() && state.next.is_none() {
                return bad(format!("state `{sname}` collects slots but has no `next`"));
            }
            if let Some(target) = &state.corrects {
                match spec.states.get(target) {
                    Some(t) if !t.collect.is_empty() => {}
                    Some(_) => {
                        return bad(format!(
                            "state `{sname}` corrects `{target}`, which collects no slots"
                        ))
                    }
                    None => {
                        return bad(format!(
                            "state `{sname}` corrects undefined state `{target}`"
                        ))
                    }
                }
            } else if state.change.is_some() {
                return bad(format!("state `{sname}` has `change` but no `corrects`"));
            }
            for (intent, t) in &state.on {
                if !spec.intents.contains_key(intent) {
                    return bad(format!(
                        "state `{sname}` handles intent `{intent}` that has no keywords"
                    ));
                }
                transitions.push((format!("{sname}.on.{intent}"), t));
            }
            for (key, t) in &state.dtmf {
                if key.is_empty()
                    || !key
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
                {
                    return bad(format!(
                        "state `{sname}` has DTMF key `{key}` (use 0-9, * and #)"
                    ));
                }
                transitions.push((format!("{sname}.dtmf.{key}"), t));
            }
            for (label, t) in [
                ("next", &state.next),
                ("yes", &state.yes),
                ("no", &state.no),
            ] {
                if let Some(t) = t {
                    transitions.push((format!("{sname}.{label}"), t));
                }
            }
        }
        let mut nested = Vec::new();
        for (place, t) in &transitions {
            if let Some(r) = &t.rejected {
                if t.tool.is_none() {
                    return bad(format!("{place} has `rejected` but no `tool`"));
                }
                if r.tool.is_some() || r.rejected.is_some() {
                    return bad(format!("{place}.rejected cannot call a tool itself"));
                }
                nested.push((format!("{place}.rejected"), r.as_ref()));
            }
        }
        if spec.fallback.tool.is_some() || spec.no_input_end.tool.is_some() {
            return bad(
                "the fallback and no_input_end cannot call tools (they end a failure)".into(),
            );
        }
        transitions.extend(nested);
        for (place, t) in &transitions {
            if let Some(goto) = &t.goto {
                if !spec.states.contains_key(goto) {
                    return bad(format!("{place} goes to undefined state `{goto}`"));
                }
            }
            match t.action.as_deref() {
                None | Some("hangup") => {}
                Some("transfer") if spec.transfer.is_some() => {}
                Some("transfer") => {
                    return bad(format!("{place} transfers, but [transfer] is not set"))
                }
                Some(other) => {
                    return bad(format!(
                        "{place} has action `{other}` (use hangup or transfer)"
                    ))
                }
            }
            if let Some(slot) = t.clear.iter().find(|s| !SLOTS.contains(&s.as_str())) {
                return bad(format!("{place} clears unknown slot `{slot}`"));
            }
        }
        let mut hours: [Vec<(Time, Time)>; 7] = Default::default();
        const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        for (day, ranges) in &spec.hours {
            let Some(i) = DAYS.iter().position(|d| d == day) else {
                return bad(format!("hours: unknown weekday `{day}` (use {DAYS:?})"));
            };
            for r in ranges {
                let parsed = r
                    .split_once('-')
                    .and_then(|(a, b)| Some((parse_hhmm(a)?, parse_hhmm(b)?)))
                    .filter(|(a, b)| a < b);
                match parsed {
                    Some(range) => hours[i].push(range),
                    None => return bad(format!("hours.{day}: `{r}` is not like 08:00-12:00")),
                }
            }
        }
        Ok(Arc::new(Self { spec, hours }))
    }

    /// The built-in practice scenario.
    pub fn praxis() -> Arc<Self> {
        // Checked by a test; a failure here is a build defect, not input.
        Self::from_toml(PRAXIS).unwrap_or_else(|e| panic!("built-in scenario: {e}"))
    }

    /// The parsed file.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The tools the transitions call (each must be declared).
    pub fn tools_used(&self) -> Vec<String> {
        let spec = &self.spec;
        let mut all: Vec<&Transition> = spec.global.values().collect();
        for state in spec.states.values() {
            all.extend(state.on.values());
            all.extend(state.dtmf.values());
            all.extend([&state.next, &state.yes, &state.no].into_iter().flatten());
        }
        let mut names: Vec<String> = all.iter().filter_map(|t| t.tool.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    /// Whether the practice is open at `time` on `date`.
    pub fn is_open(&self, date: NaiveDate, time: Time) -> bool {
        self.hours[date.weekday().num_days_from_monday() as usize]
            .iter()
            .any(|(a, b)| *a <= time && time < *b)
    }

    /// Builds the answer grammar of every state now (each is built once
    /// per process, and a big one takes seconds: done at start-up, in the
    /// background, the first caller to reach that state does not wait).
    pub fn warm_grammars(&self) {
        for (name, state) in &self.spec.states {
            if let Err(e) = answers::grammar(&expected_answers(&self.spec, state)) {
                tracing::warn!(state = %name, error = %e, "no grammar for this state");
            }
        }
    }

    /// A new call running this scenario.
    pub fn session(self: &Arc<Self>) -> ScenarioDialogue {
        ScenarioDialogue {
            scenario: self.clone(),
            state: self.spec.start.clone(),
            slots: Slots::default(),
            reprompts: 0,
            silences: 0,
            outcome: None,
            changing: None,
            chose: Vec::new(),
            tools: None,
            call: None,
            answer: None,
            inputs: 0,
        }
    }
}

/// Values collected so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slots {
    /// Date.
    pub date: Option<NaiveDate>,
    /// Time of day.
    pub time: Option<Time>,
    /// A number.
    pub number: Option<u32>,
    /// Digits.
    pub digits: Option<String>,
    /// The date of the appointment being moved.
    pub old_date: Option<NaiveDate>,
}

impl Slots {
    fn has(&self, slot: &str) -> bool {
        match slot {
            "date" => self.date.is_some(),
            "time" => self.time.is_some(),
            "number" => self.number.is_some(),
            "digits" => self.digits.is_some(),
            "old_date" => self.old_date.is_some(),
            _ => false,
        }
    }

    fn clear(&mut self, slot: &str) {
        match slot {
            "date" => self.date = None,
            "time" => self.time = None,
            "number" => self.number = None,
            "digits" => self.digits = None,
            "old_date" => self.old_date = None,
            _ => {}
        }
    }

    /// Fills `wanted` slots from what was said; how many were filled. A
    /// date or time comes from the first clause that gives one, unless a
    /// later clause corrects it ("Dienstag, nein, Donnerstag"); a clause
    /// that negates ("nicht am Dienstag") gives nothing. Number and digits
    /// read all words: callers group digits with pauses.
    fn fill(&mut self, wanted: &[String], said: &Said, today: NaiveDate) -> usize {
        let mut n = 0;
        for slot in wanted {
            let filled = match slot.as_str() {
                "date" => said
                    .slot(|w| parse_date(w, today))
                    .map(|d| self.date = Some(d)),
                "time" => said.slot(parse_time).map(|t| self.time = Some(t)),
                "number" => first_number(&said.words).map(|(_, v)| self.number = Some(v)),
                "old_date" => said
                    .slot(|w| parse_date(w, today))
                    .map(|d| self.old_date = Some(d)),
                "digits" => Some(digits(&said.words))
                    .filter(|d| !d.is_empty())
                    .map(|d| self.digits = Some(d)),
                _ => None,
            };
            n += filled.is_some() as usize;
        }
        n
    }

    /// The filled slots as `date` → `2026-12-03`, `time` → `14:30`.
    pub fn values(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(d) = self.date {
            out.push(("date", d.format("%Y-%m-%d").to_string()));
        }
        if let Some(t) = self.time {
            out.push(("time", format!("{:02}:{:02}", t.hour, t.minute)));
        }
        if let Some(n) = self.number {
            out.push(("number", n.to_string()));
        }
        if let Some(d) = &self.digits {
            out.push(("digits", d.clone()));
        }
        if let Some(d) = self.old_date {
            out.push(("old_date", d.format("%Y-%m-%d").to_string()));
        }
        out
    }

    /// A date or time slot's value as the agent says it.
    fn spoken(&self, slot: &str) -> Option<String> {
        match slot {
            "date" => self.date.map(speak_date),
            "old_date" => self.old_date.map(speak_date),
            "time" => self.time.map(|t| t.speak()),
            _ => None,
        }
    }

    /// The slots of `wanted` whose values `other` has and differ from ours.
    fn differs(&self, other: &Slots, wanted: &[String]) -> bool {
        wanted.iter().any(|slot| match slot.as_str() {
            "date" => other.date.is_some() && other.date != self.date,
            "time" => other.time.is_some() && other.time != self.time,
            "number" => other.number.is_some() && other.number != self.number,
            "digits" => other.digits.is_some() && other.digits != self.digits,
            "old_date" => other.old_date.is_some() && other.old_date != self.old_date,
            _ => false,
        })
    }
}

/// The slots whose readings are weighed ([`Input::Readings`]).
const WHEN_SLOTS: [&str; 3] = ["date", "time", "old_date"];

/// Words that open a clause correcting what came before ("…, nein,
/// Donnerstag", "lieber um drei").
const CORRECTING: &[&str] = &[
    "nein",
    "nee",
    "lieber",
    "besser",
    "sondern",
    "doch",
    "korrektur",
];

/// One clause of an answer.
#[derive(Debug, Clone)]
struct Clause {
    words: Vec<String>,
    /// It corrects an earlier clause: its values replace theirs.
    corrects: bool,
    /// It says what the caller does not want ("nicht am Dienstag").
    negated: bool,
}

/// What the caller said, as the scenario reads it: all words (intents,
/// yes/no) and the clauses (slot values).
#[derive(Debug, Clone, Default)]
pub(crate) struct Said {
    words: Vec<String>,
    clauses: Vec<Clause>,
}

impl Said {
    fn new(text: &str) -> Self {
        let mut out = Self {
            words: tokens(text),
            clauses: Vec::new(),
        };
        let mut after_marker = false;
        for clause in clauses(text) {
            // "nicht Dienstag, sondern Donnerstag" in one clause: two.
            let parts: Vec<&[String]> = match clause.iter().position(|w| w == "sondern") {
                Some(i) => vec![&clause[..i], &clause[i..]],
                None => vec![&clause[..]],
            };
            for words in parts.into_iter().filter(|p| !p.is_empty()) {
                let first = words[0].as_str();
                let only_markers = words.iter().all(|w| CORRECTING.contains(&w.as_str()));
                out.clauses.push(Clause {
                    corrects: after_marker || CORRECTING.contains(&first),
                    negated: first == "nicht"
                        || (first == "nein" && words.get(1).is_some_and(|w| w == "nicht")),
                    words: words.to_vec(),
                });
                after_marker = only_markers;
            }
        }
        out
    }

    /// Words with no clauses of their own (keys, an LLM's input).
    fn words(words: &[String]) -> Self {
        Self {
            words: words.to_vec(),
            clauses: vec![Clause {
                words: words.to_vec(),
                corrects: false,
                negated: false,
            }],
        }
    }

    /// The value `parse` finds, clause by clause (see [`Slots::fill`]).
    fn slot<T>(&self, parse: impl Fn(&[String]) -> Option<T>) -> Option<T> {
        let mut value = None;
        for c in self.clauses.iter().filter(|c| !c.negated) {
            if let Some(v) = parse(&c.words) {
                if value.is_none() || c.corrects {
                    value = Some(v);
                }
            }
        }
        value
    }
}

/// Words that say no (folded, see [`super::text::fold`]).
pub const NO: &[&str] = &[
    "nein",
    "nee",
    "ne",
    "noe",
    "nicht",
    "falsch",
    "keinesfalls",
    "nie",
];

/// Words that say yes (folded).
pub const YES: &[&str] = &[
    "ja",
    "jawohl",
    "jap",
    "jo",
    "genau",
    "richtig",
    "korrekt",
    "gerne",
    "gern",
    "passt",
    "stimmt",
    "einverstanden",
    "ok",
    "okay",
    "klar",
    "sicher",
    "natuerlich",
    "bestaetigt",
    "perfekt",
    "prima",
    "super",
    "gut",
];

/// Yes or no in German ("ja genau", "nein danke", "passt", "stimmt nicht").
pub fn yes_no(words: &[String]) -> Option<bool> {
    if words.iter().any(|w| NO.contains(&w.as_str())) || contains(words, "auf keinen fall") {
        return Some(false);
    }
    if words.iter().any(|w| YES.contains(&w.as_str()))
        || contains(words, "in ordnung")
        || contains(words, "auf jeden fall")
    {
        return Some(true);
    }
    None
}

/// The closed answers `state` of `spec` takes: yes/no where it confirms
/// (with a corrected date or time where it `corrects` a collection of
/// them, and those alone), the slots it collects. A state of intents only
/// (a menu) has none: its answers are free sentences.
pub fn expected_answers(spec: &Spec, state: &State) -> Vec<Answer> {
    let mut out = Vec::new();
    if state.yes.is_some() || state.no.is_some() {
        out.push(Answer::YesNo);
    }
    if let Some(target) = state.corrects.as_ref().and_then(|t| spec.states.get(t)) {
        let when = target
            .collect
            .iter()
            .any(|c| matches!(c.as_str(), "date" | "time" | "old_date"));
        if when {
            out.push(Answer::Correction);
        }
        out.extend(expected_answers(
            spec,
            &State {
                corrects: None,
                ..target.clone()
            },
        ));
    }
    let has = |s: &str| state.collect.iter().any(|c| c == s);
    match (has("date") || has("old_date"), has("time")) {
        (true, true) => out.push(Answer::DateTime),
        (true, false) => out.push(Answer::Date),
        (false, true) => out.push(Answer::Time),
        (false, false) => {}
    }
    if has("number") || has("digits") {
        out.push(Answer::Number);
    }
    out
}

fn silent_end() -> Transition {
    Transition {
        say: Some(
            "Ich höre Sie leider nicht. Bitte rufen Sie uns noch einmal an. Auf Wiederhören."
                .into(),
        ),
        action: Some("hangup".into()),
        outcome: Some("no_input".into()),
        ..Transition::default()
    }
}

/// One call's run through a scenario.
#[derive(Debug)]
pub struct ScenarioDialogue {
    scenario: Arc<Scenario>,
    state: String,
    slots: Slots,
    reprompts: u32,
    /// Silences in a row.
    silences: u32,
    outcome: Option<String>,
    /// After a bare "nein" to a confirmation: the question that asks what
    /// to change, while the collecting state keeps its slots.
    changing: Option<String>,
    /// Slots the caller was asked to choose for in this state (asked once).
    chose: Vec<&'static str>,
    /// The operator's endpoints the transitions call.
    tools: Option<Toolbox>,
    /// The call served (for tool arguments, keys and cancellation).
    call: Option<CallContext>,
    /// The last tool answer, for `{tool.NAME}`.
    answer: Option<ToolAnswer>,
    /// Inputs answered (a tool call's key names the input).
    inputs: u64,
}

impl ScenarioDialogue {
    /// Calls through `tools` where a transition names one.
    pub fn with_tools(mut self, tools: Toolbox) -> Self {
        self.tools = Some(tools);
        self
    }

    /// A tool's arguments: the properties its schema names, from the slots
    /// (`date`, `time`, `number`, `digits`, `old_date`) and the call
    /// (`caller`, `call`); anything else is left out (and a required one
    /// then fails the schema, not the endpoint).
    fn tool_arguments(&self, tools: &Toolbox, name: &str) -> serde_json::Value {
        let mut args = serde_json::Map::new();
        let Some(spec) = tools.specs().find(|s| s.name == name) else {
            return args.into();
        };
        let values: BTreeMap<&str, String> = self.slots.values().into_iter().collect();
        let props = spec
            .parameters
            .get("properties")
            .and_then(|p| p.as_object());
        for (prop, schema) in props.into_iter().flatten() {
            let v = match prop.as_str() {
                "caller" => self.call.as_ref().map(|c| c.caller.clone()),
                "call" => self.call.as_ref().map(|c| c.call.clone()),
                other => values.get(other).cloned(),
            };
            let Some(v) = v else { continue };
            let typed = match schema.get("type").and_then(|t| t.as_str()) {
                Some("integer") | Some("number") => v
                    .parse::<i64>()
                    .map(serde_json::Value::from)
                    .unwrap_or(serde_json::Value::String(v)),
                _ => serde_json::Value::String(v),
            };
            args.insert(prop.clone(), typed);
        }
        args.into()
    }

    /// Calls `name`; `Err` carries the failure already logged.
    fn run_tool(&mut self, name: &str) -> Result<ToolAnswer, ToolError> {
        let Some(tools) = self.tools.clone() else {
            return Err(ToolError::Unknown(name.to_owned()));
        };
        let args = self.tool_arguments(&tools, name);
        let call_id = self
            .call
            .as_ref()
            .map(|c| c.call.as_str())
            .unwrap_or("call");
        let key = format!("{call_id}-{}-{name}", self.inputs);
        let never = || false;
        let cancelled: &dyn Fn() -> bool = match &self.call {
            Some(c) => &*c.cancelled,
            None => &never,
        };
        let started = std::time::Instant::now();
        let result = tools.call(name, &args, &ToolContext { key, cancelled });
        match &result {
            Ok(a) => {
                tracing::info!(call = %call_id, tool = name, declined = a.declined(), ms = started.elapsed().as_millis() as u64, "tool answered")
            }
            Err(ToolError::Cancelled) => {
                tracing::info!(call = %call_id, tool = name, "tool call cancelled")
            }
            Err(e) => {
                tracing::warn!(call = %call_id, tool = name, error = %e, "tool failed: apology and fallback")
            }
        }
        result
    }
}

/// A reading's share of the plausible readings' probability below which
/// its value of a slot is not taken as heard…
pub const CONFIDENT_SHARE: f64 = 0.75;
/// …when another value has at least this share: the caller is asked.
pub const RIVAL_SHARE: f64 = 0.15;
/// What a reading that makes no sense (a time the practice is closed, a
/// date beyond [`HORIZON_DAYS`]) is worth beside one that does: its
/// probability times this (−4 nats), so that only a much likelier reading
/// of the audio overrides sense.
pub const IMPLAUSIBLE: f64 = 0.02;
/// How far ahead callers book: a reading with a date later than this is
/// implausible ("am 3. September" 9 months ahead, heard for "am dritten
/// Dezember").
pub const HORIZON_DAYS: i64 = 90;

/// What the readings of an answer come to ([`ScenarioDialogue::weigh`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weighed {
    /// The reading taken.
    pub text: String,
    /// Two values of one slot too close to choose between (or a yes that
    /// would commit, with a no close to it: slot `yes_no`): ask.
    pub ask: Option<Ask>,
}

/// A choice put to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// The slot.
    pub slot: &'static str,
    /// The likelier value, as said to the caller.
    pub a: String,
    /// The other one.
    pub b: String,
}

/// One reading of an answer, parsed.
#[derive(Debug)]
struct Reading {
    text: String,
    /// What the slots would be after it.
    slots: Slots,
    /// Probability relative to the decoded reading, times its plausibility.
    weight: f64,
    /// Its values make sense (see [`IMPLAUSIBLE`]).
    plausible: bool,
}

/// Which rule of the current state an input meets.
enum Matched<'s> {
    Transition(&'s Transition),
    /// Slots filled: all (`true`) or some.
    Slots(bool),
    /// A confirmation answered with other values for the slots it reads
    /// back: the collecting state's name.
    Correction(&'s str),
    /// A bare "nein" to a confirmation that asks what to change.
    Change,
    Nothing,
}

/// Words that name a slot, for "Was soll ich ändern?" ("die Uhrzeit").
fn named_slots(words: &[String]) -> Vec<&'static str> {
    let has = |set: &[&str]| words.iter().any(|w| set.contains(&w.as_str()));
    if has(&["beides", "alles", "beide"]) {
        return vec!["date", "time"];
    }
    let mut out = Vec::new();
    if has(&["tag", "datum", "wochentag", "termin"]) {
        out.push("date");
    }
    if has(&["uhrzeit", "zeit", "uhr"]) {
        out.push("time");
    }
    if has(&["nummer", "zahl", "ziffern"]) {
        out.extend(["number", "digits"]);
    }
    out
}

/// What a state makes of an answer (for measuring recognition: the
/// dialogue's decision on the heard words against the label).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Understood {
    /// The state's "yes".
    Yes,
    /// The state's "no".
    No,
    /// An intent (the state's own or a global one).
    Intent(String),
    /// Some of the slots the state collects.
    Slots,
    /// Nothing the state handles (a reprompt).
    Nothing,
}

impl std::fmt::Display for Understood {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Yes => f.write_str("yes"),
            Self::No => f.write_str("no"),
            Self::Intent(i) => f.write_str(i),
            Self::Slots => f.write_str("slots"),
            Self::Nothing => f.write_str("nothing"),
        }
    }
}

impl ScenarioDialogue {
    /// A call that is in `state` now (for measuring a state's recognition);
    /// `None` if the scenario has no such state.
    pub fn at(scenario: &Arc<Scenario>, state: &str) -> Option<Self> {
        scenario.spec.states.contains_key(state).then(|| {
            let mut d = scenario.session();
            d.state = state.to_owned();
            d
        })
    }

    /// What the current state would do with `text`, in the order it
    /// decides (see the module doc), without doing it.
    pub fn understand(&self, text: &str, today: NaiveDate) -> Understood {
        let said = Said::new(text);
        let words = &said.words;
        let state = self.current();
        if let Some(yes) = yes_no(words) {
            match (yes, &state.yes, &state.no) {
                (true, Some(_), _) => return Understood::Yes,
                (false, _, Some(_)) => return Understood::No,
                _ => {}
            }
        }
        if let Some(intent) = self.best_intent(words, state.on.keys()) {
            return Understood::Intent(intent.clone());
        }
        if !state.collect.is_empty() && Slots::default().fill(&state.collect, &said, today) > 0 {
            return Understood::Slots;
        }
        match self.best_intent(words, self.scenario.spec.global.keys()) {
            Some(intent) => Understood::Intent(intent.clone()),
            None => Understood::Nothing,
        }
    }

    /// The current state's name.
    pub fn state(&self) -> &str {
        &self.state
    }

    /// The slots collected so far.
    pub fn slots(&self) -> &Slots {
        &self.slots
    }

    /// The current state's reprompt, without counting it.
    pub fn reprompt_text(&self) -> String {
        let state = self.current();
        state
            .reprompt
            .as_deref()
            .map(|r| self.render(r))
            .unwrap_or_else(|| self.question())
    }

    /// Runs a global intent that ends the dialogue (transfer, hangup) if
    /// `words` ask for one; for dialogues that answer everything else
    /// themselves (the LLM).
    pub fn global_action(
        &mut self,
        words: &[String],
        today: NaiveDate,
        say: &mut dyn FnMut(&str) -> bool,
    ) -> Option<Reply> {
        let spec = &self.scenario.spec;
        let intent = self.best_intent(
            words,
            spec.global
                .iter()
                .filter(|(_, t)| t.action.is_some())
                .map(|(n, _)| n),
        )?;
        let t = spec.global[intent].clone();
        let before = self.outcome.clone();
        let mut parts = Vec::new();
        let action = self.apply(&t, &Said::words(words), today, &mut parts, 0);
        Some(self.reply(parts, action, before, say))
    }

    /// Says `parts` as one reply; its outcome is the one this input set.
    /// A tool failed for a dialogue that calls tools itself (the LLM):
    /// the apology, then the fallback (a person, by default).
    pub fn tool_failed(&mut self, today: NaiveDate, say: &mut dyn FnMut(&str) -> bool) -> Reply {
        let before = self.outcome.clone();
        let mut parts = vec![self.render(&self.scenario.spec.tool_failed)];
        let fallback = self.scenario.spec.fallback.clone();
        let action = self.apply(&fallback, &Said::words(&[]), today, &mut parts, 1);
        self.reply(parts, action, before, say)
    }

    /// Where the scenario transfers to, as an action.
    pub fn transfer_action(&self) -> Option<Action> {
        self.scenario
            .spec
            .transfer
            .as_ref()
            .map(|x| Action::Transfer {
                context: x.context.clone(),
                extension: x.extension.clone(),
                priority: x.priority,
            })
    }

    /// The call this dialogue serves, if attached.
    pub fn call(&self) -> Option<&CallContext> {
        self.call.as_ref()
    }

    fn reply(
        &self,
        parts: Vec<String>,
        action: Option<Action>,
        outcome_before: Option<String>,
        say: &mut dyn FnMut(&str) -> bool,
    ) -> Reply {
        let text = parts.join(" ");
        say(&text);
        Reply {
            text,
            action,
            outcome: (self.outcome != outcome_before)
                .then(|| self.outcome.clone())
                .flatten(),
        }
    }

    fn current(&self) -> &State {
        // Names are checked at load and only set from checked transitions.
        &self.scenario.spec.states[&self.state]
    }

    fn best_intent<'a>(
        &self,
        words: &[String],
        names: impl Iterator<Item = &'a String>,
    ) -> Option<&'a String> {
        let mut best: Option<(&String, usize)> = None;
        for name in names {
            let score = self.scenario.spec.intents[name]
                .iter()
                .filter(|p| contains(words, p))
                // A stem (`absag*`) is specific: it outweighs a two-word phrase.
                .map(|p| if p.ends_with('*') { 3 } else { tokens(p).len() })
                .max()
                .unwrap_or(0);
            if score > 0 && best.is_none_or(|(_, s)| score > s) {
                best = Some((name, score));
            }
        }
        best.map(|(n, _)| n)
    }

    /// What the current state would do with what was said, without doing it.
    fn classify(&self, said: &Said, today: NaiveDate) -> Matched<'_> {
        let state = self.current();
        let words = &said.words;
        let answer = yes_no(words);
        if let Some(target) = state.corrects.as_deref() {
            let collect = &self.scenario.spec.states[target].collect;
            let mut probe = Slots::default();
            if probe.fill(collect, said, today) > 0 && self.slots.differs(&probe, collect) {
                return Matched::Correction(target);
            }
            if answer == Some(false) && state.change.is_some() {
                return Matched::Change;
            }
        }
        if let Some(yes) = answer {
            let t = if yes { &state.yes } else { &state.no };
            // A yes that commits must not begin with "ein": whisper writes a
            // clipped "Nein, …" so ("Ein, vor ein, passt mir"). Asked again.
            let clipped_no = yes
                && t.as_ref().is_some_and(|t| t.outcome.is_some())
                && words.first().is_some_and(|w| w == "ein");
            if clipped_no {
                return Matched::Nothing;
            }
            if let Some(t) = t {
                return Matched::Transition(t);
            }
        }
        if let Some(intent) = self.best_intent(words, state.on.keys()) {
            return Matched::Transition(&state.on[intent]);
        }
        if !state.collect.is_empty() {
            let mut probe = self.slots.clone();
            if probe.fill(&state.collect, said, today) > 0 {
                return Matched::Slots(state.collect.iter().all(|s| probe.has(s)));
            }
        }
        match self.best_intent(words, self.scenario.spec.global.keys()) {
            Some(intent) => Matched::Transition(&self.scenario.spec.global[intent]),
            None => Matched::Nothing,
        }
    }

    fn render(&self, text: &str) -> String {
        let s = &self.slots;
        let text = self.render_tool(text);
        text.replace("{date}", &s.date.map(speak_date).unwrap_or_default())
            .replace(
                "{old_date}",
                &s.old_date.map(speak_date).unwrap_or_default(),
            )
            .replace("{time}", &s.time.map(|t| t.speak()).unwrap_or_default())
            .replace(
                "{number}",
                &s.number.map(|n| n.to_string()).unwrap_or_default(),
            )
            .replace("{digits}", s.digits.as_deref().unwrap_or_default())
            .replace("{hours}", &self.scenario.spec.hours_text)
    }

    /// `{tool.NAME}` → the last tool answer's field (empty if none).
    fn render_tool(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(i) = rest.find("{tool.") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 6..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[i..]);
                return out;
            };
            let field = &after[..end];
            if let Some(v) = self.answer.as_ref().and_then(|a| a.field(field)) {
                out.push_str(&v);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// The question for the current state given what is already known.
    fn question(&self) -> String {
        if let Some(change) = &self.changing {
            return self.render(change);
        }
        let state = self.current();
        let missing: Vec<&String> = state
            .collect
            .iter()
            .filter(|s| !self.slots.has(s))
            .collect();
        match missing.as_slice() {
            [one] if self.slots_any(&state.collect) => state
                .ask
                .get(one.as_str())
                .map(|q| self.render(q))
                .unwrap_or_else(|| self.render(&state.prompt)),
            _ => self.render(&state.prompt),
        }
    }

    fn slots_any(&self, slots: &[String]) -> bool {
        slots.iter().any(|s| self.slots.has(s))
    }

    /// Applies `t`; `words` pre-fill a collecting state it enters.
    fn apply(
        &mut self,
        t: &Transition,
        said: &Said,
        today: NaiveDate,
        reply: &mut Vec<String>,
        depth: u32,
    ) -> Option<Action> {
        self.changing = None;
        if let Some(name) = &t.tool {
            match self.run_tool(name) {
                Ok(answer) if answer.declined() => {
                    let rejected = t.rejected.as_deref().cloned().unwrap_or_default();
                    if rejected.say.is_none() {
                        reply.push(
                            answer
                                .say()
                                .unwrap_or_else(|| "Das geht leider nicht.".into()),
                        );
                    }
                    self.answer = Some(answer);
                    return self.apply(&rejected, said, today, reply, depth + 1);
                }
                Ok(answer) => {
                    if t.say.is_none() {
                        if let Some(text) = answer.say() {
                            reply.push(text);
                        }
                    }
                    self.answer = Some(answer);
                }
                // The caller hung up or spoke: nothing happened, nothing is said.
                Err(ToolError::Cancelled) => return None,
                Err(_) => {
                    reply.push(self.render(&self.scenario.spec.tool_failed));
                    let fallback = self.scenario.spec.fallback.clone();
                    return self.apply(&fallback, said, today, reply, depth + 1);
                }
            }
        }
        if t.goto.is_some() {
            self.chose.clear();
        }
        for slot in &t.clear {
            self.slots.clear(slot);
        }
        if let Some(say) = &t.say {
            reply.push(self.render(say));
        }
        if let Some(o) = &t.outcome {
            self.outcome = Some(o.clone());
        }
        let action = match t.action.as_deref() {
            Some("hangup") => Some(Action::Hangup),
            Some("transfer") => self.transfer_action(),
            _ => None,
        };
        if action.is_some() {
            return action;
        }
        match &t.goto {
            Some(goto) => {
                self.state = goto.clone();
                self.reprompts = 0;
                let state = self.current().clone();
                if !state.collect.is_empty() && depth < 4 {
                    self.slots.fill(&state.collect, said, today);
                    if state.collect.iter().all(|s| self.slots.has(s)) {
                        return self.complete(&state, today, reply, depth + 1);
                    }
                }
                reply.push(self.question());
            }
            None => reply.push(self.question()),
        }
        None
    }

    /// All slots of `state` are filled: check hours, then take `next`.
    fn complete(
        &mut self,
        state: &State,
        today: NaiveDate,
        reply: &mut Vec<String>,
        depth: u32,
    ) -> Option<Action> {
        self.changing = None;
        if state.within_hours {
            if let (Some(d), Some(t)) = (self.slots.date, self.slots.time) {
                if !self.scenario.is_open(d, t) {
                    let closed = self.scenario.spec.closed.clone().unwrap_or_else(|| {
                        "Zu dieser Zeit haben wir leider geschlossen. {hours}".into()
                    });
                    reply.push(self.render(&closed));
                    self.slots.time = None;
                    if self.scenario.hours[d.weekday().num_days_from_monday() as usize].is_empty() {
                        self.slots.date = None;
                    }
                    reply.push(self.question());
                    return None;
                }
            }
        }
        // The words are used up: they must not pre-fill the next state.
        match &state.next {
            Some(next) => self.apply(next, &Said::default(), today, reply, depth),
            None => None,
        }
    }

    fn reprompt(&mut self, reply: &mut Vec<String>, lead: Option<&str>) -> Option<Action> {
        self.reprompts += 1;
        if self.reprompts > self.scenario.spec.max_reprompts {
            let fallback = self.scenario.spec.fallback.clone();
            return self.apply(&fallback, &Said::default(), NaiveDate::MIN, reply, 0);
        }
        if let Some(lead) = lead {
            reply.push(lead.to_owned());
        }
        let state = self.current();
        let text = state.reprompt.clone().unwrap_or_else(|| self.question());
        reply.push(self.render(&text));
        None
    }

    fn step(
        &mut self,
        input: Input<'_>,
        today: NaiveDate,
        reply: &mut Vec<String>,
    ) -> Option<Action> {
        if !matches!(input, Input::Silence) {
            self.silences = 0;
        }
        match input {
            Input::Start => {
                reply.push(self.render(&self.scenario.spec.greeting.clone()));
                reply.push(self.question());
                None
            }
            Input::Silence => {
                self.silences += 1;
                if self.silences > self.scenario.spec.max_no_input {
                    let end = self.scenario.spec.no_input_end.clone();
                    return self.apply(&end, &Said::default(), NaiveDate::MIN, reply, 0);
                }
                // Silence is not a misunderstanding: it has its own count
                // and never leads to the fallback.
                if let Some(lead) = self.scenario.spec.no_input.clone() {
                    reply.push(lead);
                }
                reply.push(self.reprompt_text());
                None
            }
            Input::Dtmf(keys) => {
                let state = self.current().clone();
                if let Some(t) = state.dtmf.get(keys) {
                    return self.apply(t, &Said::default(), today, reply, 0);
                }
                let yes_no = match keys {
                    "1" => state.yes.as_ref(),
                    "2" => state.no.as_ref(),
                    _ => None,
                };
                if let Some(t) = yes_no {
                    return self.apply(t, &Said::default(), today, reply, 0);
                }
                if state.collect.iter().any(|s| s == "digits" || s == "number") {
                    return self.speech(&Said::words(&[keys.to_owned()]), today, reply);
                }
                self.reprompt(reply, None)
            }
            Input::Speech(text) => self.speech(&Said::new(text), today, reply),
            Input::Readings(readings) => self.readings(readings, today, reply),
        }
    }

    /// Weighs the readings of an answer (see [`Weighed`]) without acting
    /// on them: the likeliest one that makes sense (a time the practice is
    /// open) is taken; where another reading gives another value of a date
    /// or time slot with a close probability ("Dienstag" / "Donnerstag"),
    /// the caller is to be asked, once per state.
    pub fn weigh(&self, readings: &[Hypothesis], today: NaiveDate) -> Weighed {
        let first = readings.first().map(|r| r.text.clone()).unwrap_or_default();
        let plain = Weighed {
            text: first,
            ask: None,
        };
        let state = self.current();
        if readings.len() < 2 {
            return plain;
        }
        // A yes that commits is taken only when the readings agree on it.
        let commits = state.yes.as_ref().is_some_and(|t| t.outcome.is_some());
        if commits && yes_no(&tokens(&plain.text)) == Some(true) {
            let total: f64 = readings.iter().map(|r| f64::from(r.logprob).exp()).sum();
            let other: f64 = readings
                .iter()
                .filter(|r| yes_no(&tokens(&r.text)) != Some(true))
                .map(|r| f64::from(r.logprob).exp())
                .sum();
            if other / total >= RIVAL_SHARE {
                return Weighed {
                    text: plain.text,
                    ask: Some(Ask {
                        slot: "yes_no",
                        a: String::new(),
                        b: String::new(),
                    }),
                };
            }
        }
        let (collect, within) = match &state.corrects {
            Some(t) => {
                let target = &self.scenario.spec.states[t];
                (&target.collect, target.within_hours)
            }
            None => (&state.collect, state.within_hours),
        };
        if !collect.iter().any(|c| WHEN_SLOTS.contains(&c.as_str())) {
            return plain;
        }
        let open = |s: &Slots| match (s.date, s.time) {
            (Some(d), Some(t)) if within => self.scenario.is_open(d, t),
            _ => true,
        };
        let near = |d: Option<NaiveDate>| d.is_none_or(|d| (d - today).num_days() <= HORIZON_DAYS);
        let parsed: Vec<Reading> = readings
            .iter()
            .map(|r| {
                let said = Said::new(&r.text);
                let mut slots = self.slots.clone();
                slots.fill(collect, &said, today);
                let mut weight = f64::from(r.logprob).exp();
                let plausible = open(&slots) && near(slots.date) && near(slots.old_date);
                if !plausible {
                    weight *= IMPLAUSIBLE;
                }
                Reading {
                    text: r.text.clone(),
                    slots,
                    weight,
                    plausible,
                }
            })
            .collect();
        let pool: Vec<&Reading> = parsed.iter().collect();
        let Some(best) = pool
            .iter()
            .copied()
            .max_by(|a, b| a.weight.total_cmp(&b.weight))
        else {
            return plain;
        };
        let total: f64 = pool.iter().map(|r| r.weight).sum();
        // A choice between readings that make no sense helps nobody: the
        // scenario refuses the best one and asks again.
        let pool: Vec<&Reading> = pool.into_iter().filter(|r| r.plausible).collect();
        for slot in WHEN_SLOTS.into_iter().filter(|_| best.plausible) {
            if !collect.iter().any(|c| c == slot) || self.chose.contains(&slot) {
                continue;
            }
            let Some(mine) = best.slots.spoken(slot) else {
                continue;
            };
            let share = |v: &str| {
                pool.iter()
                    .filter(|r| r.slots.spoken(slot).as_deref() == Some(v))
                    .map(|r| r.weight)
                    .sum::<f64>()
                    / total
            };
            let rival = pool
                .iter()
                .filter_map(|r| r.slots.spoken(slot))
                .filter(|v| *v != mine)
                .map(|v| (share(&v), v))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((rival_share, other)) = rival {
                if share(&mine) < CONFIDENT_SHARE && rival_share >= RIVAL_SHARE {
                    return Weighed {
                        text: best.text.clone(),
                        ask: Some(Ask {
                            slot,
                            a: mine,
                            b: other,
                        }),
                    };
                }
            }
        }
        Weighed {
            text: best.text.clone(),
            ask: None,
        }
    }

    /// Acts on the readings of an answer ([`Self::weigh`]): asks the
    /// caller to choose, with the other slots as the best reading has them
    /// and this one open until they do, or takes the best reading.
    fn readings(
        &mut self,
        readings: &[Hypothesis],
        today: NaiveDate,
        reply: &mut Vec<String>,
    ) -> Option<Action> {
        if readings.is_empty() {
            return self.step(Input::Silence, today, reply);
        }
        let weighed = self.weigh(readings, today);
        let said = Said::new(&weighed.text);
        let Some(ask) = weighed.ask else {
            return self.speech(&said, today, reply);
        };
        if ask.slot == "yes_no" {
            // Not sure it was a yes: ask for one that is clear (keys too).
            return self.reprompt(reply, None);
        }
        let state = self.current().clone();
        let target = state.corrects.clone();
        let collect = match &target {
            Some(t) => self.scenario.spec.states[t].collect.clone(),
            None => state.collect.clone(),
        };
        self.slots.fill(&collect, &said, today);
        self.slots.clear(ask.slot);
        if let Some(t) = target {
            self.state = t;
        }
        self.reprompts = 0;
        self.changing = None;
        self.chose.push(ask.slot);
        let text = self
            .scenario
            .spec
            .choose
            .replace("{a}", &ask.a)
            .replace("{b}", &ask.b);
        reply.push(text);
        None
    }

    fn speech(&mut self, said: &Said, today: NaiveDate, reply: &mut Vec<String>) -> Option<Action> {
        let matched = match self.classify(said, today) {
            Matched::Transition(t) => Some(t.clone()),
            Matched::Slots(_) => None,
            Matched::Correction(target) => {
                let target = target.to_owned();
                return self.correct(&target, said, today, reply);
            }
            Matched::Change => return self.ask_change(reply),
            Matched::Nothing => {
                // "Was soll ich ändern?" — "die Uhrzeit": ask for it anew.
                let named = named_slots(&said.words);
                if self.changing.is_some() && !named.is_empty() {
                    for slot in named {
                        self.slots.clear(slot);
                    }
                    self.changing = None;
                    self.reprompts = 0;
                    reply.push(self.question());
                    return None;
                }
                return self.reprompt(reply, None);
            }
        };
        match matched {
            Some(t) => self.apply(&t, said, today, reply, 0),
            None => {
                let state = self.current().clone();
                self.slots.fill(&state.collect, said, today);
                self.reprompts = 0;
                if state.collect.iter().all(|s| self.slots.has(s)) {
                    self.complete(&state, today, reply, 0)
                } else {
                    self.changing = None;
                    reply.push(self.question());
                    None
                }
            }
        }
    }

    /// A confirmation answered with other values: they replace those
    /// slots alone in `target`'s collection, which then completes (hours
    /// checked, confirmed again) or asks for what is missing.
    fn correct(
        &mut self,
        target: &str,
        said: &Said,
        today: NaiveDate,
        reply: &mut Vec<String>,
    ) -> Option<Action> {
        let state = self.scenario.spec.states[target].clone();
        self.state = target.to_owned();
        self.reprompts = 0;
        self.changing = None;
        self.slots.fill(&state.collect, said, today);
        if state.collect.iter().all(|s| self.slots.has(s)) {
            self.complete(&state, today, reply, 0)
        } else {
            reply.push(self.question());
            None
        }
    }

    /// A bare "nein" to a confirmation: say the `no` lead, keep the slots,
    /// ask what to change.
    fn ask_change(&mut self, reply: &mut Vec<String>) -> Option<Action> {
        let state = self.current().clone();
        let (Some(target), Some(change)) = (state.corrects, state.change) else {
            return self.reprompt(reply, None);
        };
        if let Some(say) = state.no.as_ref().and_then(|t| t.say.as_ref()) {
            reply.push(self.render(say));
        }
        self.state = target;
        self.reprompts = 0;
        self.changing = Some(change);
        reply.push(self.question());
        None
    }
}

impl Dialogue for ScenarioDialogue {
    fn respond(
        &mut self,
        input: Input<'_>,
        today: NaiveDate,
        say: &mut dyn FnMut(&str) -> bool,
    ) -> Reply {
        let mut parts = Vec::new();
        let before = self.outcome.clone();
        self.inputs += 1;
        let action = self.step(input, today, &mut parts);
        self.reply(parts, action, before, say)
    }

    fn hint(&self, partial: &str) -> TurnHint {
        let by_words = hint::by_words(partial);
        if by_words == TurnHint::Unfinished {
            return by_words;
        }
        // `today` only shifts relative dates; whether a slot fills does not depend on it.
        match self.classify(
            &Said::new(partial),
            NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default(),
        ) {
            Matched::Transition(_)
            | Matched::Slots(true)
            | Matched::Correction(_)
            | Matched::Change => TurnHint::Complete,
            Matched::Slots(false) | Matched::Nothing => by_words,
        }
    }

    fn vocabulary(&self) -> Option<String> {
        self.current()
            .vocabulary
            .clone()
            .or_else(|| self.scenario.spec.vocabulary.clone())
    }

    fn expectation(&self) -> Expectation {
        // A state of closed answers hears those (a caller who asks for a
        // person instead is decoded freely: see `stt::Constrained`); a menu
        // hears free sentences, biased by its prompt only.
        let expected = expected_answers(&self.scenario.spec, self.current());
        let grammar = answers::grammar(&expected).unwrap_or_else(|e| {
            tracing::warn!(state = %self.state, error = %e, "no grammar for this state");
            None
        });
        Expectation {
            prompt: self.vocabulary(),
            grammar,
            confusions: answers::confusions(&expected),
        }
    }

    fn outcome(&self) -> Option<&str> {
        self.outcome.as_deref()
    }

    fn slots(&self) -> Vec<(&'static str, String)> {
        self.slots.values()
    }

    fn attach(&mut self, call: CallContext) {
        self.call = Some(call);
    }
}
