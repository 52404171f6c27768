//! `aiagc eval --calls`: whole booking calls, measured by what ends up
//! booked. A simulated caller with a goal (book, move or cancel an
//! appointment at a date and time inside the opening hours) answers the
//! scenario's questions; what it says is spoken by espeak-ng (the fixture
//! voices and rates), carried over the telephone band, heard by whisper
//! with the state's expectation, and answered by the dialogue. The caller
//! is truthful: it says yes to a confirmation only when the confirmation
//! names its own values, and otherwise says no and corrects what is wrong,
//! as a person would.
//!
//! A **wrong commit** is a booking, move or cancellation whose kind or
//! slots the caller did not ask for; a task is completed when the call
//! commits the caller's goal exactly.

use super::EvalArgs;
use aiagc_dialogue::scenario::{Scenario, ScenarioDialogue};
use aiagc_dialogue::when::{speak_date, Time};
use aiagc_dialogue::{Dialogue, Input};
use aiagc_engine::codec::g711::{alaw_decode, alaw_encode, ulaw_decode, ulaw_encode};
use aiagc_models::audio::resample;
use aiagc_models::stt::{SttConfig, SttWorker};
use anyhow::{bail, Context, Result};
use chrono::{Duration, NaiveDate};
use serde::Serialize;
use std::sync::Arc;

/// Turns of the caller after which a call counts as failed.
const MAX_TURNS: usize = 14;

/// The fixture voices (as `make_fixtures.py`).
const VOICES: [&str; 3] = ["de", "de+f3", "de+m3"];

/// What the caller wants done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A new appointment.
    Book,
    /// An existing appointment to another time.
    Move,
    /// An existing appointment cancelled.
    Cancel,
}

impl Kind {
    fn outcome(self) -> &'static str {
        match self {
            Self::Book => "booked",
            Self::Move => "moved",
            Self::Cancel => "cancelled",
        }
    }

    fn sentence(self) -> &'static str {
        match self {
            Self::Book => "Ich möchte einen Termin vereinbaren.",
            Self::Move => "Ich muss meinen Termin verschieben.",
            Self::Cancel => "Ich möchte meinen Termin absagen.",
        }
    }
}

/// A caller's goal, with how they say its parts.
#[derive(Debug, Clone)]
pub struct Goal {
    /// Short name (reports).
    pub name: &'static str,
    /// Book, move or cancel.
    pub kind: Kind,
    /// The (new) date.
    pub date: NaiveDate,
    /// How the caller says it ("am Dienstag").
    pub date_words: &'static str,
    /// The time (not for a cancellation).
    pub time: Option<Time>,
    /// How the caller says it ("um halb drei").
    pub time_words: &'static str,
    /// The appointment being moved.
    pub old: Option<(NaiveDate, &'static str)>,
    /// The first answer names the date and time too.
    pub all_at_once: bool,
}

/// The goals, relative to the eval's Tuesday, 24 November 2026: times the
/// practice is open, with the pairs whisper confuses on the telephone
/// band (Dienstag/Donnerstag, zwei/drei, halb drei/drei).
pub fn goals(today: NaiveDate) -> Vec<Goal> {
    let day = |n: i64| today + Duration::days(n);
    let t = |hour, minute| Some(Time { hour, minute });
    let g = |name, kind, date, date_words, time, time_words| Goal {
        name,
        kind,
        date,
        date_words,
        time,
        time_words,
        old: None,
        all_at_once: false,
    };
    vec![
        g(
            "tue_1430",
            Kind::Book,
            day(7),
            "am Dienstag",
            t(14, 30),
            "um halb drei",
        ),
        Goal {
            all_at_once: true,
            ..g(
                "thu_1000",
                Kind::Book,
                day(2),
                "am Donnerstag",
                t(10, 0),
                "um zehn Uhr",
            )
        },
        g(
            "mon_1500",
            Kind::Book,
            day(6),
            "am Montag",
            t(15, 0),
            "um drei Uhr",
        ),
        g(
            "fri_0945",
            Kind::Book,
            day(3),
            "am Freitag",
            t(9, 45),
            "um Viertel vor zehn",
        ),
        Goal {
            all_at_once: true,
            ..g(
                "wed_1100",
                Kind::Book,
                day(1),
                "am Mittwoch",
                t(11, 0),
                "um elf Uhr",
            )
        },
        g(
            "dec3_1615",
            Kind::Book,
            day(9),
            "am dritten Dezember",
            t(16, 15),
            "um Viertel nach vier",
        ),
        Goal {
            old: Some((day(3), "am Freitag")),
            ..g(
                "move_tue_1000",
                Kind::Move,
                day(7),
                "am Dienstag",
                t(10, 0),
                "um zehn Uhr",
            )
        },
        Goal {
            old: Some((day(9), "am dritten Dezember")),
            ..g(
                "move_mon_0900",
                Kind::Move,
                day(6),
                "am Montag",
                t(9, 0),
                "um neun Uhr",
            )
        },
        g(
            "cancel_thu",
            Kind::Cancel,
            day(2),
            "am Donnerstag",
            None,
            "",
        ),
        g("cancel_wed", Kind::Cancel, day(1), "am Mittwoch", None, ""),
    ]
}

/// Upper-cases the first letter (a sentence of its own).
fn sentence(words: &str) -> String {
    let mut c = words.chars();
    match c.next() {
        Some(f) => format!("{}{}.", f.to_uppercase(), c.as_str()),
        None => String::new(),
    }
}

/// The simulated caller: reads the agent's reply, answers truthfully.
#[derive(Debug)]
pub struct Caller<'g> {
    goal: &'g Goal,
    /// What the last confirmation got wrong (date, time), for "Was soll
    /// ich ändern?".
    wrong: (bool, bool),
    last_confirmation: Option<String>,
    last: String,
    /// Replies the caller had no answer for (then it repeats itself).
    pub confused: usize,
}

