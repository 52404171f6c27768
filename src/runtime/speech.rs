//! The speech worker pool: STT → dialogue → TTS on dedicated OS threads.
//!
//! Jobs carry their call and turn. A call's current turn lives in an
//! atomic shared with its media task: barge-in, DTMF or a new utterance
//! bumps it, and workers drop jobs (or stop producing sentences) whose
//! turn is no longer current. The queue is bounded; a full queue rejects
//! the job (counted, logged), never blocks a media task.

use aiagc_dialogue::{Action, Dialogue, Input, TurnHint};
use aiagc_engine::handoff::{bounded, HandoffSender, Offer};
use aiagc_models::nbest::Hypothesis;
use aiagc_models::smart_turn::{EndOfTurn, SmartTurn};
use aiagc_models::stt::{Constrained, SttBackend, SttConfig, Transcriber};
use aiagc_models::tts::{sentences, EspeakVoice, Tts};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A reply's audio for one sentence.
#[derive(Debug)]
pub struct ReplyAudio {
    /// Turn it answers.
    pub turn: u64,
    /// Mono samples.
    pub samples: Vec<f32>,
    /// Their rate.
    pub sample_rate: u32,
    /// The sentence (to tell our own echo from the caller).
    pub text: String,
}

/// What STT heard: the decoded text and, where the dialogue named words
/// that sound alike, its readings with their probabilities.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Heard {
    /// The decoded text, trimmed.
    pub text: String,
    /// The readings, likeliest first (empty: the text alone).
    pub readings: Vec<Hypothesis>,
}

impl From<&str> for Heard {
    fn from(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            readings: Vec::new(),
        }
    }
}

/// What a turn reports (for logs, per-call records and the demo).
#[derive(Debug, Clone, Serialize)]
pub struct TurnRecord {
    /// Call id.
    pub call: String,
    /// Turn number within the call.
    pub turn: u64,
    /// `start`, `speech`, `dtmf` or `silence`.
    pub input: &'static str,
    /// What STT heard (or the keys pressed).
    pub transcript: String,
    /// Readings of it weighed by the dialogue (0: the transcript alone).
    pub readings: usize,
    /// The agent's reply text.
    pub reply: String,
    /// What the call does after the reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Task completed by this turn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The dialogue's collected values after this turn.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub slots: std::collections::BTreeMap<&'static str, String>,
    /// When the input was handed to the workers.
    #[serde(skip)]
    pub handed_over: Instant,
    /// STT time of the transcript used (when `early_transcript`, it ran
    /// during the caller's pause, inside the endpoint time).
    #[serde(serialize_with = "as_ms")]
    pub stt: Duration,
    /// Dialogue time to the first sentence.
    #[serde(serialize_with = "as_ms")]
    pub dialogue: Duration,
    /// Synthesis time of the first sentence.
    #[serde(serialize_with = "as_ms")]
    pub tts_first_audio: Duration,
    /// The transcript was made at a pause, before the turn ended.
    pub early_transcript: bool,
    /// The turn ended at the pause because the words were complete.
    pub ended_by_hint: bool,
    /// The turn ended at the pause because the turn model said complete.
    pub ended_by_model: bool,
    /// The caller interrupted this turn's reply.
    pub interrupted: bool,
    /// Sounds over this turn's reply that were no turn (it played on).
    pub resumed: u32,
    /// From the hand-over to the first reply packet sent (media side).
    #[serde(serialize_with = "as_ms_opt")]
    pub to_first_packet: Option<Duration>,
    /// From the caller's speech end (as our jitter buffer played it out)
    /// to the first reply packet sent: the turn latency measured at the
    /// server, less the network and Asterisk's own buffering.
    #[serde(serialize_with = "as_ms_opt")]
    pub from_speech_end: Option<Duration>,
}

fn as_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e4).round() / 10.0)
}

fn as_ms_opt<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => as_ms(d, s),
        None => s.serialize_none(),
    }
}

