//! The speech worker pool: STT → dialogue → TTS on dedicated OS threads.
//!
//! Jobs carry their call and turn. A call's current turn lives in an
//! atomic shared with its media task: barge-in, DTMF or a new utterance
//! bumps it, and workers drop jobs (or stop producing sentences) whose
//! turn is no longer current. The queue ([`super::schedule`]) serves the
//! work a caller waits on first, by deadline, and speculative work after
//! it; it is bounded, and a full queue rejects the job (counted, logged)
//! or gives up a speculative one for an urgent one, never blocks a media
//! task. What each turn cost the workers is counted into its record.

use super::schedule::{Dropped, Order, Popped, Pushed, Queue, Scheduled, Verdict};
use aiagc_dialogue::{Action, Dialogue, Input, TurnHint};
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

/// What the workers spent on one answered turn: everything done for the
/// call since its previous answer (pause transcripts, turn checks and
/// sounds heard over the reply count towards the turn they led to).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct TurnCost {
    /// STT decodes: transcripts at a pause.
    pub pause_decodes: u32,
    /// STT decodes of the whole utterance (none when a pause's was used).
    pub final_decodes: u32,
    /// STT decodes of sounds over a reply.
    pub sound_decodes: u32,
    /// Decodes the grammar gave up, decoded again freely (inside the
    /// counts above, each costing a second decode).
    pub fell_back: u32,
    /// Decodes whose readings were not scored because the job was late.
    pub readings_skipped: u32,
    /// Audio decoded, ms (all decodes).
    pub audio_ms: f64,
    /// Time decoding, ms (wall time on the worker, all decodes).
    pub stt_ms: f64,
    /// CPU-ms of the decodes: their time times the threads each used
    /// (whisper.cpp's threads run the whole decode).
    pub stt_cpu_ms: f64,
    /// Smart Turn runs and their time, ms.
    pub turn_model_runs: u32,
    /// Smart Turn time, ms.
    pub turn_model_ms: f64,
    /// Speech synthesis time, ms (all sentences).
    pub tts_ms: f64,
    /// Dialogue time, ms (the reply's words, tool calls included).
    pub dialogue_ms: f64,
    /// Speculative jobs of the call that gave way to urgent work of other
    /// calls in a full queue.
    pub shed: u32,
}

impl TurnCost {
    fn decoded(&mut self, kind: Decode, audio: usize, took: Duration, threads: usize) {
        match kind {
            Decode::Pause => self.pause_decodes += 1,
            Decode::Final => self.final_decodes += 1,
            Decode::Sound => self.sound_decodes += 1,
        }
        self.audio_ms += audio as f64 / 16.0;
        let ms = took.as_secs_f64() * 1000.0;
        self.stt_ms += ms;
        self.stt_cpu_ms += ms * threads.max(1) as f64;
    }

    /// All STT decodes (a fall-back counts twice: it decoded twice).
    pub fn decodes(&self) -> u32 {
        self.pause_decodes + self.final_decodes + self.sound_decodes + self.fell_back
    }

    /// CPU-ms of the turn's work: decodes, turn model, synthesis (the
    /// dialogue's time is left out: a scenario takes microseconds, a tool
    /// or an LLM waits on the network).
    pub fn cpu_ms(&self) -> f64 {
        self.stt_cpu_ms + self.turn_model_ms + self.tts_ms
    }
}

#[derive(Clone, Copy)]
enum Decode {
    Pause,
    Final,
    Sound,
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
    /// From the caller's speech end to the moment Asterisk began to play
    /// the reply, where the transport tells (the WebSocket's mark in front
    /// of the reply; there replies go out 60 ms ahead of the clock, so
    /// this is the later, truer figure). `None` over RTP, where a packet
    /// plays as it leaves: [`TurnRecord::from_speech_end`].
    #[serde(serialize_with = "as_ms_opt")]
    pub heard_after: Option<Duration>,
    /// What the workers spent on it.
    pub cost: TurnCost,
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
    /// A speculative job of `turn` gave way to urgent work of another call
    /// (the queue was full): what waits for it goes on without it.
    Shed {
        /// Its turn.
        turn: u64,
        /// The work, undone.
        work: Work,
    },
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
    /// The pause whose transcript an ended turn waits for ([`NO_PAUSE`]:
    /// none): its job is urgent from then on.
    pub awaited: AtomicU64,
    /// What the workers spent since the last answered turn.
    pub cost: Mutex<TurnCost>,
    /// The call's dialogue (locked by one worker at a time; never by media).
    pub dialogue: Mutex<Box<dyn Dialogue>>,
    /// Back to the media task.
    pub out: mpsc::UnboundedSender<SpeechOut>,
}

/// [`CallShared::awaited`] when no turn waits for a pause transcript.
pub const NO_PAUSE: u64 = u64::MAX;

