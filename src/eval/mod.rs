//! `aiagc eval`: the speech core over the labelled German fixtures, per
//! telephone condition and biasing mode — word error rate, the dialogue's
//! decision (intent accuracy), slot values (slot accuracy) and STT time.
//!
//! A labelled turn is an utterance (`fixtures/de/utterances.tsv`: text,
//! intent, slots) said in a scenario state (`fixtures/de/turns.tsv`); each
//! is spoken by three espeak-ng voices at two rates. The decision is what
//! the state does with the transcript (yes, no, an intent, slots, nothing)
//! against what the label says it should do; a slot is right when the
//! transcript parses to the value the reference text parses to (and the
//! label is checked against that reference first).
//!
//! `--calls` measures whole booking calls instead (see [`calls`]).

pub mod calls;

use aiagc_dialogue::answers::{self, Answer};
use aiagc_dialogue::number::first_number;
use aiagc_dialogue::scenario::{Scenario, ScenarioDialogue, Understood};
use aiagc_dialogue::text::tokens;
use aiagc_dialogue::when::{parse_date, parse_time};
use aiagc_dialogue::{Dialogue, Expectation};
use aiagc_engine::codec::g711::{alaw_decode, alaw_encode, ulaw_decode, ulaw_encode};
use aiagc_models::audio::{read_wav_16k, resample};
use aiagc_models::stt::{word_error_rate, Constrained, SttConfig, WhisperModel};
use anyhow::{bail, Context, Result};
use chrono::{Datelike, NaiveDate};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Options of `aiagc eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Conditions: `ulaw` (8 kHz G.711 µ-law), `alaw` (8 kHz A-law), `wide`
    /// (16 kHz linear), comma-separated.
    #[arg(long, default_value = "ulaw,alaw,wide", value_delimiter = ',')]
    conditions: Vec<String>,
    /// Biasing: `none` (plain decoding), `prompt` (the state's vocabulary
    /// as whisper's prompt), `grammar` (prompt and the state's answer
    /// grammar with fallback), `nbest` (grammar, and the readings of the
    /// transcript weighed by the state), comma-separated.
    #[arg(long, default_value = "none,prompt,grammar", value_delimiter = ',')]
    bias: Vec<String>,
    /// Only these voices (0, 1, 2: espeak-ng `de`, `de+f3`, `de+m3`).
    #[arg(long, value_delimiter = ',')]
    voices: Vec<u32>,
    /// Only these speaking rates (150, 185 words a minute).
    #[arg(long, value_delimiter = ',')]
    rates: Vec<u32>,
    /// Only the first N labelled turns.
    #[arg(long)]
    limit: Option<usize>,
    /// ggml model (default: the converted whisper base).
    #[arg(long)]
    model: Option<PathBuf>,
    /// CPU threads per decode.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Most nats one step may lose to the grammar before free decoding.
    #[arg(long)]
    budget: Option<f32>,
    /// Most nats the first token may lose before free decoding.
    #[arg(long)]
    first_budget: Option<f32>,
    /// Bring each utterance to this RMS level (dBFS) before the model.
    #[arg(long, allow_hyphen_values = true)]
    gain_dbfs: Option<f64>,
    /// The noise floor under the audio before the model (dBFS), or `off`
    /// (default: the speech core's, −50).
    #[arg(long, allow_hyphen_values = true)]
    noise_floor: Option<String>,
    /// Fixtures folder (default: fixtures/ in the repository).
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// One line per decode on stderr (what was said, heard, decided).
    #[arg(long)]
    verbose: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Whole booking calls with a truthful simulated caller instead of
    /// single turns: tasks completed, turns per task, wrong commits.
    #[arg(long)]
    calls: bool,
    /// Scenario file (default: the built-in practice scenario).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// With `--calls`: the decoded transcript alone, no readings weighed
    /// (the single hypothesis, for comparison).
    #[arg(long)]
    single: bool,
}

/// One labelled turn.
#[derive(Debug, Clone)]
struct Turn {
    id: String,
    state: String,
    text: String,
    /// The decision the state should take.
    expected: String,
    /// Slot name → value the reference text gives ("date" → 2026-12-01).
    slots: BTreeMap<&'static str, String>,
}

/// The eval's "today": a Tuesday, so weekdays resolve the same every run.
fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 24).unwrap_or_default()
}

/// A number as a caller gives it: digits said one by one ("eins zwei drei
/// vier fünf" → 12345, the way a digits slot takes them), else the first
/// number.
fn number_value(words: &[String]) -> Option<String> {
    let single = |w: &String| {
        let w = w.trim_end_matches('.');
        (w.len() == 1 && w.bytes().all(|b| b.is_ascii_digit()))
            || aiagc_dialogue::number::cardinal(w).is_some_and(|n| n < 10)
    };
    let mut best: &[String] = &[];
    let mut i = 0;
    while i < words.len() {
        let run = words[i..].iter().take_while(|w| single(w)).count();
        if run > best.len() {
            best = &words[i..i + run];
        }
        i += run.max(1);
    }
    if best.len() >= 2 {
        return Some(aiagc_dialogue::number::digits(best));
    }
    first_number(words).map(|(_, n)| n.to_string())
}

/// Slot values in `text` for the slots named.
fn slot_values(text: &str, wanted: &[&'static str]) -> BTreeMap<&'static str, String> {
    let words = tokens(text);
    let mut out = BTreeMap::new();
    for &slot in wanted {
        let value = match slot {
            "date" => parse_date(&words, today()).map(|d| d.to_string()),
            "time" => parse_time(&words).map(|t| format!("{:02}:{:02}", t.hour, t.minute)),
            "number" => number_value(&words),
            _ => None,
        };
        if let Some(v) = value {
            out.insert(slot, v);
        }
    }
    out
}

/// The labelled slots of `labels` ("weekday=dienstag;time=14:30"), checked
/// against what the parsers make of the reference `text`.
fn labelled_slots(id: &str, text: &str, labels: &str) -> Result<BTreeMap<&'static str, String>> {
    let mut wanted = Vec::new();
    let mut checks = Vec::new();
    for pair in labels.split(';').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "weekday" | "relative" | "day" | "date" => "date",
            "time" => "time",
            "number" => "number",
            // Names and turn-taking labels are not slot values here.
            _ => continue,
        };
        if !wanted.contains(&slot) {
            wanted.push(slot);
        }
        checks.push((key, value));
    }
    let values = slot_values(text, &wanted);
    for (key, value) in checks {
        let ok = match key {
            "weekday" => values.get("date").is_some_and(|d| {
                NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok_and(|d| {
                    aiagc_dialogue::when::weekday_name(d.weekday()).to_lowercase() == value
                })
            }),
            "date" => values
                .get("date")
                .is_some_and(|d| d.ends_with(&format!("-{value}"))),
            "day" => values.get("date").is_some_and(|d| {
                let offset = match value {
                    "heute" => 0,
                    "morgen" => 1,
                    _ => 2,
                };
                *d == (today() + chrono::Duration::days(offset)).to_string()
            }),
            "time" => values.get("time").is_some_and(|t| t == value),
            "number" => values.get("number").is_some_and(|n| n == value),
            _ => true,
        };
        if !ok {
            bail!("fixture {id}: label {key}={value} disagrees with the parsers on {text:?} ({values:?})");
        }
    }
    Ok(values)
}

/// The labelled turns, in file order.
fn load_turns(fixtures: &Path, scenario: &Arc<Scenario>) -> Result<Vec<Turn>> {
    let read = |name: &str| -> Result<Vec<Vec<String>>> {
        let path = fixtures.join("de").join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(text
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect())
    };
    let utterances: BTreeMap<String, Vec<String>> = read("utterances.tsv")?
        .into_iter()
        .filter_map(|r| Some((r.first()?.clone(), r)))
        .collect();
    let mut turns = Vec::new();
    for row in read("turns.tsv")? {
        let [id, state] = row.as_slice() else {
            bail!("turns.tsv: a row is not `id<TAB>state`: {row:?}");
        };
        let Some(u) = utterances.get(id) else {
            bail!("turns.tsv: {id} is not in utterances.tsv");
        };
        let (text, intent, labels) = (
            u.get(1).cloned().unwrap_or_default(),
            u.get(2).cloned().unwrap_or_default(),
            u.get(3).cloned().unwrap_or_default(),
        );
        if state != "number" && ScenarioDialogue::at(scenario, state).is_none() {
            bail!("turns.tsv: {id} is said in state `{state}` that the scenario does not have");
        }
        let slots = labelled_slots(id, &text, &labels)?;
        let collecting = matches!(
            state.as_str(),
            "book_when" | "move_old" | "move_new" | "cancel_when"
        );
        let expected = match intent.as_str() {
            "yes" | "no" => intent.clone(),
            _ if state == "number" => "number".into(),
            _ if collecting && !slots.is_empty() => "slots".into(),
            other => other.to_owned(),
        };
        turns.push(Turn {
            id: id.clone(),
            state: state.clone(),
            text,
            expected,
            slots,
        });
    }
    Ok(turns)
}

/// What a state expects, and what it decides on a transcript.
fn expectation(scenario: &Arc<Scenario>, state: &str) -> Result<Expectation> {
    if state == "number" {
        // A state that collects a number (the practice scenario has none).
        return Ok(Expectation {
            prompt: None,
            grammar: answers::grammar(&[Answer::Number])?,
            confusions: None,
        });
    }
    ScenarioDialogue::at(scenario, state)
        .map(|d| d.expectation())
        .with_context(|| format!("no state {state}"))
}

fn decide(scenario: &Arc<Scenario>, state: &str, heard: &str) -> String {
    if state == "number" {
        return if first_number(&tokens(heard)).is_some() {
            "number"
        } else {
            "nothing"
        }
        .into();
    }
    ScenarioDialogue::at(scenario, state)
        .map(|d| d.understand(heard, today()))
        .unwrap_or(Understood::Nothing)
        .to_string()
}

/// Audio of one fixture as the model receives it in `condition`.
fn audio(fixtures: &Path, file_stem: &str, condition: &str) -> Result<Vec<f32>> {
    let de = fixtures.join("generated").join("de");
    if condition == "wide" {
        return Ok(read_wav_16k(&de.join(format!("{file_stem}_16k.wav")))?);
    }
    let path = de.join(format!("{file_stem}_8k.wav"));
    let mut reader =
        hound::WavReader::open(&path).with_context(|| format!("reading {}", path.display()))?;
    if reader.spec().sample_rate != 8000 || reader.spec().channels != 1 {
        bail!("{}: not 8 kHz mono", path.display());
    }
    let pcm: Vec<i16> = reader.samples::<i16>().collect::<Result<_, _>>()?;
    let coded: Vec<f32> = match condition {
        "ulaw" => pcm
            .iter()
            .map(|&s| ulaw_decode(ulaw_encode(s)))
            .map(|s| s as f32 / 32768.0)
            .collect(),
        "alaw" => pcm
            .iter()
            .map(|&s| alaw_decode(alaw_encode(s)))
            .map(|s| s as f32 / 32768.0)
            .collect(),
        other => bail!("unknown condition `{other}` (use ulaw, alaw, wide)"),
    };
    Ok(resample(&coded, 8000, 16000)?)
}

/// Scales `audio` to an RMS of `dbfs`.
fn normalize_gain(audio: &mut [f32], dbfs: f64) {
    let rms = (audio.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>()
        / audio.len().max(1) as f64)
        .sqrt();
    if rms > 1e-6 {
        let gain = (10f64.powf(dbfs / 20.0) / rms) as f32;
        for x in audio.iter_mut() {
            *x = (*x * gain).clamp(-1.0, 1.0);
        }
    }
}

/// Figures of one condition × biasing mode.
#[derive(Debug, Default, Serialize)]
pub struct Cell {
    /// `ulaw`, `alaw` or `wide`.
    pub condition: String,
    /// `none`, `prompt` or `grammar`.
    pub bias: String,
    /// Decodes.
    pub decodes: usize,
    /// Mean word error rate per utterance.
    pub wer: f64,
    /// Share of decodes where the state decided as labelled.
    pub intent_accuracy: f64,
    /// Share of labelled slot values heard right.
    pub slot_accuracy: f64,
    /// Labelled slot values.
    pub slots: usize,
    /// Decision and slots on the scenario's own turns only (no `number`).
    pub scenario_intent_accuracy: f64,
    /// Slot accuracy on the scenario's own turns.
    pub scenario_slot_accuracy: f64,
    /// STT time per decode, median (ms).
    pub stt_p50_ms: f64,
    /// STT time per decode, 95th percentile (ms).
    pub stt_p95_ms: f64,
    /// Mean STT time (ms).
    pub stt_mean_ms: f64,
    /// Decodes the grammar held.
    pub grammar_held: usize,
    /// Decodes that fell back to free decoding.
    pub grammar_fell_back: usize,
    /// With `nbest`: answers the state would have asked to choose for
    /// (scored with the reading it took).
    pub asked: usize,
    /// With `nbest`: time spent scoring readings, in all (ms; mean after
    /// the run).
    pub rescoring_ms: f64,
}

/// One decode (for `--json` and `--verbose`).
#[derive(Debug, Serialize)]
pub struct Decode {
    condition: String,
    bias: String,
    file: String,
    state: String,
    said: String,
    heard: String,
    wer: f64,
    expected: String,
    decided: String,
    slots_right: usize,
    slots: usize,
    stt_ms: f64,
    grammar: &'static str,
    /// Nats lost to the grammar (sum over steps, worst step).
    grammar_cost: f32,
    grammar_worst: f32,
    grammar_first: f32,
}

#[derive(Serialize)]
struct Report<'a> {
    model: String,
    noise_floor_dbfs: Option<f32>,
    turns: usize,
    files_per_turn: usize,
    cells: &'a [Cell],
    decodes: &'a [Decode],
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Runs `aiagc eval`.
pub fn run(args: &EvalArgs) -> Result<()> {
    let fixtures = args
        .fixtures
        .clone()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"));
    let scenario = match &args.scenario {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Scenario::from_toml(&text).with_context(|| format!("{}", path.display()))?
        }
        None => Scenario::praxis(),
    };
    if args.calls {
        let model_path = args.model.clone().unwrap_or_else(|| {
            aiagc_models::manifest::default_dir().join(aiagc_models::WHISPER_DEFAULT)
        });
        let model = WhisperModel::load(&model_path)?;
        let mut worker = model.worker()?;
        let base = SttConfig {
            threads: args.threads,
            ..SttConfig::default()
        };
        return calls::run(
            args,
            &scenario,
            &mut worker,
            &base,
            &model_path.display().to_string(),
            today(),
        );
    }
    let mut turns = load_turns(&fixtures, &scenario)?;
    if let Some(n) = args.limit {
        turns.truncate(n);
    }
    let model_path = args.model.clone().unwrap_or_else(|| {
        aiagc_models::manifest::default_dir().join(aiagc_models::WHISPER_DEFAULT)
    });
    let model = WhisperModel::load(&model_path)?;
    let mut worker = model.worker()?;
    let voices: Vec<u32> = if args.voices.is_empty() {
        vec![0, 1, 2]
    } else {
        args.voices.clone()
    };
    let rates: Vec<u32> = if args.rates.is_empty() {
        vec![150, 185]
    } else {
        args.rates.clone()
    };
    let noise_floor = match args.noise_floor.as_deref() {
        None => SttConfig::default().noise_floor_dbfs,
        Some("off") => None,
        Some(v) => Some(
            v.parse::<f32>()
                .with_context(|| format!("--noise-floor {v}: a level in dBFS or off"))?,
        ),
    };
    for b in &args.bias {
        if !matches!(b.as_str(), "none" | "prompt" | "grammar" | "nbest") {
            bail!("unknown bias `{b}` (use none, prompt, grammar, nbest)");
        }
    }
    let mut cells = Vec::new();
    let mut decodes = Vec::new();
    for condition in &args.conditions {
        for bias in &args.bias {
            let mut times = Vec::new();
            let mut cell = Cell {
                condition: condition.clone(),
                bias: bias.clone(),
                ..Cell::default()
            };
            let (mut wer, mut right, mut slots_right) = (0.0, 0usize, 0usize);
            let (mut sc_n, mut sc_right, mut sc_slots, mut sc_slots_right) =
                (0usize, 0usize, 0usize, 0usize);
            for turn in &turns {
                let expect = expectation(&scenario, &turn.state)?;
                let config = SttConfig {
                    threads: args.threads,
                    initial_prompt: if bias == "none" {
                        None
                    } else {
                        expect.prompt.clone()
                    },
                    confusions: if bias == "nbest" {
                        expect.confusions.clone()
                    } else {
                        None
                    },
                    grammar: if bias == "grammar" || bias == "nbest" {
                        expect.grammar.clone()
                    } else {
                        None
                    },
                    grammar_budget: args
                        .budget
                        .unwrap_or(aiagc_models::stt::GRAMMAR_BUDGET_NATS),
                    noise_floor_dbfs: noise_floor,
                    grammar_first_budget: args
                        .first_budget
                        .unwrap_or(aiagc_models::stt::GRAMMAR_FIRST_BUDGET_NATS),
                    ..SttConfig::default()
                };
                for &v in &voices {
                    for &r in &rates {
                        let stem = format!("{}_v{v}_r{r}", turn.id);
                        let mut samples = audio(&fixtures, &stem, condition)?;
                        if let Some(level) = args.gain_dbfs {
                            normalize_gain(&mut samples, level);
                        }

                        let t = worker.transcribe(&samples, &config)?;
                        // With readings: the one the state takes.
                        let weighed = (!t.nbest.is_empty())
                            .then(|| ScenarioDialogue::at(&scenario, &turn.state))
                            .flatten()
                            .map(|d| d.weigh(&t.nbest, today()));
                        cell.asked +=
                            usize::from(weighed.as_ref().is_some_and(|w| w.ask.is_some()));
                        cell.rescoring_ms += t.rescoring.as_secs_f64() * 1000.0;
                        let heard = weighed.map(|w| w.text).unwrap_or_else(|| t.text.clone());
                        let w = word_error_rate(&turn.text, &heard);
                        let decided = decide(&scenario, &turn.state, &heard);
                        let got =
                            slot_values(&heard, &turn.slots.keys().copied().collect::<Vec<_>>());
                        let n_right = turn
                            .slots
                            .iter()
                            .filter(|(k, v)| got.get(*k) == Some(v))
                            .count();
                        let ok = decided == turn.expected;
                        wer += w;
                        right += usize::from(ok);
                        slots_right += n_right;
                        cell.slots += turn.slots.len();
                        if turn.state != "number" {
                            sc_n += 1;
                            sc_right += usize::from(ok);
                            sc_slots += turn.slots.len();
                            sc_slots_right += n_right;
                        }
                        let ms = t.elapsed.as_secs_f64() * 1000.0;
                        times.push(ms);
                        let (grammar, cost, worst, first) = match t.constrained {
                            Constrained::No => ("-", 0.0, 0.0, 0.0),
                            Constrained::Held { cost, worst, first } => {
                                cell.grammar_held += 1;
                                ("held", cost, worst, first)
                            }
                            Constrained::FellBack { cost, worst, first } => {
                                cell.grammar_fell_back += 1;
                                ("fell back", cost, worst, first)
                            }
                        };
                        if args.verbose {
                            eprintln!(
                                "{condition:5} {bias:7} {stem:18} {:12} {:>6.0} ms WER {w:.2} {:9} {cost:5.1} {worst:5.1} {first:5.1} {} | {} -> {heard}",
                                turn.state,
                                ms,
                                grammar,
                                if ok { "ok" } else { "WRONG" },
                                turn.text
                            );
                        }
                        decodes.push(Decode {
                            condition: condition.clone(),
                            bias: bias.clone(),
                            file: stem,
                            state: turn.state.clone(),
                            said: turn.text.clone(),
                            heard,
                            wer: w,
                            expected: turn.expected.clone(),
                            decided,
                            slots_right: n_right,
                            slots: turn.slots.len(),
                            stt_ms: ms,
                            grammar,
                            grammar_cost: cost,
                            grammar_worst: worst,
                            grammar_first: first,
                        });
                    }
                }
            }
            let n = times.len().max(1) as f64;
            cell.decodes = times.len();
            cell.wer = wer / n;
            cell.intent_accuracy = right as f64 / n;
            cell.slot_accuracy = slots_right as f64 / cell.slots.max(1) as f64;
            cell.scenario_intent_accuracy = sc_right as f64 / sc_n.max(1) as f64;
            cell.scenario_slot_accuracy = sc_slots_right as f64 / sc_slots.max(1) as f64;
            cell.stt_mean_ms = times.iter().sum::<f64>() / n;
            cell.rescoring_ms /= n;
            times.sort_by(f64::total_cmp);
            cell.stt_p50_ms = percentile(&times, 0.5);
            cell.stt_p95_ms = percentile(&times, 0.95);
            if !args.json {
                print_cell(&cell, cells.is_empty());
            }
            cells.push(cell);
        }
    }
    if args.json {
        let report = Report {
            model: model_path.display().to_string(),
            noise_floor_dbfs: noise_floor,
            turns: turns.len(),
            files_per_turn: voices.len() * rates.len(),
            cells: &cells,
            decodes: &decodes,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}

fn print_cell(c: &Cell, header: bool) {
    if header {
        println!(
            "{:9} {:8} {:>7} {:>6} {:>8} {:>8} {:>10} {:>10} {:>8} {:>8} {:>14} {:>6} {:>9}",
            "condition",
            "bias",
            "decodes",
            "WER",
            "intent",
            "slots",
            "scen.int",
            "scen.slot",
            "STT p50",
            "STT p95",
            "grammar",
            "asked",
            "rescoring"
        );
    }
    let pct = |x: f64| format!("{:.1} %", x * 100.0);
    println!(
        "{:9} {:8} {:>7} {:>6.3} {:>8} {:>8} {:>10} {:>10} {:>5.0} ms {:>5.0} ms {:>5} / {:<6} {:>6} {:>6.0} ms",
        c.condition,
        c.bias,
        c.decodes,
        c.wer,
        pct(c.intent_accuracy),
        pct(c.slot_accuracy),
        pct(c.scenario_intent_accuracy),
        pct(c.scenario_slot_accuracy),
        c.stt_p50_ms,
        c.stt_p95_ms,
        c.grammar_held,
        c.grammar_fell_back,
        c.asked,
        c.rescoring_ms,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
    }

    /// The labels agree with what the parsers make of the reference texts,
    /// every turn names a state the scenario has, and the reference text
    /// itself gets the labelled decision in that state.
    #[test]
    fn labelled_turns_are_consistent_with_the_dialogue() {
        let scenario = Scenario::praxis();
        let turns = load_turns(&fixtures(), &scenario).unwrap();
        assert!(turns.len() >= 35, "{}", turns.len());
        for t in &turns {
            assert_eq!(
                decide(&scenario, &t.state, &t.text),
                t.expected,
                "{} in {}",
                t.id,
                t.state
            );
        }
        let slots: usize = turns.iter().map(|t| t.slots.len()).sum();
        assert!(slots >= 25, "{slots} labelled slot values");
    }

    #[test]
    fn a_label_that_disagrees_is_an_error() {
        let err = labelled_slots(
            "x",
            "Am Mittwoch um elf Uhr.",
            "weekday=dienstag;time=11:00",
        )
        .unwrap_err();
        assert!(err.to_string().contains("weekday=dienstag"), "{err}");
        let ok = labelled_slots(
            "x",
            "Am Mittwoch um elf Uhr.",
            "weekday=mittwoch;time=11:00",
        )
        .unwrap();
        assert_eq!(ok.get("time").map(String::as_str), Some("11:00"));
    }

    /// Malformed fixture tables are clear errors naming the row.
    #[test]
    fn malformed_turn_tables_are_refused() {
        let scenario = Scenario::praxis();
        let dir = std::env::temp_dir().join(format!("aiagc-eval-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("de")).unwrap();
        std::fs::write(
            dir.join("de/utterances.tsv"),
            "id\ttext\tintent\tslots\nyes_01\tJa.\tyes\t\n",
        )
        .unwrap();
        for (turns, expected) in [
            ("id\tstate\nyes_01\n", "not `id<TAB>state`"),
            (
                "id\tstate\nnope_01\tbook_confirm\n",
                "not in utterances.tsv",
            ),
            ("id\tstate\nyes_01\tlimbo\n", "does not have"),
        ] {
            std::fs::write(dir.join("de/turns.tsv"), turns).unwrap();
            let err = load_turns(&dir, &scenario).unwrap_err().to_string();
            assert!(err.contains(expected), "{turns:?}: {err}");
        }
        std::fs::write(
            dir.join("de/turns.tsv"),
            "id\tstate\nyes_01\tbook_confirm\n",
        )
        .unwrap();
        assert_eq!(load_turns(&dir, &scenario).unwrap()[0].expected, "yes");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn gain_is_brought_to_the_level() {
        let mut a: Vec<f32> = (0..16000).map(|i| 0.01 * (i as f32 * 0.1).sin()).collect();
        normalize_gain(&mut a, -20.0);
        let rms = (a.iter().map(|x| x * x).sum::<f32>() / a.len() as f32).sqrt();
        assert!((20.0 * rms.log10() + 20.0).abs() < 0.1, "{rms}");
    }
}