/// What workers send back to a call's media task.
#[derive(Debug)]
pub enum SpeechOut {
    /// The transcript of the utterance so far at a pause.
    Partial {
        /// Pause id (from the engine).
        pause: u64,
        /// What STT heard.
        transcript: Heard,
        /// STT time.
        stt: Duration,
        /// The dialogue's view on whether the turn is complete.
        hint: TurnHint,
    },
    /// The turn model's view at a pause.
    TurnScore {
        /// First pause of the silence.
        first: u64,
        /// This pause.
        pause: u64,
        /// Probability that the turn is complete.
        probability: f32,
    },
    /// What a sound over a paused reply was heard as.
    Sound {
        /// The job's id.
        id: u64,
        /// Its plain transcript.
        heard: String,
        /// The dialogue's view of those words as a turn (used if the sound
        /// takes the turn: as any pause's words, they may end it there).
        hint: TurnHint,
    },
    /// One sentence of a reply.
    Audio(ReplyAudio),
    /// The turn is answered (all its sentences were sent).
    Answered(Box<TurnRecord>, Option<Action>),
}

/// What a job asks for.
#[derive(Debug)]
pub enum Work {
    /// The call was answered: greet.
    Start,
    /// Transcribe the utterance so far (a pause) and judge it: the words,
    /// then, where they have no opinion, the turn model.
    Pause {
        /// Pause id.
        id: u64,
        /// 16 kHz audio.
        audio: Vec<f32>,
        /// Silence to append for the turn model (the pause so far, less
        /// the tail already in `audio`), in samples.
        silence: usize,
    },
    /// Ask the turn model again as the pause grows.
    TurnCheck {
        /// First pause of the silence.
        first: u64,
        /// This pause.
        id: u64,
        /// 16 kHz audio including the silence so far.
        audio: Vec<f32>,
    },
    /// Answer an utterance.
    Utterance {
        /// 16 kHz audio (transcribed unless `transcript` is given).
        audio: Vec<f32>,
        /// Transcript made at the utterance's pause, and its STT time.
        /// Boxed: a job is moved through the hand-off on every call.
        transcript: Option<Box<(Heard, Duration)>>,
        /// Whether the words ended the turn.
        ended_by_hint: bool,
        /// Whether the turn model ended the turn.
        ended_by_model: bool,
    },
    /// Transcribe a sound heard over a paused reply, plainly (no
    /// expectation: a "mhm" must not be forced into the answers' grammar).
    Sound {
        /// Its id (from the conversation).
        id: u64,
        /// 16 kHz audio.
        audio: Vec<f32>,
    },
    /// Keys pressed.
    Dtmf(String),
    /// The caller stayed silent.
    Silence,
}

/// A call as the workers see it.
pub struct CallShared {
    /// Call id (the caller's channel id).
    pub id: String,
    /// The current turn (see the module doc).
    pub current: AtomicU64,
    /// The media task is gone.
    pub closed: AtomicBool,
    /// The newest pause offered (older turn checks are superseded).
    pub latest_pause: AtomicU64,
    /// The first pause of the newest silence (transcripts of earlier
    /// silences are superseded: the caller spoke again).
    pub latest_silence: AtomicU64,
    /// The turn whose input the dialogue is answering (a tool's wait ends
    /// when it is no longer the current one).
    pub answering: AtomicU64,
    /// The call's dialogue (locked by one worker at a time; never by media).
    pub dialogue: Mutex<Box<dyn Dialogue>>,
    /// Back to the media task.
    pub out: mpsc::UnboundedSender<SpeechOut>,
}

/// One unit of work for the pool.
pub struct Job {
    /// The call.
    pub call: Arc<CallShared>,
    /// The turn it belongs to.
    pub turn: u64,
    /// What to do.
    pub work: Work,
    /// When it was handed over.
    pub handed_over: Instant,
    /// When its result is needed for the caller not to wait.
    pub deadline: Instant,
    /// Work the call can go on without.
    pub speculative: bool,
}

