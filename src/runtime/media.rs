//! The media side of calls: one tokio task per call drives its engine
//! `Call` (socket in, packets out on the call's own 20 ms send grid, which
//! is the pacer: `poll_timeout` wakes the task for each slot by the wall
//! clock) and exchanges work with the speech pool.
//!
//! Turn-taking lives here: at a pause the utterance so far is transcribed
//! early; if the dialogue judges it complete the turn ends at once (and
//! the transcript is reused), if clearly unfinished the hangover grows.

use super::speech::{CallShared, Heard, Job, SpeechOut, Submitter, TurnRecord, Work};
use aiagc_ari::client::AriClient;
use aiagc_ari::controller::MediaHost;
use aiagc_ari::ports::PortRange;
use aiagc_engine::{Call, CallConfig, CallEvent, Codec, EndpointConfig};
use aiagc_models::dialogue::{Action, Dialogue, TurnHint};
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long past the hangover a pause waits for the turn model's score
/// once the words had no opinion (a run takes ~20 ms; the margin covers a
/// busy pool).
const TURN_SCORE_WAIT: Duration = Duration::from_millis(200);

/// Longest wait for a pause's transcript once the turn has ended.
const AWAIT_TRANSCRIPT: Duration = Duration::from_secs(3);

/// Makes the dialogue of a new call.
pub type DialogueFactory = Arc<dyn Fn() -> Box<dyn Dialogue> + Send + Sync>;

/// Media settings.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Endpointing.
    pub endpoint: EndpointConfig,
    /// End the turn at a pause when the words are complete.
    pub semantic_endpointing: bool,
    /// Ask the turn model (Smart Turn) at pauses, if the workers have it.
    pub turn_model: bool,
    /// Probability from which the turn model's "complete" ends the turn.
    pub turn_threshold: f32,
    /// Longest silence to wait when the words or the model say the caller
    /// is not done.
    pub turn_ceiling: Duration,
    /// Silence after a reply before the dialogue gets `Silence`.
    pub no_input: Duration,
    /// Where per-call JSON-lines records go (none: no records).
    pub records_dir: Option<PathBuf>,
    /// Also write `<call>.in.wav` (caller, 16 kHz) and `<call>.out.wav`
    /// (agent, codec rate) there.
    pub record_audio: bool,
    /// Which RTP sources a call accepts (everything else is dropped and
    /// counted as a source violation).
    pub rtp_source: aiagc_engine::SourcePolicy,
    /// Echo cancellation and gating of our own voice.
    pub echo: aiagc_engine::EchoConfig,
    /// Play the filler when a reply has not started this long after the
    /// caller's turn ended (`None`: never).
    pub filler_after: Option<Duration>,
    /// What the filler says.
    pub filler_text: String,
    /// Where each finished call's document goes (none: nowhere).
    pub delivery: Option<crate::delivery::Delivery>,
    /// Outbound calls (Stasis argument `outbound`): who answered, and the
    /// message for a machine.
    pub outbound: super::outbound::OutboundConfig,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            endpoint: EndpointConfig::default(),
            semantic_endpointing: true,
            turn_model: true,
            turn_threshold: 0.5,
            turn_ceiling: Duration::from_millis(1500),
            no_input: Duration::from_secs(8),
            records_dir: None,
            record_audio: false,
            rtp_source: aiagc_engine::SourcePolicy::Strict,
            echo: aiagc_engine::EchoConfig::default(),
            filler_after: Some(Duration::from_millis(1000)),
            filler_text: "Einen Moment bitte.".into(),
            delivery: None,
            outbound: super::outbound::OutboundConfig::default(),
        }
    }
}

/// Who called and what they dialled, as Asterisk described the channel.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Party {
    /// Caller id number.
    pub number: String,
    /// Caller id name.
    pub name: String,
    /// Dialplan context the call came from.
    pub context: String,
    /// Extension dialled.
    pub exten: String,
    /// Stasis arguments (`outbound` for a call we placed).
    pub args: Vec<String>,
}

/// What a finished call leaves behind.
#[derive(Debug, Clone, Serialize)]
pub struct CallSummary {
    /// Call id.
    pub call: String,
    /// Its turns, in order.
    pub turns: Vec<TurnRecord>,
    /// When each barge-in was detected.
    #[serde(skip)]
    pub barge_ins: Vec<Instant>,
    /// Keys pressed.
    pub dtmf: Vec<String>,
    /// The last outcome ("booked", "transferred", …).
    pub outcome: Option<String>,
    /// How the call ended on our side: `hangup`, `transfer`, or `caller`.
    pub ended_by: String,
    /// RTP statistics.
    #[serde(skip)]
    pub rtp: aiagc_engine::CallStats,
    /// Fillers played because a reply was late.
    pub fillers: u32,
    /// Who called.
    pub party: Party,
    /// When media started.
    #[serde(skip)]
    pub started: std::time::SystemTime,
    /// When it ended.
    #[serde(skip)]
    pub ended: std::time::SystemTime,
    /// Files written for the call (record, audio of both directions).
    pub files: Vec<PathBuf>,
    /// On an outbound call: who answered (`HUMAN`, `MACHINE`, `NOTSURE`)
    /// and why (as Asterisk's `AMDCAUSE`).
    pub answered_by: Option<(String, String)>,
}

