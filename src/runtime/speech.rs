//! The speech worker pool: STT → dialogue → TTS on dedicated OS threads.
//!
//! Jobs carry their call id and turn number. A call's current turn lives
//! in an atomic shared with its media task: barge-in or a new utterance
//! bumps it, and workers drop jobs (or stop streaming sentences) whose turn
//! is no longer current. The queue is bounded; a full queue rejects the job
//! (counted), never blocks a media task.

use aiagc_engine::handoff::{bounded, HandoffSender, Offer};
use aiagc_models::stt::{SttConfig, SttWorker, WhisperModel};
use aiagc_models::tts::{sentences, EspeakVoice, Tts};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
}

/// What a finished turn reports (for logs, records and the demo).
#[derive(Debug, Clone)]
pub struct TurnRecord {
    /// Call id.
    pub call: String,
    /// Turn number within the call.
    pub turn: u64,
    /// What STT heard.
    pub transcript: String,
    /// The agent's reply text.
    pub reply: String,
    /// When the endpointer handed the utterance over.
    pub handed_over: Instant,
    /// STT time.
    pub stt: Duration,
    /// Dialogue time.
    pub dialogue: Duration,
    /// Time to the first synthesized sentence.
    pub tts_first_audio: Duration,
}

/// One utterance to answer.
pub struct Job {
    /// Call id.
    pub call: String,
    /// Turn number.
    pub turn: u64,
    /// The call's current turn (shared with its media task).
    pub current: Arc<AtomicU64>,
    /// 16 kHz utterance audio.
    pub audio: Vec<f32>,
    /// When it was handed over.
    pub handed_over: Instant,
    /// Where the reply audio goes.
    pub replies: mpsc::UnboundedSender<ReplyAudio>,
}

/// Turns a transcript into the agent's reply text.
pub trait Dialogue: Send {
    /// The reply to `transcript` in `call`.
    fn reply(&mut self, call: &str, transcript: &str) -> String;
}

/// A stand-in until the scenario engine lands: acknowledges what it heard.
pub struct Acknowledge;

impl Dialogue for Acknowledge {
    fn reply(&mut self, _call: &str, transcript: &str) -> String {
        if transcript.trim().is_empty() {
            "Entschuldigung, das habe ich nicht verstanden.".into()
        } else {
            format!("Sie sagten: {}", transcript.trim())
        }
    }
}

/// Handle to the running pool.
pub struct SpeechPool {
    jobs: HandoffSender<Job>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// Jobs rejected because the queue was full.
    pub rejected: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl SpeechPool {
    /// Starts `workers` threads sharing `model`, each with its own whisper
    /// state, German espeak-ng voice and dialogue; `records` receives a
    /// record per answered turn.
    pub fn start(
        model: Arc<WhisperModel>,
        workers: usize,
        queue: usize,
        stt: SttConfig,
        dialogue: impl Fn() -> Box<dyn Dialogue> + Send + Sync + 'static,
        records: crossbeam_channel::Sender<TurnRecord>,
    ) -> Result<Self, aiagc_models::stt::SttError> {
        let (tx, rx) = bounded::<Job>(queue);
        let dialogue = Arc::new(dialogue);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut threads = Vec::new();
        for i in 0..workers.max(1) {
            let mut worker = model.worker()?;
            let (rx, records, stt, dialogue, stop) = (
                rx.clone(),
                records.clone(),
                stt.clone(),
                dialogue.clone(),
                stop.clone(),
            );
            threads.push(
                std::thread::Builder::new()
                    .name(format!("speech-{i}"))
                    .spawn(move || {
                        let mut voice = EspeakVoice::german();
                        let mut dialogue = dialogue();
                        // Poll the stop flag: media hosts keep job senders alive.
                        while !stop.load(Ordering::Relaxed) {
                            match rx.recv_timeout(Duration::from_millis(100)) {
                                Ok(job) => answer(
                                    job,
                                    &mut worker,
                                    &stt,
                                    dialogue.as_mut(),
                                    &mut voice,
                                    &records,
                                ),
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
            rejected: Arc::new(AtomicU64::new(0)),
            threads,
        })
    }

    /// A sender for media tasks.
    pub fn submitter(&self) -> Submitter {
        Submitter {
            jobs: self.jobs.clone(),
            rejected: self.rejected.clone(),
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
    rejected: Arc<AtomicU64>,
}

impl Submitter {
    /// Offers a job; a full queue drops it (counted and logged).
    pub fn submit(&self, job: Job) -> bool {
        let call = job.call.clone();
        match self.jobs.offer(job) {
            Offer::Queued => true,
            Offer::Full => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(call = %call, "speech queue full: utterance dropped");
                false
            }
            Offer::Closed => false,
        }
    }
}

fn answer(
    job: Job,
    worker: &mut SttWorker,
    stt: &SttConfig,
    dialogue: &mut dyn Dialogue,
    voice: &mut EspeakVoice,
    records: &crossbeam_channel::Sender<TurnRecord>,
) {
    let stale = |job: &Job| job.current.load(Ordering::SeqCst) != job.turn;
    if stale(&job) {
        return;
    }
    let t0 = Instant::now();
    let transcript = match worker.transcribe(&job.audio, stt) {
        Ok(t) => t.text,
        Err(e) => {
            tracing::warn!(call = %job.call, turn = job.turn, error = %e, "STT failed");
            String::new()
        }
    };
    let stt_time = t0.elapsed();
    let t1 = Instant::now();
    let reply = dialogue.reply(&job.call, &transcript);
    let dialogue_time = t1.elapsed();
    let mut first = None;
    for sentence in sentences(&reply) {
        if stale(&job) {
            break;
        }
        match voice.synthesize(sentence) {
            Ok(audio) => {
                first.get_or_insert(t1.elapsed());
                let _ = job.replies.send(ReplyAudio {
                    turn: job.turn,
                    samples: audio.samples,
                    sample_rate: audio.sample_rate,
                });
            }
            Err(e) => tracing::warn!(call = %job.call, turn = job.turn, error = %e, "TTS failed"),
        }
    }
    tracing::info!(call = %job.call, turn = job.turn, transcript = %transcript, reply = %reply, stt_ms = stt_time.as_millis() as u64, "turn answered");
    let _ = records.send(TurnRecord {
        call: job.call,
        turn: job.turn,
        transcript,
        reply,
        handed_over: job.handed_over,
        stt: stt_time,
        dialogue: dialogue_time,
        tts_first_audio: first.unwrap_or_default(),
    });
}