impl<'g> Caller<'g> {
    /// A caller with `goal`.
    pub fn new(goal: &'g Goal) -> Self {
        Self {
            goal,
            wrong: (false, false),
            last_confirmation: None,
            last: String::new(),
            confused: 0,
        }
    }

    fn when(&self) -> String {
        let g = self.goal;
        sentence(&format!("{} {}", g.date_words, g.time_words).replace("  ", " "))
            .replace(" .", ".")
    }

    /// What the caller says to `reply`; `#` and digits are key presses.
    pub fn answer(&mut self, reply: &str) -> String {
        let g = self.goal;
        let has = |s: &str| reply.contains(s);
        let said = if has("Ist das richtig") || has("Soll ich Ihren Termin am") {
            self.last_confirmation = Some(reply.to_owned());
            self.confirm(reply)
        } else if has("drücken Sie die 1 für ja und die 2 für nein") {
            // Asked for keys after an answer that was not clear: press them.
            match self.last_confirmation.clone() {
                Some(c) => {
                    let yes = self.confirm(&c).starts_with("Ja");
                    (if yes { "#1" } else { "#2" }).to_owned()
                }
                None => self.last.clone(),
            }
        } else if has("Was soll ich ändern") {
            match self.wrong {
                (true, false) => sentence(g.date_words),
                (false, true) => sentence(g.time_words),
                _ => self.when(),
            }
        } else if has("Um wie viel Uhr am") {
            // Asked for the time of a day it did not say: says both again.
            if has(&speak_date(g.date)) {
                sentence(g.time_words)
            } else {
                format!("Nein, {} {}.", g.date_words, g.time_words)
            }
        } else if has("An welchem Tag möchten Sie um") {
            match g.time {
                Some(t) if !has(&format!("um {} kommen", t.speak())) => {
                    format!("Nein, {} {}.", g.date_words, g.time_words)
                }
                _ => sentence(g.date_words),
            }
        } else if has("bisherige") {
            sentence(g.old.map(|(_, w)| w).unwrap_or(g.date_words))
        } else if has("absagen möchten") || has("den Tag des Termins") {
            sentence(g.date_words)
        } else if has("An welchem Tag und um wie viel Uhr")
            || has("einen Tag und eine Uhrzeit")
            || has("stattdessen")
            || has("einen neuen Tag")
        {
            self.when()
        } else if has("vereinbaren, verschieben oder absagen")
            || has("Sagen Sie zum Beispiel")
            || has("sonst noch etwas")
        {
            if g.all_at_once {
                format!("Ich möchte einen Termin {} {}.", g.date_words, g.time_words)
            } else {
                g.kind.sentence().to_owned()
            }
        } else {
            self.confused += 1;
            self.last.clone()
        };
        self.last = said.clone();
        said
    }