enum Command {
    Dtmf(String),
    Stop,
}

struct Running {
    commands: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
}

/// Media of all calls of this process.
pub struct EngineMedia {
    ports: PortRange,
    config: MediaConfig,
    speech: Submitter,
    dialogues: DialogueFactory,
    control: Option<AriClient>,
    summaries: Option<crossbeam_channel::Sender<CallSummary>>,
    pending: Mutex<HashMap<String, std::net::UdpSocket>>,
    running: Arc<Mutex<HashMap<String, Running>>>,
    parties: Mutex<HashMap<String, Party>>,
    seed: AtomicU64,
    metrics: Option<Arc<super::metrics::Metrics>>,
    /// The filler, synthesized once at the replies' level (samples, rate).
    filler: Option<Arc<(Vec<f32>, u32)>>,
    /// The message for answering machines, likewise.
    machine_message: Option<Arc<(Vec<f32>, u32)>>,
}

/// `text` in the German voice at the replies' level (`None`: not synthesized).
fn synthesize_once(text: &str, lufs: f64, what: &str) -> Option<Arc<(Vec<f32>, u32)>> {
    use aiagc_models::tts::Tts;
    match aiagc_models::tts::EspeakVoice::german().synthesize(text) {
        Ok(mut a) => {
            aiagc_models::level::normalize(&mut a.samples, a.sample_rate, lufs);
            Some(Arc::new((a.samples, a.sample_rate)))
        }
        Err(e) => {
            tracing::warn!(error = %e, "{what} not synthesized: none will play");
            None
        }
    }
}

impl EngineMedia {
    /// Records calls and turns in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<super::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Media host: sockets from `ports`, work to `speech`, a dialogue per
    /// call from `dialogues`; `control` carries out hangups and transfers;
    /// `summaries` receives each finished call.
    pub fn new(
        ports: PortRange,
        config: MediaConfig,
        speech: Submitter,
        dialogues: DialogueFactory,
        control: Option<AriClient>,
        summaries: Option<crossbeam_channel::Sender<CallSummary>>,
    ) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let filler = config
            .filler_after
            .and_then(|_| synthesize_once(&config.filler_text, speech.tts_level(), "filler"));
        let machine_message = (config.outbound.amd != super::outbound::AmdMode::Off
            && !config.outbound.machine_message.trim().is_empty())
        .then(|| {
            synthesize_once(
                &config.outbound.machine_message,
                speech.tts_level(),
                "machine message",
            )
        })
        .flatten();
        Self {
            ports,
            config,
            speech,
            dialogues,
            control,
            summaries,
            pending: Mutex::default(),
            running: Arc::default(),
            parties: Mutex::default(),
            seed: AtomicU64::new(seed),
            metrics: None,
            filler,
            machine_message,
        }
    }

    /// Calls with a socket (bound or running).
    pub fn sockets(&self) -> usize {
        self.pending.lock().map(|m| m.len()).unwrap_or(0)
            + self.running.lock().map(|m| m.len()).unwrap_or(0)
    }
}

impl MediaHost for EngineMedia {
    fn open(&self, call: &str) -> Result<SocketAddr, String> {
        let socket = self.ports.bind().map_err(|e| e.to_string())?;
        let addr = socket.local_addr().map_err(|e| e.to_string())?;
        self.pending
            .lock()
            .map_err(|_| "poisoned".to_owned())?
            .insert(call.to_owned(), socket);
        Ok(addr)
    }