impl CallShared {
    /// A call's shared state with nothing done yet.
    pub fn new(
        id: String,
        dialogue: Box<dyn Dialogue>,
        out: mpsc::UnboundedSender<SpeechOut>,
    ) -> Self {
        Self {
            id,
            current: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            latest_pause: AtomicU64::new(0),
            latest_silence: AtomicU64::new(0),
            answering: AtomicU64::new(0),
            awaited: AtomicU64::new(NO_PAUSE),
            cost: Mutex::new(TurnCost::default()),
            dialogue: Mutex::new(dialogue),
            out,
        }
    }

    fn spend(&self, f: impl FnOnce(&mut TurnCost)) {
        if let Ok(mut c) = self.cost.lock() {
            f(&mut c)
        }
    }
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

impl Scheduled for Job {
    fn urgent(&self) -> bool {
        match self.work {
            Work::Pause { id, .. } => {
                !self.speculative || self.call.awaited.load(Ordering::SeqCst) == id
            }
            _ => !self.speculative,
        }
    }

    fn deadline(&self) -> Instant {
        self.deadline
    }

    fn verdict(&self, now: Instant) -> Verdict {
        if self.stale() {
            return Verdict::Stale;
        }
        match self.work {
            // A turn check past its wait finds the turn decided without it.
            Work::TurnCheck { .. } if now > self.deadline => Verdict::Late,
            _ => Verdict::Keep,
        }
    }
}

impl Job {
    fn stale(&self) -> bool {
        if self.call.closed.load(Ordering::SeqCst) {
            return true;
        }
        match self.work {
            // Pause transcripts outlive the turn bump at the utterance's
            // end (an ended turn waits for them), but a newer pause
            // supersedes them, and so does a turn that stopped waiting.
            Work::Pause { id, .. } => {
                id < self.call.latest_silence.load(Ordering::SeqCst)
                    || (self.call.current.load(Ordering::SeqCst) != self.turn
                        && self.call.awaited.load(Ordering::SeqCst) != id)
            }
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
    /// Speculative jobs dropped because they came too late to help.
    pub late: AtomicU64,
    /// Speculative jobs that gave way to urgent ones in a full queue.
    pub displaced: AtomicU64,
    /// Decodes whose readings were not scored because the caller already
    /// waited past the job's deadline.
    pub readings_skipped: AtomicU64,
    /// STT decodes by kind: pause, final, sound.
    pub decodes: [AtomicU64; 3],
    /// Turn model runs.
    pub turn_model_runs: AtomicU64,
    /// Urgent jobs a worker took after their deadline.
    pub started_late: AtomicU64,
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
            late: AtomicU64::new(0),
            displaced: AtomicU64::new(0),
            readings_skipped: AtomicU64::new(0),
            decodes: Default::default(),
            turn_model_runs: AtomicU64::new(0),
            started_late: AtomicU64::new(0),
        }
    }
}

/// Handle to the running pool.
pub struct SpeechPool {
    jobs: Arc<Queue<Job>>,
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
        Self::start_scheduled(model, workers, queue, stt, turn_model, Order::Deadline)
    }