impl Job {
    fn stale(&self) -> bool {
        if self.call.closed.load(Ordering::SeqCst) {
            return true;
        }
        match self.work {
            // Pause transcripts outlive the turn bump at the utterance's
            // end (they are reused), but a newer pause supersedes them.
            Work::Pause { id, .. } => id < self.call.latest_silence.load(Ordering::SeqCst),
            Work::TurnCheck { id, .. } => id < self.call.latest_pause.load(Ordering::SeqCst),
            _ => self.call.current.load(Ordering::SeqCst) != self.turn,
        }
    }
}

/// Counters of the pool.
#[derive(Debug)]
pub struct SpeechStats {
    /// Jobs rejected because the queue was full.
    pub rejected: AtomicU64,
    /// Jobs dropped because their turn was over.
    pub stale: AtomicU64,
    /// Turns answered.
    pub answered: AtomicU64,
    /// Transcriptions that failed (the turn goes on with no words).
    pub stt_errors: AtomicU64,
    /// Sentences TTS could not synthesize.
    pub tts_errors: AtomicU64,
    /// Seconds a job waited in the queue before a worker took it.
    pub queue_wait: Histogram,
    /// STT decode time over audio time.
    pub stt_rtf: Histogram,
    /// Seconds spent scoring the readings of a transcript.
    pub rescoring: Histogram,
    /// Decodes held to the expected answers' grammar.
    pub grammar_held: AtomicU64,
    /// Decodes where the caller said something else: decoded again freely.
    pub grammar_fell_back: AtomicU64,
}

impl Default for SpeechStats {
    fn default() -> Self {
        Self {
            rejected: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            stt_errors: AtomicU64::new(0),
            tts_errors: AtomicU64::new(0),
            // 0.5 ms … ~4 s
            queue_wait: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            // 0.01 … ~10
            stt_rtf: Histogram::new(exponential_buckets(0.01, 2.0, 11)),
            // 1 ms … ~1 s
            rescoring: Histogram::new(exponential_buckets(0.001, 2.0, 11)),
            grammar_held: AtomicU64::new(0),
            grammar_fell_back: AtomicU64::new(0),
        }
    }
}