    fn start(&self, call: &str, peer: SocketAddr, codec: Codec) {
        let Some(std_socket) = self.pending.lock().ok().and_then(|mut m| m.remove(call)) else {
            return;
        };
        let socket = match tokio::net::UdpSocket::from_std(std_socket) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(call = %call, error = %e, "RTP socket unusable");
                return;
            }
        };
        let mut config = CallConfig::new(
            codec,
            self.seed
                .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed),
        );
        config.peer = Some(peer);
        config.source_policy = self.config.rtp_source;
        config.echo = self.config.echo;
        config.endpoint = self.config.endpoint;
        if !self.config.semantic_endpointing {
            config.endpoint.pause = None;
        }
        let (commands, rx) = mpsc::unbounded_channel();
        let party = self
            .parties
            .lock()
            .ok()
            .and_then(|mut p| p.remove(call))
            .unwrap_or_default();
        let task = CallTask {
            id: call.to_owned(),
            party,
            config: self.config.clone(),
            speech: self.speech.clone(),
            control: self.control.clone(),
            summaries: self.summaries.clone(),
            running: self.running.clone(),
            metrics: self.metrics.clone(),
            filler: self.filler.clone(),
            machine_message: self.machine_message.clone(),
        };
        if let Some(m) = &self.metrics {
            m.call_started();
        }
        let dialogue = (self.dialogues)();
        let handle = tokio::spawn(task.run(socket, config, dialogue, rx));
        if let Ok(mut running) = self.running.lock() {
            running.insert(
                call.to_owned(),
                Running {
                    commands,
                    task: handle,
                },
            );
        }
    }

    fn close(&self, call: &str) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(call);
        }
        if let Ok(mut p) = self.parties.lock() {
            p.remove(call);
        }
        // The task writes its record and removes itself; abort only if it
        // cannot be told.
        let running = self.running.lock().ok().and_then(|m| {
            m.get(call).map(|r| {
                (
                    r.commands.send(Command::Stop).is_ok(),
                    r.task.abort_handle(),
                )
            })
        });
        if let Some((false, abort)) = running {
            abort.abort();
            if let Ok(mut m) = self.running.lock() {
                m.remove(call);
            }
        }
    }

    fn describe(&self, channel: &aiagc_ari::model::Channel, args: &[String]) {
        if let Ok(mut p) = self.parties.lock() {
            p.insert(
                channel.id.clone(),
                Party {
                    number: channel.caller.number.clone(),
                    name: channel.caller.name.clone(),
                    context: channel.dialplan.context.clone(),
                    exten: channel.dialplan.exten.clone(),
                    args: args.to_vec(),
                },
            );
        }
    }

    fn dtmf(&self, call: &str, digit: &str) {
        if let Some(r) = self.running.lock().ok().as_ref().and_then(|m| m.get(call)) {
            let _ = r.commands.send(Command::Dtmf(digit.to_owned()));
        }
    }
}

struct CallTask {
    id: String,
    party: Party,
    config: MediaConfig,
    speech: Submitter,
    control: Option<AriClient>,
    summaries: Option<crossbeam_channel::Sender<CallSummary>>,
    running: Arc<Mutex<HashMap<String, Running>>>,
    metrics: Option<Arc<super::metrics::Metrics>>,
    filler: Option<Arc<(Vec<f32>, u32)>>,
    machine_message: Option<Arc<(Vec<f32>, u32)>>,
}

/// Per-call turn-taking state.
struct Turns {
    /// Transcripts made at pauses: id → text and STT time.
    partials: HashMap<u64, (Heard, Duration)>,
    /// Pauses being transcribed.
    in_flight: Vec<u64>,
    /// An utterance waiting for its pause's transcript (pause, turn,
    /// audio, hand-over, ended by the model).
    awaiting: Option<(u64, u64, Vec<f32>, Instant, bool)>,
    /// Silences (by first pause) ended early by the words.
    ended_by_hint: Vec<u64>,
    /// Silences ended early by the turn model.
    ended_by_model: Vec<u64>,
    /// Silences the words call unfinished (the model is not followed there).
    unfinished: Vec<u64>,
    /// Action to carry out once the reply has played.
    pending_action: Option<Action>,
    /// Turn whose reply is playing.
    playing: Option<u64>,
    /// When the first packet of a turn's reply was sent.
    first_packet: Option<(u64, Instant)>,
    /// When the caller's speech of a turn ended (as played out).
    speech_end: Option<(u64, Instant)>,
    /// The reply due, for the filler.
    watch: super::deadair::ReplyWatch,
    silence_deadline: Option<Instant>,
    /// A pause to hold open while its words are transcribed.
    hold: Option<u64>,
    /// The caller's speech drives turns (not while an outbound call's
    /// start decides who answered, nor while a machine gets its message).
    listening: bool,
    summary: CallSummary,
}

impl Turns {
    /// Marks the reply that is playing as interrupted.
    fn interrupt(&mut self) {
        if let Some(turn) = self.playing.take() {
            if let Some(r) = self.summary.turns.iter_mut().rev().find(|r| r.turn == turn) {
                r.interrupted = true;
            }
        }
    }
}

impl CallTask {
    fn submit(&self, shared: &Arc<CallShared>, turn: u64, work: Work, now: Instant) -> bool {
        self.speech
            .submit(Job {
                call: shared.clone(),
                turn,
                work,
                handed_over: now,
            })
            .is_ok()
    }

    /// Starts a new turn (cancelling the previous one's pending work).
    fn next_turn(shared: &CallShared) -> u64 {
        shared.current.fetch_add(1, Ordering::SeqCst) + 1
    }

