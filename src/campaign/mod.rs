//! `aiagc campaign`: a list of numbers called at a bounded rate, inside a
//! time window, busy and unanswered numbers again later. Each call is
//! originated into a Stasis app of the campaign's own (`<app>-campaign`),
//! which learns how the dial ended (ChannelDestroyed with its cause) or
//! that it was answered (StasisStart), and then sends the answered call on
//! into the dialplan (`outbound-calls-ari`: `Stasis(aiagc,outbound)`),
//! where aiagc tells a person from a machine.
//!
//! Progress goes to a state file (one JSON line per finished number), so a
//! campaign that is stopped and started again skips what is done.

pub mod plan;

use aiagc_ari::client::{AriClient, AriConfig, AriError, Originate};
use aiagc_ari::event::Event;
use aiagc_ari::stream::StreamEvent;
use plan::{Next, Outcome, Plan, Policy};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What can stop a campaign.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// The list cannot be read.
    #[error("{0}")]
    List(String),
    /// The state file cannot be read or written.
    #[error("state file {}: {}", .0.display(), .1)]
    State(PathBuf, std::io::Error),
    /// Asterisk could not be reached.
    #[error("ARI: {0}")]
    Ari(String),
}

/// One row of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The number (`{number}` in the endpoint template).
    pub number: String,
    /// The other columns, as channel variables (`AIAGC_<COLUMN>`).
    pub variables: BTreeMap<String, String>,
}

/// Reads a CSV list with a header that names a `number` column; other
/// columns become channel variables. Empty numbers and repeats are refused
/// with their line.
pub fn read_list(text: &str) -> Result<Vec<Row>, CampaignError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| CampaignError::List(format!("header: {e}")))?
        .clone();
    let Some(col) = headers
        .iter()
        .position(|h| h.eq_ignore_ascii_case("number"))
    else {
        return Err(CampaignError::List(format!(
            "the header {:?} has no `number` column",
            headers.iter().collect::<Vec<_>>()
        )));
    };
    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| CampaignError::List(format!("line {line}: {e}")))?;
        let number = record.get(col).unwrap_or("").to_owned();
        if number.is_empty()
            || number.len() > 32
            || !number
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '+' | '*' | '#'))
        {
            return Err(CampaignError::List(format!(
                "line {line}: {number:?} is not a number (digits, + * #)"
            )));
        }
        if !seen.insert(number.clone()) {
            return Err(CampaignError::List(format!(
                "line {line}: {number} is listed twice"
            )));
        }
        let mut variables = BTreeMap::new();
        for (h, v) in headers.iter().zip(record.iter()) {
            if h.eq_ignore_ascii_case("number") || h.is_empty() {
                continue;
            }
            let name: String = h
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            variables.insert(format!("AIAGC_{name}"), v.chars().take(200).collect());
        }
        rows.push(Row { number, variables });
    }
    Ok(rows)
}

/// Where and how the calls go.
#[derive(Debug, Clone)]
pub struct CampaignConfig {
    /// ARI, with the campaign's own app name.
    pub ari: AriConfig,
    /// `PJSIP/{number}@trunk`.
    pub endpoint: String,
    /// Where answered calls continue.
    pub context: String,
    /// Extension there.
    pub extension: String,
    /// Caller id shown.
    pub caller_id: Option<String>,
    /// Ring timeout, s.
    pub ring_timeout: u32,
    /// Pace, attempts, window.
    pub policy: Policy,
    /// Progress file (JSON lines).
    pub state: Option<PathBuf>,
}

/// A number's final result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NumberResult {
    /// The number.
    pub number: String,
    /// `answered`, `busy`, `no_answer`, `congestion`, `invalid`.
    pub outcome: String,
    /// Attempts made.
    pub attempts: u32,
    /// The channel of the answered attempt (the call's id in aiagc's records).
    #[serde(default)]
    pub channel: Option<String>,
}

fn done_before(state: &Path) -> Result<HashMap<String, NumberResult>, CampaignError> {
    let text = match std::fs::read_to_string(state) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(CampaignError::State(state.to_owned(), e)),
    };
    // A line cut by a crash is skipped: that number is dialled again.
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<NumberResult>(l).ok())
        .map(|r| (r.number.clone(), r))
        .collect())
}

