//! The media side of calls: one tokio task per call drives its engine
//! `Call` (its edge in — the RTP socket or the media WebSocket, see
//! [`super::edge`] — and frames out on the call's own 20 ms send grid,
//! which is the pacer: `poll_timeout` wakes the task for each slot by the
//! wall clock) and exchanges work with the speech pool.
//!
//! The task decides nothing about turns: its [`Conversation`] does, and the
//! task carries out what it says (jobs to the pool, audio into the call,
//! actions through ARI) — a thin driver of two sans-IO state machines.

use super::conversation::{BargeIn, Conversation, ConversationConfig, Media, Output};
pub use super::conversation::{CallSummary, Party};
use super::edge::{Edge, STREAM_LEAD};
use super::speech::{CallShared, Job, SpeechOut, Submitter};
use aiagc_ari::client::AriClient;
use aiagc_ari::controller::MediaHost;
use aiagc_ari::ports::PortRange;
use aiagc_dialogue::{Action, Dialogue};
use aiagc_engine::{BargeInPolicy, Call, CallConfig, Codec, EndpointConfig, Transport};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

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
    /// What caller sound over a reply does.
    pub barge_in: BargeIn,
    /// Turn new callers away while the speech workers are this far behind
    /// the callers they have (an urgent job this late; `None`: never, the
    /// default here; `aiagc serve` sets `[serve] admit_behind_ms`).
    pub admit_behind: Option<Duration>,
    /// What a caller turned away hears (empty: hung up with no message).
    pub busy_message: String,
}