/// Handle to the running pool.
pub struct SpeechPool {
    jobs: HandoffSender<Job>,
    stop: Arc<AtomicBool>,
    /// Loudness target of the replies, LUFS (`f64` bits).
    level: Arc<AtomicU64>,
    /// Counters.
    pub stats: Arc<SpeechStats>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl SpeechPool {
    /// Starts `workers` threads sharing `model`, each with its own whisper
    /// state and German espeak-ng voice; `queue` bounds waiting jobs.
    pub fn start(
        model: impl Into<SttBackend>,
        workers: usize,
        queue: usize,
        stt: SttConfig,
    ) -> Result<Self, aiagc_models::stt::SttError> {
        Self::start_with_turn_model(model, workers, queue, stt, None)
    }

    /// As [`SpeechPool::start`], each worker also loading Smart Turn from
    /// the models folder `turn_model` (a failure is logged; the pool then
    /// works without it).
    pub fn start_with_turn_model(
        model: impl Into<SttBackend>,
        workers: usize,
        queue: usize,
        stt: SttConfig,
        turn_model: Option<std::path::PathBuf>,
    ) -> Result<Self, aiagc_models::stt::SttError> {
        let (tx, rx) = bounded::<Job>(queue);
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(SpeechStats::default());
        let mut threads = Vec::new();
        let level = Arc::new(AtomicU64::new(aiagc_models::level::TARGET_LUFS.to_bits()));
        let model: SttBackend = model.into();
        for i in 0..workers.max(1) {
            let mut worker = model.transcriber()?;
            let (rx, stt, stop, stats) = (rx.clone(), stt.clone(), stop.clone(), stats.clone());
            let level = level.clone();
            let mut turn = match &turn_model {
                Some(dir) => match SmartTurn::from_dir(dir) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        tracing::warn!(error = %e, "Smart Turn not loaded: turns end on words and silence");
                        None
                    }
                },
                None => None,
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("speech-{i}"))
                    .spawn(move || {
                        let mut voice = EspeakVoice::german();
                        // Poll the stop flag: media hosts keep job senders alive.
                        while !stop.load(Ordering::Relaxed) {
                            match rx.recv_timeout(Duration::from_millis(100)) {
                                Ok(job) if job.stale() => {
                                    stats.stale.fetch_add(1, Ordering::Relaxed);
                                }
                                Ok(job) => {
                                    let lufs = f64::from_bits(level.load(Ordering::Relaxed));
                                    let tts = Speaker {
                                        voice: &mut voice,
                                        lufs,
                                    };
                                    run(job, &mut worker, turn.as_mut(), &stt, tts, &stats)
                                }
                                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                            }
                        }
                    })
                    .map_err(|e| aiagc_models::stt::SttError::Inference(e.to_string()))?,
            );
        }
        Ok(Self {
            jobs: tx,
            stop,
            level,
            stats,
            threads,
        })
    }

    /// Sets the loudness every reply sentence is normalized to (LUFS;
    /// peaks stay below −1 dBFS).
    pub fn set_tts_level(&self, lufs: f64) {
        self.level.store(lufs.to_bits(), Ordering::Relaxed);
    }

    /// A sender for media tasks.
    pub fn submitter(&self) -> Submitter {
        Submitter {
            jobs: self.jobs.clone(),
            stats: self.stats.clone(),
            level: self.level.clone(),
        }
    }

    /// Stops the workers (after the job each is on) and waits for them.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.jobs);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// The media tasks' end of the job queue.
#[derive(Clone)]
pub struct Submitter {
    jobs: HandoffSender<Job>,
    stats: Arc<SpeechStats>,
    level: Arc<AtomicU64>,
}

impl Submitter {
    /// Offers a job; a full queue drops it (counted and logged) and gives
    /// it back, so the caller can decide what else to do.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        match self.jobs.offer(job) {
            Offer::Queued => Ok(()),
            Offer::Full(job) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(call = %job.call.id, turn = job.turn, "speech queue full: job rejected");
                Err(job)
            }
            Offer::Closed(job) => Err(job),
        }
    }

    /// The pool's counters.
    pub fn stats(&self) -> &SpeechStats {
        &self.stats
    }

    /// The loudness replies are brought to (LUFS), for audio the media
    /// side makes itself (the filler).
    pub fn tts_level(&self) -> f64 {
        f64::from_bits(self.level.load(Ordering::Relaxed))
    }

    /// Jobs waiting for a worker now.
    pub fn queued(&self) -> usize {
        self.jobs.len()
    }
}

fn today() -> chrono::NaiveDate {
    chrono::Local::now().date_naive()
}