fn record(state: &Option<PathBuf>, r: &NumberResult) -> Result<(), CampaignError> {
    let Some(path) = state else { return Ok(()) };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| CampaignError::State(path.clone(), e))?;
    writeln!(f, "{}", serde_json::to_string(r).unwrap_or_default())
        .and_then(|_| f.sync_data())
        .map_err(|e| CampaignError::State(path.clone(), e))
}

/// Runs the campaign to its end; `on_result` sees each number finish.
pub async fn run(
    config: CampaignConfig,
    rows: Vec<Row>,
    on_result: &mut dyn FnMut(&NumberResult),
) -> Result<Vec<NumberResult>, CampaignError> {
    let earlier = match &config.state {
        Some(p) => done_before(p)?,
        None => HashMap::new(),
    };
    let mut results: Vec<NumberResult> = rows
        .iter()
        .filter_map(|r| earlier.get(&r.number).cloned())
        .collect();
    let rows: Vec<Row> = rows
        .into_iter()
        .filter(|r| !earlier.contains_key(&r.number))
        .collect();
    let client =
        AriClient::new(config.ari.clone()).map_err(|e| CampaignError::Ari(e.to_string()))?;
    let (tx, mut events) = tokio::sync::mpsc::channel(256);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stream = tokio::spawn(aiagc_ari::stream::run(config.ari.clone(), tx, stopped));
    // Registered (the app exists) before the first originate.
    let t = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(StreamEvent::Connected)) => break,
            Ok(Some(_)) if t.elapsed() < Duration::from_secs(10) => {}
            _ => {
                let _ = stop.send(true);
                return Err(CampaignError::Ari(format!(
                    "the events WebSocket of app {} did not connect (run `aiagc check`)",
                    config.ari.app
                )));
            }
        }
    }
    let mut plan = Plan::new(
        config.policy.clone(),
        rows.iter().map(|r| r.number.clone()).collect(),
        Instant::now(),
    );
    // Channel id → (entry, when dialled).
    let mut dialing: HashMap<String, (usize, Instant)> = HashMap::new();
    let mut answered_on: HashMap<usize, String> = HashMap::new();
    let patience = Duration::from_secs(config.ring_timeout as u64 + 15);
    let finish = |plan: &mut Plan,
                  i: usize,
                  o: Outcome,
                  results: &mut Vec<NumberResult>,
                  channel: Option<String>,
                  on_result: &mut dyn FnMut(&NumberResult)|
     -> Result<(), CampaignError> {
        tracing::info!(number = %plan.entries()[i].number, outcome = o.name(), attempt = plan.entries()[i].attempts, "dial ended");
        plan.finished(i, o, Instant::now());
        let e = &plan.entries()[i];
        if let Some(done) = e.outcome() {
            let r = NumberResult {
                number: e.number.clone(),
                outcome: done.name().to_owned(),
                attempts: e.attempts,
                channel,
            };
            record(&config.state, &r)?;
            on_result(&r);
            results.push(r);
        }
        Ok(())
    };
    loop {
        let now = Instant::now();
        // Dials whose end we never heard of (events lost while the
        // WebSocket was down): ask Asterisk.
        let overdue: Vec<(String, usize)> = dialing
            .iter()
            .filter(|(_, (_, at))| now.duration_since(*at) > patience)
            .map(|(id, (i, _))| (id.clone(), *i))
            .collect();
        for (id, i) in overdue {
            match client.channel(&id).await {
                Err(e) if e.is_gone() => {
                    dialing.remove(&id);
                    finish(
                        &mut plan,
                        i,
                        Outcome::NoAnswer,
                        &mut results,
                        None,
                        on_result,
                    )?;
                }
                // Answered while we did not hear (its StasisStart was
                // lost): it waits in our app, so send it on now.
                Ok(ch) if ch.state == "Up" => {
                    dialing.remove(&id);
                    if let Err(e) = client
                        .continue_in_dialplan(&id, &config.context, &config.extension, 1)
                        .await
                    {
                        tracing::warn!(channel = %id, error = %e, "answered call not continued");
                    }
                    finish(
                        &mut plan,
                        i,
                        Outcome::Answered,
                        &mut results,
                        Some(id),
                        on_result,
                    )?;
                }
                _ => {
                    if let Some(d) = dialing.get_mut(&id) {
                        d.1 = now;
                    }
                }
            }
        }
        let wake = match plan.next(now, chrono::Local::now().naive_local()) {
            Next::Finished => break,
            Next::Dial(i) => {
                let row = &rows[i];
                let mut variables = row.variables.clone();
                variables.insert("AIAGC_NUMBER".into(), row.number.clone());
                let o = Originate {
                    endpoint: config.endpoint.replace("{number}", &row.number),
                    app: Some(config.ari.app.clone()),
                    app_args: Some("campaign".into()),
                    caller_id: config.caller_id.clone(),
                    timeout: Some(config.ring_timeout),
                    variables,
                    ..Originate::default()
                };
                match client.originate(&o).await {
                    Ok(ch) => {
                        tracing::info!(number = %row.number, channel = %ch.id, "dialling");
                        dialing.insert(ch.id, (i, Instant::now()));
                    }
                    // Asterisk refuses the endpoint itself.
                    Err(AriError::Server { message, .. } | AriError::BadRequest(message)) => {
                        finish(
                            &mut plan,
                            i,
                            Outcome::Invalid(message),
                            &mut results,
                            None,
                            on_result,
                        )?
                    }
                    Err(e) => {
                        tracing::warn!(number = %row.number, error = %e, "originate failed; again later");
                        finish(
                            &mut plan,
                            i,
                            Outcome::Congestion,
                            &mut results,
                            None,
                            on_result,
                        )?
                    }
                }
                continue;
            }
            Next::Sleep(at) => at.min(now + Duration::from_secs(1)),
            Next::AwaitCalls => now + Duration::from_secs(1),
        };
        tokio::select! {
            e = events.recv() => match e {
                Some(StreamEvent::Event(ev)) => match *ev {
                    Event::StasisStart { channel, .. } => {
                        if let Some((i, _)) = dialing.remove(&channel.id) {
                            // Answered: on into the dialplan, to aiagc.
                            if let Err(e) = client.continue_in_dialplan(&channel.id, &config.context, &config.extension, 1).await {
                                tracing::warn!(channel = %channel.id, error = %e, "answered call not continued");
                            }
                            answered_on.insert(i, channel.id.clone());
                            finish(&mut plan, i, Outcome::Answered, &mut results, Some(channel.id), on_result)?;
                        }
                    }
                    Event::ChannelDestroyed { cause, cause_txt, channel } => {
                        if let Some((i, _)) = dialing.remove(&channel.id) {
                            finish(&mut plan, i, Outcome::from_cause(cause, &cause_txt), &mut results, None, on_result)?;
                        }
                    }
                    _ => {}
                },
                Some(_) => {}
                None => return Err(CampaignError::Ari("event stream ended".into())),
            },
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
        }
    }
    let _ = stop.send(true);
    let _ = stream.await;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_is_read_with_its_columns_as_variables_and_bad_rows_named() {
        let rows =
            read_list("number,name,Termin am\n+4930111, Anna Weber ,3.12.\n4930222,,\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].number, "+4930111");
        assert_eq!(rows[0].variables["AIAGC_NAME"], "Anna Weber");
        assert_eq!(rows[0].variables["AIAGC_TERMIN_AM"], "3.12.");
        for (bad, says) in [
            ("name\nAnna\n", "no `number` column"),
            ("number\n030 111\n", "line 2"),
            ("number\n\n4930\nabc\n", "line 3"),
            ("number\n4930\n4930\n", "twice"),
            ("number,name\n4930,a,b\n", "line 2"),
        ] {
            let e = read_list(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_state_file_skips_what_is_done_and_survives_a_torn_line() {
        let dir = std::env::temp_dir().join(format!("aiagc-campaign-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.jsonl");
        let _ = std::fs::remove_file(&path);
        let r = NumberResult {
            number: "4930111".into(),
            outcome: "answered".into(),
            attempts: 2,
            channel: Some("1795.1".into()),
        };
        record(&Some(path.clone()), &r).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"number\": \"49302")
            .unwrap();
        let done = done_before(&path).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done["4930111"], r);
        let _ = std::fs::remove_dir_all(dir);
    }
}