    async fn run(
        self,
        socket: tokio::net::UdpSocket,
        config: CallConfig,
        dialogue: Box<dyn Dialogue>,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        let id = self.id.clone();
        let mut call = match Call::new(config, Instant::now()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(call = %id, error = %e, "media setup failed");
                return;
            }
        };
        let (out_tx, mut out) = mpsc::unbounded_channel::<SpeechOut>();
        let shared = Arc::new(CallShared {
            id: id.clone(),
            current: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            latest_pause: AtomicU64::new(0),
            latest_silence: AtomicU64::new(0),
            answering: AtomicU64::new(0),
            dialogue: Mutex::new(dialogue),
            out: out_tx,
        });
        // Weak: the dialogue lives in `shared`.
        let weak = Arc::downgrade(&shared);
        let context = aiagc_models::dialogue::CallContext {
            call: id.clone(),
            caller: self.party.number.clone(),
            cancelled: Arc::new(move || {
                weak.upgrade().is_none_or(|s| {
                    s.closed.load(Ordering::SeqCst)
                        || s.current.load(Ordering::SeqCst) != s.answering.load(Ordering::SeqCst)
                })
            }),
        };
        if let Ok(mut d) = shared.dialogue.lock() {
            d.attach(context);
        }
        let mut t = Turns {
            partials: HashMap::new(),
            in_flight: Vec::new(),
            awaiting: None,
            ended_by_hint: Vec::new(),
            ended_by_model: Vec::new(),
            unfinished: Vec::new(),
            pending_action: None,
            playing: None,
            first_packet: None,
            speech_end: None,
            watch: super::deadair::ReplyWatch::new(
                // No filler: a deadline that never comes in a call's life.
                self.config
                    .filler_after
                    .unwrap_or(Duration::from_secs(365 * 86400)),
            ),
            silence_deadline: None,
            hold: None,
            listening: true,
            summary: CallSummary {
                call: id.clone(),
                turns: Vec::new(),
                barge_ins: Vec::new(),
                dtmf: Vec::new(),
                outcome: None,
                ended_by: "caller".into(),
                rtp: Default::default(),
                fillers: 0,
                party: self.party.clone(),
                started: std::time::SystemTime::now(),
                ended: std::time::SystemTime::now(),
                files: Vec::new(),
                answered_by: None,
            },
        };
        let mut recorder = match (&self.config.records_dir, self.config.record_audio) {
            (Some(dir), true) => Recorder::create(dir, &id, call.codec().pcm_rate())
                .map_err(|e| tracing::warn!(call = %id, error = %e, "audio recording off"))
                .ok(),
            _ => None,
        };
        if let (Some(dir), Some(_)) = (&self.config.records_dir, &recorder) {
            let name = file_name(&id);
            t.summary.files.push(dir.join(format!("{name}.in.wav")));
            t.summary.files.push(dir.join(format!("{name}.out.wav")));
        }
        // A call we placed: the callee speaks first, and may be a machine.
        let answered = Instant::now();
        let mut outbound = (self.party.args.first().map(String::as_str) == Some("outbound")
            && self.config.outbound.amd != super::outbound::AmdMode::Off)
            .then(|| {
                super::outbound::Outbound::new(
                    self.config.outbound.clone(),
                    self.party.args.get(1).map(String::as_str),
                )
            });
        if outbound.is_some() {
            t.listening = false;
        } else {
            let first = Self::next_turn(&shared);
            self.submit(&shared, first, Work::Start, Instant::now());
        }
        let mut buf = vec![0u8; aiagc_engine::handoff::MAX_DATAGRAM];
        loop {
            let played = call.stats().frames_played;
            let mut deadline = call.poll_timeout();
            if let Some(s) = t.silence_deadline {
                deadline = deadline.min(s);
            }
            if let Some(f) = t.watch.deadline() {
                deadline = deadline.min(f);
            }
            tokio::select! {
                r = socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => call.receive(from, &buf[..n], Instant::now()),
                    Err(e) => tracing::debug!(call = %id, error = %e, "RTP receive error"),
                },
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                    let now = Instant::now();
                    call.handle_timeout(now);
                    if t.silence_deadline.is_some_and(|s| s <= now) {
                        t.silence_deadline = None;
                        let turn = Self::next_turn(&shared);
                        self.submit(&shared, turn, Work::Silence, now);
                    }
                    if let Some(turn) = t.watch.poll(now) {
                        self.fill(&mut call, &shared, &mut t, turn);
                    }
                    // A pause transcript that never came (its job was
                    // rejected or dropped): transcribe the utterance itself.
                    if t.awaiting.as_ref().is_some_and(|a| now.saturating_duration_since(a.3) > AWAIT_TRANSCRIPT) {
                        if let Some((pause, turn, audio, at, by_model)) = t.awaiting.take() {
                            tracing::warn!(call = %id, pause, "pause transcript missing: transcribing the utterance");
                            t.in_flight.retain(|p| *p != pause);
                            self.submit_utterance(&shared, turn, audio, None, (false, by_model), at);
                        }
                    }
                }
                Some(o) = out.recv() => self.on_speech(o, &mut call, &shared, &mut t),
                c = commands.recv() => match c {
                    Some(Command::Dtmf(d)) => {
                        // A key interrupts the prompt, like speech does.
                        if call.is_speaking() {
                            t.interrupt();
                        }
                        call.stop_speaking();
                        t.pending_action = None;
                        t.silence_deadline = None;
                        t.summary.dtmf.push(d.clone());
                        tracing::info!(call = %id, digit = %d, "DTMF");
                        let turn = Self::next_turn(&shared);
                        t.watch.handed_over(turn, Instant::now());
                        self.submit(&shared, turn, Work::Dtmf(d), Instant::now());
                    }
                    Some(Command::Stop) | None => break,
                },
            }
            let now = Instant::now();
            if let Some(r) = recorder.as_mut() {
                if call.stats().frames_played > played && r.caller(call.last_frame()).is_err() {
                    recorder = None;
                }
            }
            if let Some(ob) = outbound.as_mut() {
                let elapsed = now.saturating_duration_since(answered);
                if call.stats().frames_played > played {
                    ob.frame(call.last_frame(), elapsed);
                }
                let step = ob.poll(elapsed);
                if step != super::outbound::Step::Wait {
                    self.outbound_decided(ob, step, &mut call, &shared, &mut t, now);
                    outbound = None;
                }
            }
            while let Some(tx) = call.poll_transmit(now) {
                if let Some(dest) = tx.destination {
                    let _ = socket.try_send_to(tx.data, dest);
                }
                if let Some(r) = recorder.as_mut() {
                    if r.agent(call.last_sent_frame()).is_err() {
                        recorder = None;
                    }
                }
            }
            self.events(&mut call, &shared, &mut t, now);
        }
        shared.closed.store(true, Ordering::SeqCst);
        if let Some(Err(e)) = recorder.map(Recorder::finish) {
            tracing::warn!(call = %id, error = %e, "audio recording incomplete");
        }
        t.summary.rtp = call.stats();
        t.summary.ended = std::time::SystemTime::now();
        self.finish(t.summary);
    }

    /// `played`: the call's media time now (to date the caller's speech end).
    /// Handles the call's pending events; a pause whose words are being
    /// transcribed holds the turn open until they are known.
    fn events(&self, call: &mut Call, shared: &Arc<CallShared>, t: &mut Turns, now: Instant) {
        while let Some(event) = call.poll_event() {
            self.on_event(event, call.media_time(), shared, t, now);
        }
        if let Some(pause) = t.hold.take() {
            call.extend_turn(pause, self.hold());
        }
    }

    fn on_event(
        &self,
        event: CallEvent,
        played: Duration,
        shared: &Arc<CallShared>,
        t: &mut Turns,
        now: Instant,
    ) {
        let id = &self.id;
        if !t.listening
            && matches!(
                event,
                CallEvent::SpeechStarted { .. }
                    | CallEvent::SpeechPaused(_)
                    | CallEvent::SpeechEnded(_)
                    | CallEvent::BargeIn { .. }
            )
        {
            return;
        }
        match event {
            CallEvent::SpeechStarted { .. } => t.silence_deadline = None,
            CallEvent::SpeechPaused(p) => {
                shared.latest_pause.store(p.id, Ordering::SeqCst);
                shared.latest_silence.store(p.first, Ordering::SeqCst);
                tracing::debug!(call = %id, pause = p.id, "pause");
                let turn = shared.current.load(Ordering::SeqCst);
                // The turn model hears the pause as it is so far.
                let silence = (p
                    .silence
                    .saturating_sub(self.config.endpoint.tail)
                    .as_millis()
                    * 16) as usize;
                if p.id == p.first {
                    let work = Work::Pause {
                        id: p.id,
                        audio: p.samples,
                        silence: if self.config.turn_model { silence } else { 0 },
                    };
                    if self.submit(shared, turn, work, now) {
                        t.in_flight.push(p.id);
                        // The reply waits for these words anyway, and they
                        // may say the caller is not done: the hangover does
                        // not end the turn before they are in (a slow worker
                        // otherwise cuts "am … Dienstag" at "am").
                        t.hold = Some(p.id);
                    }
                } else if self.config.turn_model
                    && !t.unfinished.contains(&p.first)
                    && !t.in_flight.contains(&p.first)
                {
                    let mut audio = p.samples;
                    audio.resize(audio.len() + silence, 0.0);
                    let work = Work::TurnCheck {
                        first: p.first,
                        id: p.id,
                        audio,
                    };
                    self.submit(shared, turn, work, now);
                }
            }
            CallEvent::SpeechEnded(u) => {
                tracing::debug!(call = %id, pause = ?u.pause, "speech ended");
                let turn = Self::next_turn(shared);
                // The caller stopped speaking this much media time ago.
                let silence = played.saturating_sub(u.end.elapsed);
                let fell_silent = now.checked_sub(silence).unwrap_or(now);
                t.speech_end = Some((turn, fell_silent));
                // The caller's silence counts from their last word, however
                // long the turn was held open after it.
                t.watch.handed_over(turn, fell_silent);
                t.pending_action = None;
                let by_hint = u.pause.is_some_and(|p| t.ended_by_hint.contains(&p));
                let by_model = u.pause.is_some_and(|p| t.ended_by_model.contains(&p));
                // Decisions about earlier silences are done with.
                t.ended_by_hint.clear();
                t.ended_by_model.clear();
                t.unfinished.clear();
                let reuse = u.pause.and_then(|p| t.partials.remove(&p));
                let waiting = u.pause.filter(|p| t.in_flight.contains(p));
                t.partials.clear();
                match (reuse, waiting) {
                    (Some(text), _) => {
                        self.submit_utterance(
                            shared,
                            turn,
                            u.samples,
                            Some(text),
                            (by_hint, by_model),
                            now,
                        );
                    }
                    (None, Some(p)) => t.awaiting = Some((p, turn, u.samples, now, by_model)),
                    (None, None) => {
                        self.submit_utterance(shared, turn, u.samples, None, (false, by_model), now)
                    }
                }
            }
            CallEvent::BargeIn { .. } => {
                // Pending work of the interrupted turn is stale now.
                Self::next_turn(shared);
                t.pending_action = None;
                t.summary.barge_ins.push(now);
                t.watch.cancel();
                t.interrupt();
                tracing::info!(call = %id, "barge-in");
            }
            CallEvent::ReplyStarted { at } => {
                if let Some(turn) = t.playing {
                    if t.first_packet.is_none_or(|(f, _)| f != turn) {
                        t.first_packet = Some((turn, at));
                        let end = t.speech_end.filter(|(s, _)| *s == turn);
                        if let Some(r) = t.summary.turns.iter_mut().rev().find(|r| r.turn == turn) {
                            date_reply(r, at, end);
                        }
                    }
                }
            }
            CallEvent::PlayoutFinished => {
                t.playing = None;
                match t.pending_action.take() {
                    // Tones sent, the call goes on: listen as after any reply.
                    Some(Action::SendDtmf(d)) => {
                        self.act(Action::SendDtmf(d), &mut t.summary);
                        t.silence_deadline = Some(now + self.config.no_input);
                    }
                    Some(action) => self.act(action, &mut t.summary),
                    None => t.silence_deadline = Some(now + self.config.no_input),
                }
            }
            CallEvent::InputRejected { kind, count } => {
                tracing::warn!(call = %id, ?kind, count, "RTP input rejected")
            }
        }
    }

    /// Extra silence beyond the hangover up to the ceiling.
    /// How long beyond the hangover a pause waits for its words: the
    /// extension, but never past the moment the filler is due.
    fn hold(&self) -> Duration {
        let extension = self.extension();
        match self.config.filler_after {
            Some(f) => extension.min(f.saturating_sub(self.config.endpoint.hangover)),
            None => extension,
        }
    }

    fn extension(&self) -> Duration {
        self.config
            .turn_ceiling
            .saturating_sub(self.config.endpoint.hangover)
    }

    fn submit_utterance(
        &self,
        shared: &Arc<CallShared>,
        turn: u64,
        audio: Vec<f32>,
        transcript: Option<(Heard, Duration)>,
        (ended_by_hint, ended_by_model): (bool, bool),
        now: Instant,
    ) {
        self.submit(
            shared,
            turn,
            Work::Utterance {
                audio,
                transcript: transcript.map(Box::new),
                ended_by_hint,
                ended_by_model,
            },
            now,
        );
    }

    fn on_speech(&self, o: SpeechOut, call: &mut Call, shared: &Arc<CallShared>, t: &mut Turns) {
        let now = Instant::now();
        match o {
            SpeechOut::Partial {
                pause,
                transcript,
                hint,
                stt,
            } => {
                tracing::debug!(call = %self.id, pause, ?hint, stt_ms = stt.as_millis() as u64, "pause transcript");
                t.in_flight.retain(|p| *p != pause);
                if let Some((p, turn, audio, at, by_model)) = t.awaiting.take() {
                    if p == pause {
                        // The turn already ended (model or hangover): answer with this transcript.
                        let text = (!transcript.text.is_empty()).then_some((transcript, stt));
                        self.submit_utterance(shared, turn, audio, text, (false, by_model), at);
                        return;
                    }
                    t.awaiting = Some((p, turn, audio, at, by_model));
                }
                t.partials.insert(pause, (transcript, stt));
                match hint {
                    TurnHint::Complete => {
                        t.ended_by_hint.push(pause);
                        call.end_turn(pause);
                    }
                    TurnHint::Unfinished => {
                        t.unfinished.push(pause);
                        call.extend_turn(pause, self.extension());
                    }
                    // No opinion: back to the plain hangover, or briefly
                    // beyond it for the turn model's score that follows.
                    TurnHint::Unknown => call.extend_turn(
                        pause,
                        if self.config.turn_model {
                            TURN_SCORE_WAIT
                        } else {
                            Duration::ZERO
                        },
                    ),
                }
                self.events(call, shared, t, now);
            }
            SpeechOut::TurnScore {
                first,
                pause,
                probability,
            } => {
                tracing::debug!(call = %self.id, first, pause, probability, "turn model");
                // The words decide where they have an opinion.
                if t.unfinished.contains(&first) || t.ended_by_hint.contains(&first) {
                    return;
                }
                if probability >= self.config.turn_threshold {
                    t.ended_by_model.push(first);
                    call.end_turn(pause);
                } else {
                    call.extend_turn(pause, self.extension());
                }
                self.events(call, shared, t, now);
            }
            SpeechOut::Audio(reply) => {
                t.watch.replied(reply.turn);
                if reply.turn == shared.current.load(Ordering::SeqCst) {
                    // Behind the filler, the reply's first packet leaves
                    // when the filler's queued audio has played.
                    let behind_filler = t.playing.is_none() && call.is_speaking();
                    let starts = Instant::now() + call.queued_audio();
                    match call.speak(&reply.samples, reply.sample_rate) {
                        Ok(()) => {
                            t.playing = Some(reply.turn);
                            if behind_filler {
                                t.first_packet = Some((reply.turn, starts));
                                let end = t.speech_end.filter(|(s, _)| *s == reply.turn);
                                if let Some(r) = t
                                    .summary
                                    .turns
                                    .iter_mut()
                                    .rev()
                                    .find(|r| r.turn == reply.turn)
                                {
                                    date_reply(r, starts, end);
                                }
                            }
                        }
                        Err(e) => tracing::warn!(call = %self.id, error = %e, "reply not queued"),
                    }
                }
            }
            SpeechOut::Answered(record, action) => {
                let current = record.turn == shared.current.load(Ordering::SeqCst);
                if let Some(o) = &record.outcome {
                    t.summary.outcome = Some(o.clone());
                }
                let mut record = *record;
                // The reply may already be on the wire, or start on the next
                // tick (then `ReplyStarted` dates it).
                if let Some((turn, at)) = t.first_packet.filter(|(f, _)| *f == record.turn) {
                    date_reply(&mut record, at, t.speech_end.filter(|(s, _)| *s == turn));
                }
                t.summary.turns.push(record);
                if let (Some(action), true) = (action, current) {
                    if call.is_speaking() {
                        t.pending_action = Some(action);
                    } else {
                        self.act(action, &mut t.summary);
                    }
                }
            }
        }
    }

    /// Plays the filler for `turn` if it is still the current turn and
    /// nothing is playing.
    fn fill(&self, call: &mut Call, shared: &CallShared, t: &mut Turns, turn: u64) {
        let Some(filler) = &self.filler else { return };
        if turn != shared.current.load(Ordering::SeqCst) || call.is_speaking() {
            return;
        }
        match call.speak(&filler.0, filler.1) {
            Ok(()) => {
                t.summary.fillers += 1;
                tracing::info!(call = %self.id, turn, "reply late: filler played");
            }
            Err(e) => tracing::warn!(call = %self.id, error = %e, "filler not queued"),
        }
    }

    /// The outbound start is over: talk to the person, or leave the message
    /// on the machine and hang up.
    fn outbound_decided(
        &self,
        ob: &super::outbound::Outbound,
        step: super::outbound::Step,
        call: &mut Call,
        shared: &Arc<CallShared>,
        t: &mut Turns,
        now: Instant,
    ) {
        if let Some(d) = ob.decision() {
            tracing::info!(call = %self.id, answered_by = d.answered.as_str(), cause = %d.cause, at_ms = d.at.as_millis() as u64, "outbound call answered");
            t.summary.answered_by = Some((d.answered.as_str().to_owned(), d.cause.clone()));
        }
        match step {
            super::outbound::Step::LeaveMessage => {
                t.summary.outcome = Some("message_left".into());
                match &self.machine_message {
                    Some(m) if call.speak(&m.0, m.1).is_ok() => {
                        tracing::info!(call = %self.id, "message left after the beep");
                        t.pending_action = Some(Action::Hangup);
                    }
                    _ => {
                        t.summary.outcome = Some("machine".into());
                        self.act(Action::Hangup, &mut t.summary);
                    }
                }
            }
            _ => {
                t.listening = true;
                let first = Self::next_turn(shared);
                self.submit(shared, first, Work::Start, now);
            }
        }
    }

    /// Hangs up or transfers the caller through ARI (off the media path).
    fn act(&self, action: Action, summary: &mut CallSummary) {
        let id = self.id.clone();
        tracing::info!(call = %id, ?action, "call action");
        match &action {
            Action::Hangup => summary.ended_by = "hangup".into(),
            Action::Transfer { .. } => summary.ended_by = "transfer".into(),
            Action::SendDtmf(_) => {}
        }
        let Some(client) = self.control.clone() else {
            return;
        };
        tokio::spawn(async move {
            let result = match action {
                Action::Hangup => client.hangup(&id, "normal").await,
                Action::Transfer {
                    context,
                    extension,
                    priority,
                } => {
                    client
                        .continue_in_dialplan(&id, &context, &extension, priority as i64)
                        .await
                }
                Action::SendDtmf(digits) => client.send_dtmf(&id, &digits).await,
            };
            if let Err(e) = result {
                if !e.is_gone() {
                    tracing::warn!(call = %id, error = %e, "call action failed");
                }
            }
        });
    }

    fn finish(&self, mut summary: CallSummary) {
        if let Some(dir) = &self.config.records_dir {
            match write_record(dir, &summary) {
                Ok(path) => summary.files.insert(0, path),
                Err(e) => tracing::warn!(call = %self.id, error = %e, "call record not written"),
            }
        }
        if let Some(delivery) = &self.config.delivery {
            let (key, body) = crate::delivery::document::build(&summary);
            tracing::info!(call = %self.id, key = %key, "post-call document submitted");
            delivery.submit(key, body);
        }
        tracing::info!(call = %self.id, turns = summary.turns.len(), outcome = ?summary.outcome, ended_by = %summary.ended_by, "call media ended");
        if let Some(m) = &self.metrics {
            m.call_ended(&summary);
        }
        if let Some(s) = &self.summaries {
            let _ = s.send(summary);
        }
        if let Ok(mut m) = self.running.lock() {
            m.remove(&self.id);
        }
    }
}