/// Transcribes with what the dialogue expects now: its vocabulary as the
/// decoder's prompt (unless one is configured) and its answer grammar.
fn transcribe(
    worker: &mut Transcriber,
    stt: &SttConfig,
    audio: &[f32],
    call: &CallShared,
    stats: &SpeechStats,
) -> Heard {
    let expect = call
        .dialogue
        .lock()
        .ok()
        .map(|d| d.expectation())
        .unwrap_or_default();
    let biased;
    let stt = if expect.prompt.is_some() || expect.grammar.is_some() {
        biased = SttConfig {
            initial_prompt: stt.initial_prompt.clone().or(expect.prompt),
            // Readings are scored where the grammar is on (`[speech]
            // grammar`, `nbest`): both are the expectation at work.
            confusions: expect.confusions.filter(|_| stt.use_grammar && stt.nbest),
            grammar: if stt.use_grammar {
                expect.grammar
            } else {
                None
            },
            ..stt.clone()
        };
        &biased
    } else {
        stt
    };
    let call = &call.id;
    match worker.transcribe(audio, stt) {
        Ok(t) => {
            stats.stt_rtf.observe(t.rtf());
            match t.constrained {
                Constrained::Held { .. } => stats.grammar_held.fetch_add(1, Ordering::Relaxed),
                Constrained::FellBack { .. } => {
                    stats.grammar_fell_back.fetch_add(1, Ordering::Relaxed)
                }
                Constrained::No => 0,
            };
            if !t.nbest.is_empty() {
                stats.rescoring.observe(t.rescoring.as_secs_f64());
            }
            Heard {
                text: t.text.trim().to_owned(),
                readings: t.nbest,
            }
        }
        Err(e) => {
            stats.stt_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(call = %call, error = %e, "STT failed");
            Heard::default()
        }
    }
}

fn score(turn: Option<&mut SmartTurn>, call: &CallShared, first: u64, pause: u64, audio: &[f32]) {
    let Some(model) = turn else { return };
    match model.complete_probability(audio) {
        Ok(probability) => {
            let _ = call.out.send(SpeechOut::TurnScore {
                first,
                pause,
                probability,
            });
        }
        Err(e) => tracing::warn!(call = %call.id, error = %e, "turn model failed"),
    }
}

/// A worker's voice and the level its sentences are brought to.
struct Speaker<'a> {
    voice: &'a mut EspeakVoice,
    lufs: f64,
}