    /// Yes only when the confirmation names the goal; otherwise no and
    /// what is right.
    fn confirm(&mut self, reply: &str) -> String {
        let g = self.goal;
        let date = speak_date(g.date);
        let time_ok = |time: Option<Time>| {
            time.is_none_or(|t| reply.contains(&format!("um {}. Ist", t.speak())))
        };
        let (kind_ok, old_ok, date_ok, time_ok) = match g.kind {
            Kind::Book => (
                reply.contains("trage Sie ein"),
                true,
                reply.contains(&format!("für {date} um")),
                time_ok(g.time),
            ),
            Kind::Move => (
                reply.contains("verlege"),
                g.old
                    .is_some_and(|(d, _)| reply.contains(&format!("vom {} auf", speak_date(d)))),
                reply.contains(&format!("auf {date} um")),
                time_ok(g.time),
            ),
            Kind::Cancel => (
                reply.contains("absagen"),
                true,
                reply.contains(&format!("am {date} absagen")),
                true,
            ),
        };
        self.wrong = (!date_ok, !time_ok);
        if !kind_ok || !old_ok {
            return "Nein, das stimmt nicht.".into();
        }
        match (date_ok, time_ok) {
            (true, true) => "Ja, genau.".into(),
            (false, true) => format!("Nein, {}.", g.date_words),
            (true, false) => format!("Nein, {}.", g.time_words),
            (false, false) => format!("Nein, {} {}.", g.date_words, g.time_words),
        }
    }
}

/// Whether the dialogue committed exactly `goal`.
fn committed_goal(d: &ScenarioDialogue, goal: &Goal) -> bool {
    let s = d.slots();
    d.outcome() == Some(goal.kind.outcome())
        && s.date == Some(goal.date)
        && (goal.kind == Kind::Cancel || s.time == goal.time)
        && (goal.kind != Kind::Move || s.old_date == goal.old.map(|(d, _)| d))
}

/// One turn of a call.
#[derive(Debug, Serialize)]
pub struct CallTurn {
    /// What the caller said.
    pub said: String,
    /// What whisper heard.
    pub heard: String,
    /// Readings weighed (0: the transcript alone).
    pub readings: usize,
    /// The agent asked the caller to choose between two readings.
    pub asked: bool,
    /// The agent's reply.
    pub reply: String,
    /// STT time (with the rescoring).
    pub stt_ms: f64,
    /// Time spent scoring the readings.
    pub rescoring_ms: f64,
}

/// One call.
#[derive(Debug, Serialize)]
pub struct CallResult {
    /// Telephone band.
    pub condition: String,
    /// espeak-ng voice.
    pub voice: String,
    /// Words a minute.
    pub rate: u32,
    /// The goal's name.
    pub goal: String,
    /// What the call committed (booked, moved, cancelled, transferred, …).
    pub outcome: Option<String>,
    /// It committed the goal exactly.
    pub completed: bool,
    /// It committed something else.
    pub wrong_commit: bool,
    /// Caller turns.
    pub turns: Vec<CallTurn>,
}

/// Figures of one band.
#[derive(Debug, Default, Serialize)]
pub struct BandSummary {
    /// `ulaw`, `alaw`, `wide`.
    pub condition: String,
    /// Calls placed.
    pub calls: usize,
    /// Goals committed exactly.
    pub completed: usize,
    /// Commits of something the caller did not ask for.
    pub wrong_commits: usize,
    /// Calls handed to a person (fallback or request).
    pub transferred: usize,
    /// Caller turns per completed task (mean).
    pub turns_per_task: f64,
    /// Choices put to the caller between two readings.
    pub asked: usize,
    /// Mean STT time per decode.
    pub stt_mean_ms: f64,
    /// Mean time of it spent scoring readings.
    pub rescoring_mean_ms: f64,
}