    /// As [`SpeechPool::start_with_turn_model`], its jobs taken in `order`.
    pub fn start_scheduled(
        model: impl Into<SttBackend>,
        workers: usize,
        queue: usize,
        stt: SttConfig,
        turn_model: Option<std::path::PathBuf>,
        order: Order,
    ) -> Result<Self, aiagc_models::stt::SttError> {
        let jobs = Arc::new(Queue::<Job>::with_order(queue, order));
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(SpeechStats::default());
        let mut threads = Vec::new();
        let level = Arc::new(AtomicU64::new(aiagc_models::level::TARGET_LUFS.to_bits()));
        let model: SttBackend = model.into();
        for i in 0..workers.max(1) {
            let mut worker = model.transcriber()?;
            let (jobs, stt, stop, stats) = (jobs.clone(), stt.clone(), stop.clone(), stats.clone());
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
                        // Poll the stop flag: media hosts keep submitters alive.
                        while !stop.load(Ordering::Relaxed) {
                            let mut dropped = Dropped::default();
                            let next =
                                jobs.pop(Duration::from_millis(100), Instant::now, &mut dropped);
                            stats.stale.fetch_add(dropped.stale, Ordering::Relaxed);
                            stats.late.fetch_add(dropped.late, Ordering::Relaxed);
                            match next {
                                Popped::Job(job) => {
                                    let lufs = f64::from_bits(level.load(Ordering::Relaxed));
                                    let tts = Speaker {
                                        voice: &mut voice,
                                        lufs,
                                    };
                                    run(job, &mut worker, turn.as_mut(), &stt, tts, &stats)
                                }
                                Popped::Empty => {}
                                Popped::Closed => break,
                            }
                        }
                    })
                    .map_err(|e| aiagc_models::stt::SttError::Inference(e.to_string()))?,
            );
        }
        Ok(Self {
            jobs,
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
        self.jobs.close();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// The media tasks' end of the job queue.
#[derive(Clone)]
pub struct Submitter {
    jobs: Arc<Queue<Job>>,
    stats: Arc<SpeechStats>,
    level: Arc<AtomicU64>,
}

impl Submitter {
    /// Offers a job; a full queue drops it (counted and logged) and gives
    /// it back, so the caller can decide what else to do.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        match self.jobs.push(job) {
            Pushed::Queued => Ok(()),
            Pushed::Displaced(gone) => {
                self.stats.displaced.fetch_add(1, Ordering::Relaxed);
                tracing::info!(call = %gone.call.id, turn = gone.turn, "speech queue full: speculative job gave way");
                gone.call.spend(|c| c.shed += 1);
                let _ = gone.call.out.send(SpeechOut::Shed {
                    turn: gone.turn,
                    work: gone.work,
                });
                Ok(())
            }
            Pushed::Full(job) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(call = %job.call.id, turn = job.turn, "speech queue full: job rejected");
                Err(job)
            }
            Pushed::Closed(job) => Err(job),
        }
    }

    /// Urgent jobs waiting past their deadline now.
    pub fn overdue(&self) -> usize {
        self.jobs.overdue(Instant::now())
    }

    /// How late the latest urgent job waiting is: the pool is behind the
    /// callers it has (admission control reads it).
    pub fn behind(&self) -> Duration {
        self.jobs.behind(Instant::now())
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
///
/// `late`: the caller already waits past the job's deadline, so the
/// readings are not scored (the grammar stays: it keeps dates and times
/// right, and costs nothing where it holds); counted.
fn transcribe(
    worker: &mut Transcriber,
    stt: &SttConfig,
    audio: &[f32],
    call: &CallShared,
    stats: &SpeechStats,
    (kind, late): (Decode, bool),
) -> Heard {
    let mut expect = call
        .dialogue
        .lock()
        .ok()
        .map(|d| d.expectation())
        .unwrap_or_default();
    let skipped = late && stt.use_grammar && stt.nbest && expect.confusions.is_some();
    if skipped {
        expect.confusions = None;
        stats.readings_skipped.fetch_add(1, Ordering::Relaxed);
    }
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
    let result = decode(worker, stt, audio, call, stats, kind);
    call.spend(|c| c.readings_skipped += u32::from(skipped));
    let call = &call.id;
    match result {
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

/// One decode, counted and timed into the call's cost.
fn decode(
    worker: &mut Transcriber,
    stt: &SttConfig,
    audio: &[f32],
    call: &CallShared,
    stats: &SpeechStats,
    kind: Decode,
) -> Result<aiagc_models::stt::Transcript, aiagc_models::stt::SttError> {
    let t0 = Instant::now();
    let result = worker.transcribe(audio, stt);
    stats.decodes[kind as usize].fetch_add(1, Ordering::Relaxed);
    let fell_back =
        matches!(&result, Ok(t) if matches!(t.constrained, Constrained::FellBack { .. }));
    call.spend(|c| {
        c.decoded(kind, audio.len(), t0.elapsed(), stt.threads);
        c.fell_back += u32::from(fell_back);
    });
    result
}

fn score(
    turn: Option<&mut SmartTurn>,
    call: &CallShared,
    stats: &SpeechStats,
    (first, pause): (u64, u64),
    audio: &[f32],
) {
    let Some(model) = turn else { return };
    let t0 = Instant::now();
    let result = model.complete_probability(audio);
    stats.turn_model_runs.fetch_add(1, Ordering::Relaxed);
    call.spend(|c| {
        c.turn_model_runs += 1;
        c.turn_model_ms += t0.elapsed().as_secs_f64() * 1000.0;
    });
    match result {
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
    // An urgent job taken after its deadline: the pool is behind.
    let late = !job.speculative && t0 > job.deadline;
    if late {
        stats.started_late.fetch_add(1, Ordering::Relaxed);
    }
    let (input_kind, transcript, stt_time, early, by_hint, by_model) = match job.work {
        Work::TurnCheck { first, id, audio } => {
            score(turn, &call, stats, (first, id), &audio);
            return;
        }
        Work::Sound { id, audio } => {
            let heard = match decode(worker, stt, &audio, &call, stats, Decode::Sound) {
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
            // Awaited by an ended turn and late: the caller waits on it.
            let late = t0 > job.deadline && call.awaited.load(Ordering::SeqCst) == id;
            let transcript = transcribe(worker, stt, &audio, &call, stats, (Decode::Pause, late));
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
                score(turn, &call, stats, (id, id), &padded);
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
                let t = transcribe(worker, stt, &audio, &call, stats, (Decode::Final, late));
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
    let mut tts_time = Duration::ZERO;
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
                let result = voice.synthesize(sentence);
                tts_time += t2.elapsed();
                match result {
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
    let responding = t1.elapsed();
    let cost = match call.cost.lock() {
        Ok(mut c) => {
            c.tts_ms += tts_time.as_secs_f64() * 1000.0;
            c.dialogue_ms += responding.saturating_sub(tts_time).as_secs_f64() * 1000.0;
            std::mem::take(&mut *c)
        }
        Err(_) => TurnCost::default(),
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
        heard_after: None,
        cost,
    };
    let _ = call
        .out
        .send(SpeechOut::Answered(Box::new(record), reply.action));
}