fn run(
    job: Job,
    worker: &mut Transcriber,
    turn: Option<&mut SmartTurn>,
    stt: &SttConfig,
    tts: Speaker<'_>,
    stats: &SpeechStats,
) {
    let Speaker { voice, lufs } = tts;
    let call = job.call.clone();
    let t0 = Instant::now();
    stats
        .queue_wait
        .observe(t0.saturating_duration_since(job.handed_over).as_secs_f64());
    let (input_kind, transcript, stt_time, early, by_hint, by_model) = match job.work {
        Work::TurnCheck { first, id, audio } => {
            score(turn, &call, first, id, &audio);
            return;
        }
        Work::Sound { id, audio } => {
            let heard = match worker.transcribe(&audio, stt) {
                Ok(t) => t.text.trim().to_owned(),
                Err(e) => {
                    stats.stt_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(call = %call.id, error = %e, "STT failed");
                    String::new()
                }
            };
            let hint = match call.dialogue.lock() {
                Ok(d) => d.hint(&heard),
                Err(_) => TurnHint::Unknown,
            };
            tracing::debug!(call = %call.id, id, heard = %heard, ?hint, "sound transcribed");
            let _ = call.out.send(SpeechOut::Sound { id, heard, hint });
            return;
        }
        Work::Pause { id, audio, silence } => {
            // The words first: the reply needs the transcript anyway, so a
            // decision that waits for it costs nothing, and the words know
            // what the dialogue expects. The turn model speaks only where
            // the words have no opinion.
            let t0 = Instant::now();
            let transcript = transcribe(worker, stt, &audio, &call, stats);
            let stt_time = t0.elapsed();
            let hint = match call.dialogue.lock() {
                Ok(d) => d.hint(&transcript.text),
                Err(_) => TurnHint::Unknown,
            };
            tracing::debug!(call = %call.id, pause = id, transcript = %transcript.text, readings = transcript.readings.len(), ?hint, "pause transcribed");
            let _ = call.out.send(SpeechOut::Partial {
                pause: id,
                transcript,
                stt: stt_time,
                hint,
            });
            if hint == TurnHint::Unknown && turn.is_some() {
                let mut padded = Vec::with_capacity(audio.len() + silence);
                padded.extend_from_slice(&audio);
                padded.resize(audio.len() + silence, 0.0);
                score(turn, &call, id, id, &padded);
            }
            return;
        }
        Work::Start => (
            "start",
            Heard::default(),
            Duration::ZERO,
            false,
            false,
            false,
        ),
        Work::Utterance {
            audio,
            transcript,
            ended_by_hint,
            ended_by_model,
        } => match transcript {
            Some(heard) => {
                let (t, stt) = *heard;
                ("speech", t, stt, true, ended_by_hint, ended_by_model)
            }
            None => {
                let t = transcribe(worker, stt, &audio, &call, stats);
                (
                    "speech",
                    t,
                    t0.elapsed(),
                    false,
                    ended_by_hint,
                    ended_by_model,
                )
            }
        },
        Work::Dtmf(keys) => (
            "dtmf",
            Heard::from(keys.as_str()),
            Duration::ZERO,
            false,
            false,
            false,
        ),
        Work::Silence => (
            "silence",
            Heard::default(),
            Duration::ZERO,
            false,
            false,
            false,
        ),
    };
    let input = match input_kind {
        "start" => Input::Start,
        "dtmf" => Input::Dtmf(&transcript.text),
        "silence" => Input::Silence,
        _ if !transcript.readings.is_empty() => Input::Readings(&transcript.readings),
        _ => Input::Speech(&transcript.text),
    };
    let t1 = Instant::now();
    let mut first_text: Option<Duration> = None;
    let mut first_audio: Option<Duration> = None;
    let stale =
        || call.current.load(Ordering::SeqCst) != job.turn || call.closed.load(Ordering::SeqCst);
    let (reply, slots) = {
        let Ok(mut dialogue) = call.dialogue.lock() else {
            return;
        };
        call.answering.store(job.turn, Ordering::SeqCst);
        let reply = dialogue.respond(input, today(), &mut |text| {
            first_text.get_or_insert(t1.elapsed());
            for sentence in sentences(text) {
                if stale() {
                    return false;
                }
                let t2 = Instant::now();
                match voice.synthesize(sentence) {
                    Ok(mut audio) => {
                        aiagc_models::level::normalize(&mut audio.samples, audio.sample_rate, lufs);
                        first_audio.get_or_insert(t2.elapsed());
                        let _ = call.out.send(SpeechOut::Audio(ReplyAudio {
                            turn: job.turn,
                            samples: audio.samples,
                            sample_rate: audio.sample_rate,
                            text: sentence.to_owned(),
                        }));
                    }
                    Err(e) => {
                        stats.tts_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(call = %call.id, turn = job.turn, error = %e, "TTS failed")
                    }
                }
            }
            true
        });
        (reply, dialogue.slots().into_iter().collect())
    };
    stats.answered.fetch_add(1, Ordering::Relaxed);
    tracing::info!(call = %call.id, turn = job.turn, input = input_kind, transcript = %transcript.text, readings = transcript.readings.len(), reply = %reply.text, stt_ms = stt_time.as_millis() as u64, "turn answered");
    let record = TurnRecord {
        call: call.id.clone(),
        turn: job.turn,
        input: input_kind,
        readings: transcript.readings.len(),
        transcript: transcript.text,
        reply: reply.text,
        action: reply.action.as_ref().map(|a| match a {
            Action::Hangup => "hangup".to_owned(),
            Action::Transfer { context, .. } => format!("transfer:{context}"),
            Action::SendDtmf(digits) => format!("dtmf:{digits}"),
        }),
        outcome: reply.outcome,
        slots,
        handed_over: job.handed_over,
        stt: stt_time,
        dialogue: first_text.unwrap_or_default(),
        tts_first_audio: first_audio.unwrap_or_default(),
        early_transcript: early,
        ended_by_hint: by_hint,
        ended_by_model: by_model,
        interrupted: false,
        resumed: 0,
        to_first_packet: None,
        from_speech_end: None,
    };
    let _ = call
        .out
        .send(SpeechOut::Answered(Box::new(record), reply.action));
}