/// The caller's voice: the `espeak-ng` program, one process per sentence
/// (as the fixtures are made). The library keeps state from one sentence
/// to the next, so the same sentence came out with other samples and
/// whisper heard other words: runs could not be compared.
pub struct Voice {
    /// espeak-ng voice (`de`, `de+f3`, `de+m3`).
    pub voice: String,
    /// Words a minute.
    pub rate: u32,
}

impl Voice {
    fn synthesize(&self, text: &str) -> Result<(Vec<f32>, u32)> {
        let path = std::env::temp_dir().join(format!("aiagc-eval-{}.wav", std::process::id()));
        let out = std::process::Command::new("espeak-ng")
            .args(["-v", &self.voice, "-s", &self.rate.to_string(), "-w"])
            .arg(&path)
            .arg(text)
            .output()
            .context("running espeak-ng (installed by scripts/setup.sh)")?;
        if !out.status.success() {
            bail!("espeak-ng: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let mut reader =
            hound::WavReader::open(&path).with_context(|| format!("reading {}", path.display()))?;
        let rate = reader.spec().sample_rate;
        let samples = reader
            .samples::<i16>()
            .map(|s| s.map(|s| f32::from(s) / 32768.0))
            .collect::<Result<Vec<f32>, _>>()?;
        let _ = std::fs::remove_file(&path);
        Ok((samples, rate))
    }
}

/// The caller's speech as the model receives it over `condition`.
fn spoken(voice: &Voice, text: &str, condition: &str) -> Result<Vec<f32>> {
    let (samples, sample_rate) = voice.synthesize(text)?;
    let audio = aiagc_models::tts::Audio {
        samples,
        sample_rate,
    };
    let band = |encode: fn(i16) -> u8, decode: fn(u8) -> i16| -> Result<Vec<f32>> {
        let narrow = resample(&audio.samples, audio.sample_rate, 8000)?;
        let coded: Vec<f32> = narrow
            .iter()
            .map(|&x| (x.clamp(-1.0, 1.0) * 32767.0) as i16)
            .map(|s| decode(encode(s)) as f32 / 32768.0)
            .collect();
        Ok(resample(&coded, 8000, 16000)?)
    };
    match condition {
        "wide" => Ok(resample(&audio.samples, audio.sample_rate, 16000)?),
        "ulaw" => band(ulaw_encode, ulaw_decode),
        "alaw" => band(alaw_encode, alaw_decode),
        other => bail!("unknown condition `{other}` (use ulaw, alaw, wide)"),
    }
}

/// Runs one call of `goal`.
#[allow(clippy::too_many_arguments)]
fn call(
    scenario: &Arc<Scenario>,
    worker: &mut SttWorker,
    base: &SttConfig,
    voice: &Voice,
    condition: &str,
    goal: &Goal,
    today: NaiveDate,
    nbest: bool,
    verbose: bool,
) -> Result<CallResult> {
    let mut d = scenario.session();
    let mut caller = Caller::new(goal);
    let mut reply = d.respond(Input::Start, today, &mut |_| true);
    let mut turns = Vec::new();
    while reply.action.is_none() && turns.len() < MAX_TURNS {
        let said = caller.answer(&reply.text);
        if let Some(keys) = said.strip_prefix('#') {
            reply = d.respond(Input::Dtmf(keys), today, &mut |_| true);
            turns.push(CallTurn {
                said: said.clone(),
                heard: said.clone(),
                readings: 0,
                asked: false,
                reply: reply.text.clone(),
                stt_ms: 0.0,
                rescoring_ms: 0.0,
            });
            continue;
        }
        let audio = spoken(voice, &said, condition)?;
        let expect = d.expectation();
        let config = SttConfig {
            initial_prompt: expect.prompt,
            grammar: expect.grammar,
            confusions: if nbest { expect.confusions } else { None },
            ..base.clone()
        };
        let t = worker.transcribe(&audio, &config)?;
        let input = if t.nbest.is_empty() {
            Input::Speech(&t.text)
        } else {
            Input::Readings(&t.nbest)
        };
        reply = d.respond(input, today, &mut |_| true);
        if verbose {
            let readings: Vec<String> = t
                .nbest
                .iter()
                .map(|h| format!("{} ({:.1})", h.text, h.logprob))
                .collect();
            eprintln!(
                "{condition:4} {:6} {:3} {:14} {:16} | {said} -> {} | {} [{}]",
                voice.voice,
                voice.rate,
                goal.name,
                d.state(),
                t.text,
                reply.text,
                readings.join(" / ")
            );
        }
        turns.push(CallTurn {
            said,
            heard: t.text,
            readings: t.nbest.len(),
            asked: reply.text.starts_with("Meinten Sie"),
            reply: reply.text.clone(),
            stt_ms: t.elapsed.as_secs_f64() * 1000.0,
            rescoring_ms: t.rescoring.as_secs_f64() * 1000.0,
        });
    }
    let completed = committed_goal(&d, goal);
    let committed = matches!(d.outcome(), Some("booked" | "moved" | "cancelled"));
    Ok(CallResult {
        condition: condition.to_owned(),
        voice: voice.voice.clone(),
        rate: voice.rate,
        goal: goal.name.to_owned(),
        outcome: d.outcome().map(str::to_owned),
        completed,
        wrong_commit: committed && !completed,
        turns,
    })
}

#[derive(Serialize)]
struct Report<'a> {
    model: String,
    scenario: String,
    bands: &'a [BandSummary],
    calls: &'a [CallResult],
}

/// `aiagc eval --calls`.
pub fn run(
    args: &EvalArgs,
    scenario: &Arc<Scenario>,
    worker: &mut SttWorker,
    base: &SttConfig,
    model: &str,
    today: NaiveDate,
) -> Result<()> {
    let voices: Vec<u32> = if args.voices.is_empty() {
        vec![0, 1, 2]
    } else {
        args.voices.clone()
    };
    if let Some(v) = voices.iter().find(|&&v| v as usize >= VOICES.len()) {
        bail!("--voices: no voice {v} (use 0, 1, 2)");
    }
    let rates: Vec<u32> = if args.rates.is_empty() {
        vec![150, 185]
    } else {
        args.rates.clone()
    };
    let mut goals = goals(today);
    if let Some(n) = args.limit {
        goals.truncate(n);
    }
    let mut bands = Vec::new();
    let mut calls = Vec::new();
    for condition in &args.conditions {
        let mut band = BandSummary {
            condition: condition.clone(),
            ..BandSummary::default()
        };
        let (mut task_turns, mut stt_ms, mut rescoring_ms, mut decodes) =
            (0usize, 0.0, 0.0, 0usize);
        for &v in &voices {
            for &rate in &rates {
                let voice = Voice {
                    voice: VOICES[v as usize].into(),
                    rate,
                };
                for goal in &goals {
                    let r = call(
                        scenario,
                        worker,
                        base,
                        &voice,
                        condition,
                        goal,
                        today,
                        !args.single,
                        args.verbose,
                    )?;
                    band.calls += 1;
                    band.completed += usize::from(r.completed);
                    band.wrong_commits += usize::from(r.wrong_commit);
                    band.transferred += usize::from(r.outcome.as_deref() == Some("transferred"));
                    if r.completed {
                        task_turns += r.turns.len();
                    }
                    stt_ms += r.turns.iter().map(|t| t.stt_ms).sum::<f64>();
                    rescoring_ms += r.turns.iter().map(|t| t.rescoring_ms).sum::<f64>();
                    band.asked += r.turns.iter().filter(|t| t.asked).count();
                    decodes += r.turns.iter().filter(|t| t.stt_ms > 0.0).count();
                    calls.push(r);
                }
            }
        }
        band.turns_per_task = task_turns as f64 / band.completed.max(1) as f64;
        band.stt_mean_ms = stt_ms / decodes.max(1) as f64;
        band.rescoring_mean_ms = rescoring_ms / decodes.max(1) as f64;
        if !args.json {
            print_band(&band, bands.is_empty());
        }
        bands.push(band);
    }
    if args.json {
        let report = Report {
            model: model.to_owned(),
            scenario: scenario.spec().name.clone(),
            bands: &bands,
            calls: &calls,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for c in calls.iter().filter(|c| c.wrong_commit) {
            println!(
                "WRONG COMMIT {} {} {} {}: {:?}",
                c.condition, c.voice, c.rate, c.goal, c.outcome
            );
            for t in &c.turns {
                println!("    {} -> {} | {}", t.said, t.heard, t.reply);
            }
        }
    }
    Ok(())
}

fn print_band(b: &BandSummary, header: bool) {
    if header {
        println!(
            "{:9} {:>6} {:>10} {:>13} {:>12} {:>15} {:>6} {:>9} {:>10}",
            "condition",
            "calls",
            "completed",
            "wrong commits",
            "transferred",
            "turns per task",
            "asked",
            "STT mean",
            "rescoring"
        );
    }
    println!(
        "{:9} {:>6} {:>10} {:>13} {:>12} {:>15.2} {:>6} {:>6.0} ms {:>7.0} ms",
        b.condition,
        b.calls,
        b.completed,
        b.wrong_commits,
        b.transferred,
        b.turns_per_task,
        b.asked,
        b.stt_mean_ms,
        b.rescoring_mean_ms
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
    }

    fn say(d: &mut ScenarioDialogue, text: &str) -> String {
        d.respond(Input::Speech(text), today(), &mut |_| true).text
    }

    /// With perfect hearing every goal is committed in the fewest turns,
    /// and the caller understands every question it is asked.
    #[test]
    fn a_caller_heard_perfectly_completes_every_goal() {
        let scenario = Scenario::praxis();
        for goal in goals(today()) {
            let mut d = scenario.session();
            let mut caller = Caller::new(&goal);
            let mut reply = d.respond(Input::Start, today(), &mut |_| true);
            let mut turns = 0;
            while reply.action.is_none() && turns < MAX_TURNS {
                let said = caller.answer(&reply.text);
                let input = match said.strip_prefix('#') {
                    Some(keys) => Input::Dtmf(keys),
                    None => Input::Speech(&said),
                };
                reply = d.respond(input, today(), &mut |_| true);
                turns += 1;
            }
            assert!(committed_goal(&d, &goal), "{}: {:?}", goal.name, d.slots());
            assert_eq!(caller.confused, 0, "{}", goal.name);
            let fewest = match (goal.kind, goal.all_at_once) {
                (Kind::Move, _) => 4,
                (_, true) => 2,
                _ => 3,
            };
            assert_eq!(turns, fewest, "{}", goal.name);
        }
    }

    /// Misheard values are corrected, never confirmed.
    #[test]
    fn the_caller_corrects_what_was_misheard() {
        let scenario = Scenario::praxis();
        let goal = &goals(today())[0]; // Dienstag, 14:30
        let mut d = scenario.session();
        let mut caller = Caller::new(goal);
        say(&mut d, "Termin vereinbaren");
        let r = say(&mut d, "Am Donnerstag um halb drei");
        assert_eq!(caller.answer(&r), "Nein, am Dienstag.");
        let r = say(&mut d, "Am Montag um drei");
        assert_eq!(caller.answer(&r), "Nein, am Dienstag um halb drei.");
        let r = say(&mut d, "Nein");
        assert!(r.contains("Was soll ich ändern"), "{r}");
        assert_eq!(caller.answer(&r), "Am Dienstag um halb drei.");
        let r = say(&mut d, "Am Dienstag um halb drei");
        assert_eq!(caller.answer(&r), "Ja, genau.");
        // A confirmation of the wrong kind is refused.
        let move_goal = goals(today())
            .into_iter()
            .find(|g| g.kind == Kind::Move)
            .unwrap();
        let mut mover = Caller::new(&move_goal);
        assert_eq!(mover.answer(&r), "Nein, das stimmt nicht.");
        assert_eq!(
            mover.answer("Ganz etwas anderes?"),
            "Nein, das stimmt nicht."
        );
        assert_eq!(mover.confused, 1);
    }
}