impl MediaConfig {
    /// The turn policy's part of it.
    pub fn conversation(&self) -> ConversationConfig {
        ConversationConfig {
            hangover: self.endpoint.hangover,
            tail: self.endpoint.tail,
            pre_roll: self.endpoint.pre_roll,
            turn_model: self.turn_model,
            turn_threshold: self.turn_threshold,
            turn_ceiling: self.turn_ceiling,
            no_input: self.no_input,
            filler_after: self.filler_after,
            barge_in: self.barge_in,
        }
    }
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
            barge_in: BargeIn::default(),
            admit_behind: None,
            busy_message: "Alle unsere Leitungen sind gerade belegt. Bitte rufen Sie in ein paar Minuten wieder an. Auf Wiederhören.".into(),
        }
    }
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
    /// The busy message, likewise.
    busy_message: Option<Arc<(Vec<f32>, u32)>>,
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
        let busy_message = (!config.busy_message.trim().is_empty())
            .then(|| synthesize_once(&config.busy_message, speech.tts_level(), "busy message"))
            .flatten();
        Self {
            busy_message,
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

    /// The engine's settings for a new call in `codec`.
    fn call_config(&self, codec: Codec) -> CallConfig {
        let mut config = CallConfig::new(
            codec,
            self.seed
                .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed),
        );
        config.source_policy = self.config.rtp_source;
        config.echo = self.config.echo;
        config.endpoint = self.config.endpoint;
        config.barge_in = match self.config.barge_in {
            BargeIn::Stop => BargeInPolicy::Stop,
            BargeIn::Resume { .. } => BargeInPolicy::Pause,
        };
        if !self.config.semantic_endpointing {
            config.endpoint.pause = None;
        }
        config
    }

    /// Runs `call`'s media task over `edge`.
    fn spawn(&self, call: &str, edge: Edge, config: CallConfig) {
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
            busy_message: self.busy_message.clone(),
        };
        if let Some(m) = &self.metrics {
            m.call_started();
        }
        let dialogue = (self.dialogues)();
        let handle = tokio::spawn(task.run(edge, config, dialogue, rx));
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
        let mut config = self.call_config(codec);
        config.peer = Some(peer);
        self.spawn(call, Edge::Rtp(socket), config);
    }

    fn start_stream(
        &self,
        call: &str,
        socket: aiagc_ari::media_ws::MediaSocket,
        codec: Codec,
    ) -> Result<(), String> {
        let mut config = self.call_config(codec);
        config.transport = Transport::Stream { lead: STREAM_LEAD };
        self.spawn(call, Edge::stream(socket), config);
        Ok(())
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

    fn behind(&self) -> Option<String> {
        let limit = self.config.admit_behind?;
        let behind = self.speech.behind();
        (behind > limit).then(|| format!("speech workers {} ms behind", behind.as_millis()))
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
    busy_message: Option<Arc<(Vec<f32>, u32)>>,
}

/// What the engine's playout is doing, for the conversation.
fn media(call: &Call) -> Media {
    Media {
        speaking: call.is_speaking(),
        paused: call.is_paused(),
        queued: call.queued_audio(),
        held: call.held_audio(),
        time: call.media_time(),
    }
}

impl CallTask {
    async fn run(
        self,
        mut edge: Edge,
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
        let shared = Arc::new(CallShared::new(id.clone(), dialogue, out_tx));
        // Weak: the dialogue lives in `shared`.
        let weak = Arc::downgrade(&shared);
        let context = aiagc_dialogue::CallContext {
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
        let mut conv = Conversation::new(
            self.config.conversation(),
            &id,
            self.party.clone(),
            self.filler.is_some(),
            self.machine_message.is_some(),
        );
        let mut recorder = match (&self.config.records_dir, self.config.record_audio) {
            (Some(dir), true) => Recorder::create(dir, &id, call.codec().pcm_rate())
                .map_err(|e| tracing::warn!(call = %id, error = %e, "audio recording off"))
                .ok(),
            _ => None,
        };
        let mut files = Vec::new();
        if let (Some(dir), Some(_)) = (&self.config.records_dir, &recorder) {
            let name = file_name(&id);
            files.push(dir.join(format!("{name}.in.wav")));
            files.push(dir.join(format!("{name}.out.wav")));
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
        if self.party.args.first().map(String::as_str) == Some(aiagc_ari::controller::BUSY_ARG) {
            outbound = None;
            conv.turn_away();
        } else if outbound.is_some() {
            conv.wait_for_answer();
        } else {
            conv.start(Instant::now());
        }
        self.settle(&mut conv, &mut call, &shared, Instant::now());
        let mut buf = vec![0u8; aiagc_engine::handoff::MAX_DATAGRAM];
        loop {
            let played = call.stats().frames_played;
            let mut deadline = call.poll_timeout();
            if edge.holding() {
                deadline = deadline.max(Instant::now() + aiagc_engine::FRAME);
            }
            if let Some(d) = conv.poll_timeout() {
                deadline = deadline.min(d);
            }
            tokio::select! {
                input = edge.recv(&mut buf) => edge.take(input, &buf, &mut call, &id, Instant::now()),
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => {
                    let now = Instant::now();
                    call.handle_timeout(now);
                    conv.handle_timeout(media(&call), now);
                }
                Some(o) = out.recv() => conv.handle_speech(o, media(&call), Instant::now()),
                c = commands.recv() => match c {
                    Some(Command::Dtmf(d)) => {
                        tracing::info!(call = %id, digit = %d, "DTMF");
                        conv.handle_dtmf(&d, media(&call), Instant::now());
                    }
                    Some(Command::Stop) | None => break,
                },
            }
            let now = Instant::now();
            self.settle(&mut conv, &mut call, &shared, now);
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
                    if let Some(d) = ob.decision() {
                        tracing::info!(call = %id, answered_by = d.answered.as_str(), cause = %d.cause, at_ms = d.at.as_millis() as u64, "outbound call answered");
                        conv.answered_by(d.answered.as_str(), &d.cause);
                    }
                    match step {
                        super::outbound::Step::LeaveMessage => conv.leave_message(),
                        _ => conv.start(now),
                    }
                    outbound = None;
                }
            }
            edge.transmit(&mut call, now, &id, |call| {
                if let Some(r) = recorder.as_mut() {
                    if r.agent(call.last_sent_frame()).is_err() {
                        recorder = None;
                    }
                }
            })
            .await;
            self.settle(&mut conv, &mut call, &shared, now);
        }
        if let Some(c) = edge.stream_counts() {
            tracing::info!(
                call = %id,
                marks = c.marks,
                flushes = c.flushes,
                unheard_ms = c.unheard_ms,
                xoff = c.xoff,
                rejected = c.rejected,
                errors = c.errors,
                "media WebSocket counts"
            );
        }
        shared.closed.store(true, Ordering::SeqCst);
        if let Some(Err(e)) = recorder.map(Recorder::finish) {
            tracing::warn!(call = %id, error = %e, "audio recording incomplete");
        }
        let mut summary = conv.into_summary();
        summary.files = files;
        summary.rtp = call.stats();
        summary.ended = std::time::SystemTime::now();
        self.finish(summary);
    }

    /// Carries out what the conversation says and hands it the call's
    /// events, until neither has anything more.
    fn settle(
        &self,
        conv: &mut Conversation,
        call: &mut Call,
        shared: &Arc<CallShared>,
        now: Instant,
    ) {
        loop {
            self.carry_out(conv, call, shared, now);
            match call.poll_event() {
                Some(event) => conv.handle_event(event, media(call), now),
                None => break,
            }
        }
    }

    fn carry_out(
        &self,
        conv: &mut Conversation,
        call: &mut Call,
        shared: &Arc<CallShared>,
        now: Instant,
    ) {
        loop {
            // The workers see the turn before its jobs.
            shared
                .latest_pause
                .store(conv.latest_pause(), Ordering::SeqCst);
            shared
                .latest_silence
                .store(conv.latest_silence(), Ordering::SeqCst);
            shared.awaited.store(conv.awaited_pause(), Ordering::SeqCst);
            shared.current.store(conv.turn(), Ordering::SeqCst);
            let Some(output) = conv.poll_output() else {
                return;
            };
            match output {
                Output::Submit(s) => {
                    let job = Job {
                        call: shared.clone(),
                        turn: s.turn,
                        work: s.work,
                        handed_over: s.handed_over,
                        deadline: s.deadline,
                        speculative: s.speculative,
                    };
                    if let Err(job) = self.speech.submit(job) {
                        conv.rejected(job.turn, &job.work, media(call), now);
                    }
                }
                Output::EndTurn(pause) => call.end_turn(pause),
                Output::ExtendTurn(pause, more) => call.extend_turn(pause, more),
                Output::Speak(reply) => {
                    if let Err(e) = call.speak(&reply.samples, reply.sample_rate) {
                        tracing::warn!(call = %self.id, error = %e, "reply not queued");
                        conv.not_spoken(media(call), now);
                    }
                }
                Output::Filler => {
                    if let Some(f) = &self.filler {
                        if let Err(e) = call.speak(&f.0, f.1) {
                            tracing::warn!(call = %self.id, error = %e, "filler not queued");
                        }
                    }
                }
                Output::Message => match &self.machine_message {
                    Some(m) if call.speak(&m.0, m.1).is_ok() => {
                        tracing::info!(call = %self.id, "message left after the beep")
                    }
                    _ => conv.not_spoken(media(call), now),
                },
                Output::Busy => match &self.busy_message {
                    Some(m) if call.speak(&m.0, m.1).is_ok() => {}
                    _ => conv.not_spoken(media(call), now),
                },
                Output::Stop => call.stop_speaking(),
                Output::Resume(from) => {
                    if let Some(again) = call.resume_speaking(from) {
                        tracing::info!(call = %self.id, again_ms = again.as_millis() as u64, "reply resumed");
                        conv.resumed(again);
                    }
                }
                Output::Act(action) => self.act(action),
            }
        }
    }

    /// Hangs up, transfers or sends tones through ARI (off the media path).
    fn act(&self, action: Action) {
        let id = self.id.clone();
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
            "barge_ins": s.barge_ins.len(), "overlaps": s.overlaps, "dtmf": s.dtmf, "rtp": {
                "received": s.rtp.received, "lost": s.rtp.lost, "late": s.rtp.late,
                "concealed_frames": s.rtp.concealed_frames, "sent": s.rtp.sent,
                "jitter_ms": s.rtp.jitter.as_secs_f64() * 1000.0}})
    )?;
    f.flush()?;
    Ok(path)
}