/// Both directions of a call as WAV files, written as the call goes.
struct Recorder {
    inbound: hound::WavWriter<std::io::BufWriter<std::fs::File>>,
    outbound: hound::WavWriter<std::io::BufWriter<std::fs::File>>,
    out_rate: u32,
    /// The caller's first frame has been written.
    caller_started: bool,
    /// Samples written to the agent's file.
    out_samples: u64,
}

impl Recorder {
    fn create(dir: &std::path::Path, call: &str, out_rate: u32) -> Result<Self, hound::Error> {
        std::fs::create_dir_all(dir)?;
        let spec = |rate| hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let name = file_name(call);
        Ok(Self {
            inbound: hound::WavWriter::create(dir.join(format!("{name}.in.wav")), spec(16000))?,
            outbound: hound::WavWriter::create(
                dir.join(format!("{name}.out.wav")),
                spec(out_rate),
            )?,
            out_rate,
            caller_started: false,
            out_samples: 0,
        })
    }

    fn caller(&mut self, frame: &[f32]) -> Result<(), hound::Error> {
        // The caller's stream starts at their first packet (a real Asterisk
        // sends none while they are silent, e.g. during the greeting): the
        // silence before it is written, so both files share one timeline.
        if !self.caller_started {
            let before = self.out_samples * 16000 / self.out_rate as u64;
            for _ in 0..before {
                self.inbound.write_sample(0i16)?;
            }
            self.caller_started = true;
        }
        for &s in frame {
            self.inbound
                .write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)?;
        }
        Ok(())
    }

    fn agent(&mut self, frame: &[i16]) -> Result<(), hound::Error> {
        self.out_samples += frame.len() as u64;
        for &s in frame {
            self.outbound.write_sample(s)?;
        }
        Ok(())
    }

    fn finish(self) -> Result<(), hound::Error> {
        self.inbound.finalize()?;
        self.outbound.finalize()
    }
}

/// A call id as a file name.
fn file_name(call: &str) -> String {
    call.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Dates a turn's first reply packet (`at`) from its hand-over and from the
/// caller's speech end.
fn date_reply(record: &mut TurnRecord, at: Instant, speech_end: Option<(u64, Instant)>) {
    record.to_first_packet = Some(at.saturating_duration_since(record.handed_over));
    if let Some((_, end)) = speech_end {
        record.from_speech_end = Some(at.saturating_duration_since(end));
    }
}

/// `DIR/<call>.jsonl`: one line per turn, then one for the call.
fn write_record(dir: &std::path::Path, s: &CallSummary) -> std::io::Result<PathBuf> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{}.jsonl", file_name(&s.call)));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
    for turn in &s.turns {
        writeln!(f, "{}", serde_json::json!({"type": "turn", "turn": turn}))?;
    }
    writeln!(
        f,
        "{}",
        serde_json::json!({"type": "call", "call": s.call, "outcome": s.outcome, "ended_by": s.ended_by,
            "barge_ins": s.barge_ins.len(), "dtmf": s.dtmf, "rtp": {
                "received": s.rtp.received, "lost": s.rtp.lost, "late": s.rtp.late,
                "concealed_frames": s.rtp.concealed_frames, "sent": s.rtp.sent,
                "jitter_ms": s.rtp.jitter.as_secs_f64() * 1000.0}})
    )?;
    f.flush()?;
    Ok(path)
}
