//! [`Conversation`]: the turn-taking of one call as a sans-IO state machine.
//!
//! It decides when the caller's turn ends (early at a pause whose words or
//! turn-model score say complete, held open while those words are being
//! transcribed), what the speech workers are asked for, when the filler
//! plays, what a barge-in does to the reply, and when the call's actions
//! (hangup, transfer, tones) are carried out. It opens no socket, reads no
//! clock and owns no worker: the media task feeds it the engine's events,
//! the workers' results, key presses and the time, and carries out what it
//! says ([`Output`]) — the way `quinn` drives `quinn-proto`.
//!
//! Time is the `now` handed in; [`Conversation::poll_timeout`] says when it
//! next wants [`Conversation::handle_timeout`]. What the engine's playout
//! is doing comes in as a [`Media`] snapshot with each input.
//!
//! ## Barge-in that can be taken back
//!
//! With [`BargeIn::Resume`] the engine *pauses* the reply at caller sound
//! (within a frame). The sound's first pause sends its audio for a plain
//! transcript ([`Work::Sound`]); [`overlap::classify`] then says whether it
//! was a turn. Listener feedback, noise and our own echo play the reply on
//! (from the paused position or the sentence's start); words, sound that
//! runs on past `commit_after` without a pause, or a key drop the reply and
//! the caller has the turn, as with [`BargeIn::Stop`].

use super::deadair::ReplyWatch;
use super::speech::{Heard, ReplyAudio, SpeechOut, TurnRecord, Work};
use aiagc_dialogue::overlap;
use aiagc_dialogue::{Action, TurnHint};
use aiagc_engine::{CallEvent, ResumeFrom, Utterance};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long past the hangover a pause waits for the turn model's score
/// once the words had no opinion (a run takes ~20 ms; the margin covers a
/// busy pool).
pub const TURN_SCORE_WAIT: Duration = Duration::from_millis(200);

/// Longest wait for a pause's transcript once the turn has ended.
pub const AWAIT_TRANSCRIPT: Duration = Duration::from_secs(3);

/// Longest wait for the transcript of a sound over a paused reply; after
/// it the caller gets the turn (today's behaviour is the safe side).
pub const AWAIT_SOUND: Duration = Duration::from_millis(1500);

/// What a barge-in does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BargeIn {
    /// The reply is dropped at the first sound.
    Stop,
    /// The reply is paused and plays on if the sound was no turn.
    Resume {
        /// Where it plays on.
        from: ResumeFrom,
        /// Sound that lasts this long without a pause takes the turn.
        commit_after: Duration,
        /// A reply with less than this left is not resumed: a "ja" over
        /// the end of a question is its answer.
        min_rest: Duration,
    },
}

impl Default for BargeIn {
    fn default() -> Self {
        Self::Resume {
            from: ResumeFrom::SentenceStart,
            commit_after: Duration::from_millis(700),
            min_rest: Duration::from_millis(400),
        }
    }
}

/// The turn policy's settings.
#[derive(Debug, Clone)]
pub struct ConversationConfig {
    /// The endpointer's hangover (a turn ends after this much silence).
    pub hangover: Duration,
    /// The endpointer's tail (silence kept at the end of a pause's audio).
    pub tail: Duration,
    /// The endpointer's pre-roll (audio kept before the first voiced frame).
    pub pre_roll: Duration,
    /// Ask the turn model at pauses.
    pub turn_model: bool,
    /// Probability from which its "complete" ends the turn.
    pub turn_threshold: f32,
    /// Longest silence to wait when the words or the model say the caller
    /// is not done.
    pub turn_ceiling: Duration,
    /// Silence after a reply before the dialogue gets `Silence`.
    pub no_input: Duration,
    /// Play the filler when a reply has not started this long after the
    /// caller fell silent (`None`: no filler).
    pub filler_after: Option<Duration>,
    /// What caller sound over a reply does.
    pub barge_in: BargeIn,
}

impl Default for ConversationConfig {
    fn default() -> Self {
        Self {
            hangover: Duration::from_millis(500),
            tail: Duration::from_millis(100),
            pre_roll: Duration::from_millis(200),
            turn_model: true,
            turn_threshold: 0.5,
            turn_ceiling: Duration::from_millis(1500),
            no_input: Duration::from_secs(8),
            filler_after: Some(Duration::from_millis(1000)),
            barge_in: BargeIn::default(),
        }
    }
}

impl ConversationConfig {
    /// Extra silence beyond the hangover up to the ceiling.
    fn extension(&self) -> Duration {
        self.turn_ceiling.saturating_sub(self.hangover)
    }

    /// How long beyond the hangover a pause waits for its words: the
    /// extension, but never past the moment the filler is due.
    fn hold(&self) -> Duration {
        match self.filler_after {
            Some(f) => self.extension().min(f.saturating_sub(self.hangover)),
            None => self.extension(),
        }
    }
}

/// What the engine's playout is doing, as of the input.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Media {
    /// Reply audio is being sent.
    pub speaking: bool,
    /// A reply is paused.
    pub paused: bool,
    /// Audio queued to send, as play time.
    pub queued: Duration,
    /// Audio held by a pause, as play time.
    pub held: Duration,
    /// The inbound media clock (20 ms per frame played out).
    pub time: Duration,
}

/// A job for the speech workers.
#[derive(Debug)]
pub struct Submission {
    /// The turn it belongs to.
    pub turn: u64,
    /// What to do.
    pub work: Work,
    /// When it was handed over (turn latency counts from here).
    pub handed_over: Instant,
    /// When its result is needed for the caller not to wait.
    pub deadline: Instant,
    /// Work the call may go on without (a pause's transcript, a turn-model
    /// check): the first to give up under load.
    pub speculative: bool,
}

/// Something the driver carries out.
#[derive(Debug)]
pub enum Output {
    /// Hand a job to the speech workers; report a refusal with
    /// [`Conversation::rejected`].
    Submit(Submission),
    /// End the caller's turn at pause `id` now ([`aiagc_engine::Call::end_turn`]).
    EndTurn(u64),
    /// Hold pause `id` open this much beyond the hangover.
    ExtendTurn(u64, Duration),
    /// Queue one sentence of a reply.
    Speak(ReplyAudio),
    /// Queue the filler.
    Filler,
    /// Queue the message for an answering machine.
    Message,
    /// Queue the busy message (the host is full), then hang up.
    Busy,
    /// Drop the reply (playing or paused).
    Stop,
    /// Play the paused reply on.
    Resume(ResumeFrom),
    /// Hang up, transfer or send tones through ARI.
    Act(Action),
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

/// A sound over a reply and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct OverlapRecord {
    /// The turn whose reply was playing.
    pub turn: u64,
    /// `resumed` or `dropped`.
    pub outcome: &'static str,
    /// `backchannel`, `noise`, `echo`, `speech`, `long` (sound without a
    /// pause), `end` (little of the reply left), `keys`, `timeout`.
    pub why: &'static str,
    /// What the sound was heard as.
    pub heard: String,
    /// How long the reply was paused.
    #[serde(serialize_with = "as_ms")]
    pub paused: Duration,
    /// Reply audio heard twice after the resume.
    #[serde(serialize_with = "as_ms")]
    pub repeated: Duration,
    /// How long the sound was voiced when it was judged.
    #[serde(serialize_with = "as_ms")]
    pub voiced: Duration,
    /// When the reply was paused (the barge-in).
    #[serde(skip)]
    pub at: Instant,
}

fn as_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
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
    /// Sounds over replies: resumed or dropped, and why.
    pub overlaps: Vec<OverlapRecord>,
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

impl CallSummary {
    /// An empty summary of call `call` from `party`.
    pub fn new(call: &str, party: Party) -> Self {
        Self {
            call: call.to_owned(),
            turns: Vec::new(),
            barge_ins: Vec::new(),
            overlaps: Vec::new(),
            dtmf: Vec::new(),
            outcome: None,
            ended_by: "caller".into(),
            rtp: Default::default(),
            fillers: 0,
            party,
            started: std::time::SystemTime::now(),
            ended: std::time::SystemTime::now(),
            files: Vec::new(),
            answered_by: None,
        }
    }
}

/// An utterance that ended before its pause's transcript came.
#[derive(Debug)]
struct Awaiting {
    pause: u64,
    turn: u64,
    audio: Vec<f32>,
    since: Instant,
    by_model: bool,
}

/// A sound over a paused reply, until it is known whether it was a turn.
#[derive(Debug)]
struct Pending {
    /// The turn whose reply is paused (`None`: the filler).
    reply: Option<u64>,
    /// When the reply was paused.
    since: Instant,
    /// Sound without a pause until then takes the turn.
    commit_at: Instant,
    /// Media time of the sound's first voiced frame.
    sound_from: Duration,
    /// The job that transcribes the sound, the silence it was cut at and
    /// how long the sound had been voiced by then.
    checking: Option<(u64, u64, Duration)>,
    /// Give up waiting for the transcript then.
    check_until: Option<Instant>,
    /// The sound's utterance, if the endpointer already ended it.
    ended: Option<Utterance>,
    /// The sound was no turn: resume when its utterance ends.
    dismissed: Option<(&'static str, String)>,
    /// The checked pause's audio as the endpointer gave it (for its early
    /// transcript if the sound takes the turn).
    pause_audio: Vec<f32>,
    /// The sound began between two sentences: nothing was paused in the
    /// engine, the rest of the reply waits in `stashed`.
    gap: bool,
}

/// The turn-taking of one call.
pub struct Conversation {
    config: ConversationConfig,
    /// The current turn (the workers drop work of older ones).
    turn: u64,
    /// The newest pause, and the first pause of the newest silence.
    latest_pause: u64,
    latest_silence: u64,
    /// Transcripts made at pauses: id → text and STT time.
    partials: HashMap<u64, (Heard, Duration)>,
    /// Pauses being transcribed.
    in_flight: Vec<u64>,
    awaiting: Option<Awaiting>,
    /// Silences (by first pause) ended early by the words.
    ended_by_hint: Vec<u64>,
    /// Silences ended early by the turn model.
    ended_by_model: Vec<u64>,
    /// Silences the words call unfinished (the model is not followed there).
    unfinished: Vec<u64>,
    /// Action to carry out once the reply has played.
    pending_action: Option<Action>,
    /// Turn whose reply is playing, and its text so far.
    playing: Option<u64>,
    reply_text: String,
    /// All of the playing turn's sentences have been handed over.
    reply_complete: bool,
    /// Sentences of a reply held back while a sound that began between
    /// two of its sentences is judged (the engine had nothing to pause).
    stashed: Vec<ReplyAudio>,
    /// When the first packet of a turn's reply was sent.
    first_packet: Option<(u64, Instant)>,
    /// When the caller's speech of a turn ended (as played out).
    speech_end: Option<(u64, Instant)>,
    watch: ReplyWatch,
    silence_deadline: Option<Instant>,
    /// The caller's speech drives turns (not while an outbound call's
    /// start decides who answered, nor while a machine gets its message).
    listening: bool,
    has_filler: bool,
    has_message: bool,
    overlap: Option<Pending>,
    sounds: u64,
    outputs: VecDeque<Output>,
    summary: CallSummary,
}

impl Conversation {
    /// The conversation of call `call`; `has_filler`/`has_message` say
    /// whether the driver can play those.
    pub fn new(
        config: ConversationConfig,
        call: &str,
        party: Party,
        has_filler: bool,
        has_message: bool,
    ) -> Self {
        // No filler: a deadline that never comes in a call's life.
        let budget = config
            .filler_after
            .filter(|_| has_filler)
            .unwrap_or(Duration::from_secs(365 * 86400));
        Self {
            config,
            turn: 0,
            latest_pause: 0,
            latest_silence: 0,
            partials: HashMap::new(),
            in_flight: Vec::new(),
            awaiting: None,
            ended_by_hint: Vec::new(),
            ended_by_model: Vec::new(),
            unfinished: Vec::new(),
            pending_action: None,
            playing: None,
            reply_text: String::new(),
            reply_complete: false,
            stashed: Vec::new(),
            first_packet: None,
            speech_end: None,
            watch: ReplyWatch::new(budget),
            silence_deadline: None,
            listening: true,
            has_filler,
            has_message,
            overlap: None,
            sounds: 0,
            outputs: VecDeque::new(),
            summary: CallSummary::new(call, party),
        }
    }

    /// The current turn: work of other turns is stale.
    pub fn turn(&self) -> u64 {
        self.turn
    }

    /// The newest pause (older turn checks are superseded).
    pub fn latest_pause(&self) -> u64 {
        self.latest_pause
    }

    /// The first pause of the newest silence (older pause transcripts are
    /// superseded: the caller spoke again).
    pub fn latest_silence(&self) -> u64 {
        self.latest_silence
    }

    /// The pause whose transcript an ended turn waits for
    /// ([`crate::runtime::speech::NO_PAUSE`]: none): the caller waits on
    /// that job now.
    pub fn awaited_pause(&self) -> u64 {
        self.awaiting
            .as_ref()
            .map_or(crate::runtime::speech::NO_PAUSE, |a| a.pause)
    }

    /// The call's record so far.
    pub fn summary(&self) -> &CallSummary {
        &self.summary
    }

    /// The call's record, to finish it.
    pub fn into_summary(mut self) -> CallSummary {
        for o in &self.summary.overlaps {
            if o.outcome == "dropped" {
                continue;
            }
            if let Some(r) = self.summary.turns.iter_mut().find(|r| r.turn == o.turn) {
                r.resumed += 1;
            }
        }
        self.summary
    }

    /// The next thing to carry out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Conversation::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let overlap = self
            .overlap
            .as_ref()
            .and_then(|p| match (p.checking, p.check_until) {
                (None, _) => Some(p.commit_at),
                (Some(_), until) => until,
            });
        [
            self.silence_deadline,
            self.watch.deadline(),
            self.awaiting.as_ref().map(|a| a.since + AWAIT_TRANSCRIPT),
            overlap,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The call is answered and the caller listens: greet them.
    pub fn start(&mut self, now: Instant) {
        self.listening = true;
        let turn = self.next_turn();
        self.submit(turn, Work::Start, now, self.reply_due(now), false);
    }

    /// An outbound call: the callee speaks first and may be a machine;
    /// their speech drives nothing until [`Conversation::start`] or
    /// [`Conversation::leave_message`].
    pub fn wait_for_answer(&mut self) {
        self.listening = false;
    }

    /// Who answered an outbound call (as Asterisk's `AMDSTATUS`/`AMDCAUSE`).
    pub fn answered_by(&mut self, status: &str, cause: &str) {
        self.summary.answered_by = Some((status.to_owned(), cause.to_owned()));
    }

    /// A machine answered and beeped: leave the message, then hang up.
    pub fn leave_message(&mut self) {
        self.summary.outcome = Some("message_left".into());
        if self.has_message {
            self.outputs.push_back(Output::Message);
            self.pending_action = Some(Action::Hangup);
        } else {
            self.summary.outcome = Some("machine".into());
            self.act(Action::Hangup);
        }
    }

    /// The host is full: this caller hears the busy message, nothing is
    /// transcribed, and the call ends when it has played.
    pub fn turn_away(&mut self) {
        tracing::info!(call = %self.summary.call, "host full: busy message");
        self.listening = false;
        self.summary.outcome = Some("busy".into());
        self.outputs.push_back(Output::Busy);
        self.pending_action = Some(Action::Hangup);
    }

    /// A key was pressed: it interrupts the prompt, like speech does.
    pub fn handle_dtmf(&mut self, digit: &str, media: Media, now: Instant) {
        if media.speaking || media.paused {
            self.interrupt();
        }
        if let Some(p) = self.overlap.take() {
            self.record_overlap(&p, "dropped", "keys", String::new(), now);
        }
        self.outputs.push_back(Output::Stop);
        self.pending_action = None;
        self.silence_deadline = None;
        self.summary.dtmf.push(digit.to_owned());
        let turn = self.next_turn();
        self.watch.handed_over(turn, now);
        self.submit(
            turn,
            Work::Dtmf(digit.to_owned()),
            now,
            self.reply_due(now),
            false,
        );
    }

    /// Deadlines that have come by `now`.
    pub fn handle_timeout(&mut self, media: Media, now: Instant) {
        if self.silence_deadline.is_some_and(|s| s <= now) {
            self.silence_deadline = None;
            let turn = self.next_turn();
            self.submit(turn, Work::Silence, now, self.reply_due(now), false);
        }
        if let Some(turn) = self.watch.poll(now) {
            self.fill(turn, media);
        }
        // A pause transcript that never came (its job was dropped):
        // transcribe the utterance itself.
        if self
            .awaiting
            .as_ref()
            .is_some_and(|a| now.saturating_duration_since(a.since) >= AWAIT_TRANSCRIPT)
        {
            if let Some(a) = self.awaiting.take() {
                tracing::warn!(call = %self.summary.call, pause = a.pause, "pause transcript missing: transcribing the utterance");
                self.in_flight.retain(|p| *p != a.pause);
                self.submit_utterance(a.turn, a.audio, None, (false, a.by_model), a.since);
            }
        }
        if let Some(p) = &self.overlap {
            let why = match (p.checking, p.check_until) {
                (None, _) if p.commit_at <= now => Some("long"),
                (Some(_), Some(until)) if until <= now => Some("timeout"),
                _ => None,
            };
            if let Some(why) = why {
                self.commit(why, String::new(), media, now);
            }
        }
    }

    /// The job `work` of `turn` was refused (queue full): what waited for
    /// it goes on without it.
    pub fn rejected(&mut self, turn: u64, work: &Work, media: Media, now: Instant) {
        match work {
            Work::Pause { id, .. } => {
                self.in_flight.retain(|p| p != id);
                // No words are coming: the plain hangover ends the turn.
                self.outputs
                    .push_back(Output::ExtendTurn(*id, Duration::ZERO));
                if self.awaiting.as_ref().is_some_and(|a| a.pause == *id) {
                    if let Some(a) = self.awaiting.take() {
                        self.submit_utterance(a.turn, a.audio, None, (false, a.by_model), a.since);
                    }
                }
            }
            Work::Sound { .. } => self.commit("timeout", String::new(), media, now),
            _ => tracing::warn!(call = %self.summary.call, turn, "speech job refused"),
        }
    }

    /// A sentence could not be queued (the reply queue is full).
    pub fn not_spoken(&mut self, media: Media, now: Instant) {
        if !media.speaking && !media.paused {
            self.played_out(now);
        }
    }

    /// One event of the engine's `Call`.
    pub fn handle_event(&mut self, event: CallEvent, media: Media, now: Instant) {
        let speech = matches!(
            event,
            CallEvent::SpeechStarted { .. }
                | CallEvent::SpeechPaused(_)
                | CallEvent::SpeechEnded(_)
                | CallEvent::BargeIn { .. }
        );
        if !self.listening && speech {
            // A machine's greeting over our message is no barge-in.
            if matches!(event, CallEvent::BargeIn { .. }) && media.paused {
                self.outputs.push_back(Output::Resume(ResumeFrom::Position));
            }
            return;
        }
        if self.overlap.is_some() && speech {
            self.overlap_event(event, media, now);
            return;
        }
        match event {
            CallEvent::SpeechStarted { at, barge_in } => {
                self.silence_deadline = None;
                // The caller began between two sentences of a reply (the
                // queue ran dry while the next was synthesized): the engine
                // saw no reply playing, but it is a barge-in all the same.
                if !barge_in && self.playing == Some(self.turn) && !media.speaking && !media.paused
                {
                    self.summary.barge_ins.push(now);
                    match self.config.barge_in {
                        BargeIn::Resume { commit_after, .. } => {
                            tracing::info!(call = %self.summary.call, "barge-in between sentences: the rest of the reply held");
                            self.hold_for_sound(at.elapsed, commit_after, true, now);
                        }
                        BargeIn::Stop => {
                            tracing::info!(call = %self.summary.call, "barge-in between sentences");
                            self.drop_reply();
                        }
                    }
                }
            }
            CallEvent::SpeechPaused(p) => {
                if self.awaiting.as_ref().is_some_and(|a| a.pause != p.first) {
                    // The caller speaks again: the awaited transcript is
                    // superseded (its job is dropped), the utterance is
                    // transcribed itself now.
                    if let Some(a) = self.awaiting.take() {
                        self.in_flight.retain(|x| *x != a.pause);
                        self.submit_utterance(a.turn, a.audio, None, (false, a.by_model), a.since);
                    }
                }
                self.latest_pause = p.id;
                self.latest_silence = p.first;
                let turn = self.turn;
                // The turn model hears the pause as it is so far.
                let silence =
                    (p.silence.saturating_sub(self.config.tail).as_millis() * 16) as usize;
                if p.id == p.first {
                    let work = Work::Pause {
                        id: p.id,
                        audio: p.samples,
                        silence: if self.config.turn_model { silence } else { 0 },
                    };
                    let hold = self.config.hold();
                    let due = now + self.config.hangover + hold;
                    self.submit(turn, work, now, due, true);
                    self.in_flight.push(p.id);
                    // The reply waits for these words anyway, and they may
                    // say the caller is not done: the hangover does not end
                    // the turn before they are in (a slow worker otherwise
                    // cuts "am … Dienstag" at "am").
                    self.outputs.push_back(Output::ExtendTurn(p.id, hold));
                } else if self.config.turn_model
                    && !self.unfinished.contains(&p.first)
                    && !self.in_flight.contains(&p.first)
                {
                    let mut audio = p.samples;
                    audio.resize(audio.len() + silence, 0.0);
                    let work = Work::TurnCheck {
                        first: p.first,
                        id: p.id,
                        audio,
                    };
                    self.submit(turn, work, now, now + TURN_SCORE_WAIT, true);
                }
            }
            CallEvent::SpeechEnded(u) => self.utterance(u, media, now),
            CallEvent::BargeIn { at } => {
                self.summary.barge_ins.push(now);
                match self.config.barge_in {
                    BargeIn::Resume { commit_after, .. } if media.paused => {
                        tracing::info!(call = %self.summary.call, "barge-in: reply paused");
                        self.hold_for_sound(at.elapsed, commit_after, false, now);
                    }
                    _ => {
                        tracing::info!(call = %self.summary.call, "barge-in");
                        self.drop_reply();
                    }
                }
            }
            CallEvent::ReplyStarted { at } => {
                if let Some(turn) = self.playing {
                    if self.first_packet.is_none_or(|(f, _)| f != turn) {
                        self.first_packet = Some((turn, at));
                        let end = self.speech_end.filter(|(s, _)| *s == turn);
                        if let Some(r) = self.record_mut(turn) {
                            date_reply(r, at, end);
                        }
                    }
                }
            }
            CallEvent::ReplyHeard { at } => {
                // The reply whose first frame was handed out last.
                if let Some((turn, _)) = self.first_packet {
                    let end = self.speech_end.filter(|(s, _)| *s == turn);
                    if let (Some(r), Some((_, end))) = (self.record_mut(turn), end) {
                        if r.heard_after.is_none() {
                            r.heard_after = Some(at.saturating_duration_since(end));
                        }
                    }
                }
            }
            CallEvent::PlayoutFinished => self.played_out(now),
            CallEvent::InputRejected { kind, count } => {
                tracing::warn!(call = %self.summary.call, ?kind, count, "RTP input rejected")
            }
        }
    }

    /// One result of the speech workers.
    pub fn handle_speech(&mut self, out: SpeechOut, media: Media, now: Instant) {
        match out {
            SpeechOut::Partial {
                pause,
                transcript,
                hint,
                stt,
            } => {
                tracing::debug!(call = %self.summary.call, pause, ?hint, stt_ms = stt.as_millis() as u64, "pause transcript");
                self.in_flight.retain(|p| *p != pause);
                if self.awaiting.as_ref().is_some_and(|a| a.pause == pause) {
                    if let Some(a) = self.awaiting.take() {
                        // The turn already ended (model or hangover):
                        // answer with this transcript.
                        let text = (!transcript.text.is_empty()).then_some((transcript, stt));
                        self.submit_utterance(a.turn, a.audio, text, (false, a.by_model), a.since);
                        return;
                    }
                }
                self.partials.insert(pause, (transcript, stt));
                match hint {
                    TurnHint::Complete => {
                        self.ended_by_hint.push(pause);
                        self.outputs.push_back(Output::EndTurn(pause));
                    }
                    TurnHint::Unfinished => {
                        self.unfinished.push(pause);
                        self.outputs
                            .push_back(Output::ExtendTurn(pause, self.config.extension()));
                    }
                    // No opinion: back to the plain hangover, or briefly
                    // beyond it for the turn model's score that follows.
                    TurnHint::Unknown => self.outputs.push_back(Output::ExtendTurn(
                        pause,
                        if self.config.turn_model {
                            TURN_SCORE_WAIT
                        } else {
                            Duration::ZERO
                        },
                    )),
                }
            }
            SpeechOut::TurnScore {
                first,
                pause,
                probability,
            } => {
                tracing::debug!(call = %self.summary.call, first, pause, probability, "turn model");
                // The words decide where they have an opinion.
                if self.unfinished.contains(&first) || self.ended_by_hint.contains(&first) {
                    return;
                }
                if probability >= self.config.turn_threshold {
                    self.ended_by_model.push(first);
                    self.outputs.push_back(Output::EndTurn(pause));
                } else {
                    self.outputs
                        .push_back(Output::ExtendTurn(pause, self.config.extension()));
                }
            }
            SpeechOut::Sound { id, heard, hint } => self.sound_heard(id, heard, hint, media, now),
            SpeechOut::Audio(reply) => {
                self.watch.replied(reply.turn);
                if reply.turn != self.turn {
                    return;
                }
                // Behind the filler, the reply's first packet leaves when
                // the filler's queued audio has played.
                let behind_filler = self.playing.is_none() && media.speaking;
                let starts = now + media.queued;
                if self.playing != Some(reply.turn) {
                    self.reply_text.clear();
                    self.reply_complete = false;
                }
                self.playing = Some(reply.turn);
                if !self.reply_text.is_empty() {
                    self.reply_text.push(' ');
                }
                self.reply_text.push_str(&reply.text);
                if self.overlap.as_ref().is_some_and(|p| p.gap) {
                    self.stashed.push(reply);
                    return;
                }
                if behind_filler {
                    self.first_packet = Some((reply.turn, starts));
                    let end = self.speech_end.filter(|(s, _)| *s == reply.turn);
                    if let Some(r) = self.record_mut(reply.turn) {
                        date_reply(r, starts, end);
                    }
                }
                self.outputs.push_back(Output::Speak(reply));
            }
            SpeechOut::Shed { turn, work } => self.rejected(turn, &work, media, now),
            SpeechOut::Answered(record, action) => {
                let current = record.turn == self.turn;
                if let Some(o) = &record.outcome {
                    self.summary.outcome = Some(o.clone());
                }
                let mut record = *record;
                if self.playing == Some(record.turn) {
                    self.reply_complete = true;
                }
                // Its audio already played out (between sentences, waiting
                // for this): the reply ends now.
                let idle = self.playing == Some(record.turn)
                    && !media.speaking
                    && !media.paused
                    && self.overlap.is_none();
                // The reply may already be on the wire, or start on the next
                // tick (then `ReplyStarted` dates it).
                if let Some((turn, at)) = self.first_packet.filter(|(f, _)| *f == record.turn) {
                    date_reply(&mut record, at, self.speech_end.filter(|(s, _)| *s == turn));
                }
                self.summary.turns.push(record);
                if let (Some(action), true) = (action, current) {
                    if media.speaking || media.paused || idle {
                        self.pending_action = Some(action);
                    } else {
                        self.act(action);
                    }
                }
                if idle {
                    self.played_out(now);
                }
            }
        }
    }

    // --- the caller's turns ---

    fn utterance(&mut self, u: Utterance, media: Media, now: Instant) {
        tracing::debug!(call = %self.summary.call, pause = ?u.pause, "speech ended");
        let turn = self.next_turn();
        // The caller stopped speaking this much media time ago.
        let silence = media.time.saturating_sub(u.end.elapsed);
        let fell_silent = now.checked_sub(silence).unwrap_or(now);
        self.speech_end = Some((turn, fell_silent));
        // The caller's silence counts from their last word, however long
        // the turn was held open after it.
        self.watch.handed_over(turn, fell_silent);
        self.pending_action = None;
        let by_hint = u.pause.is_some_and(|p| self.ended_by_hint.contains(&p));
        let by_model = u.pause.is_some_and(|p| self.ended_by_model.contains(&p));
        // Decisions about earlier silences are done with.
        self.ended_by_hint.clear();
        self.ended_by_model.clear();
        self.unfinished.clear();
        let reuse = u.pause.and_then(|p| self.partials.remove(&p));
        let waiting = u.pause.filter(|p| self.in_flight.contains(p));
        self.partials.clear();
        match (reuse, waiting) {
            (Some(text), _) => {
                self.submit_utterance(turn, u.samples, Some(text), (by_hint, by_model), now)
            }
            (None, Some(pause)) => {
                self.awaiting = Some(Awaiting {
                    pause,
                    turn,
                    audio: u.samples,
                    since: now,
                    by_model,
                })
            }
            (None, None) => self.submit_utterance(turn, u.samples, None, (false, by_model), now),
        }
    }

    fn submit_utterance(
        &mut self,
        turn: u64,
        audio: Vec<f32>,
        transcript: Option<(Heard, Duration)>,
        (ended_by_hint, ended_by_model): (bool, bool),
        now: Instant,
    ) {
        let due = self
            .speech_end
            .filter(|(t, _)| *t == turn)
            .map_or(now, |(_, at)| at);
        let due = self.reply_due(due);
        self.submit(
            turn,
            Work::Utterance {
                audio,
                transcript: transcript.map(Box::new),
                ended_by_hint,
                ended_by_model,
            },
            now,
            due,
            false,
        );
    }

    // --- sound over a paused reply ---

    fn overlap_event(&mut self, event: CallEvent, media: Media, now: Instant) {
        let Some(p) = self.overlap.as_mut() else {
            return;
        };
        match event {
            CallEvent::SpeechPaused(pause) => {
                if p.checking.is_some_and(|(_, first, _)| first == pause.first) {
                    return; // the same silence, growing
                }
                let commit_after = match self.config.barge_in {
                    BargeIn::Resume { commit_after, .. } => commit_after,
                    BargeIn::Stop => Duration::ZERO,
                };
                if p.checking.is_some() && now.saturating_duration_since(p.since) > commit_after * 2
                {
                    // Sound after sound: the caller is talking (the new
                    // silence gets the usual early transcript below).
                    p.checking = None;
                    self.commit("long", String::new(), media, now);
                    self.handle_event(CallEvent::SpeechPaused(pause), media, now);
                    return;
                }
                // What was it? The audio of the sound so far (a "ja" then
                // "genau" is checked again whole).
                self.sounds += 1;
                let id = self.sounds;
                let voiced = pause.end.elapsed.saturating_sub(p.sound_from);
                p.checking = Some((id, pause.first, voiced));
                p.check_until = Some(now + AWAIT_SOUND);
                p.dismissed = None;
                self.latest_pause = pause.id;
                self.latest_silence = pause.first;
                let turn = self.turn;
                // Held open until the verdict: a "ja" must not become a turn.
                self.outputs
                    .push_back(Output::ExtendTurn(pause.id, self.config.extension()));
                p.pause_audio = pause.samples.clone();
                let mut audio = pause.samples;
                self.quiet_pre_roll(&mut audio);
                self.submit(
                    turn,
                    Work::Sound { id, audio },
                    now,
                    now + Duration::from_millis(300),
                    false,
                );
            }
            CallEvent::SpeechEnded(u) => {
                if let Some((why, heard)) = p.dismissed.take() {
                    self.resume(why, heard, now);
                } else if p.checking.is_some() {
                    p.ended = Some(u);
                } else {
                    // Ended before any pause (pauses off): check it whole.
                    self.sounds += 1;
                    let id = self.sounds;
                    let voiced = u.end.elapsed.saturating_sub(u.start.elapsed);
                    p.checking = Some((id, 0, voiced));
                    p.check_until = Some(now + AWAIT_SOUND);
                    let mut audio = u.samples.clone();
                    p.ended = Some(u);
                    self.quiet_pre_roll(&mut audio);
                    let turn = self.turn;
                    self.submit(
                        turn,
                        Work::Sound { id, audio },
                        now,
                        now + Duration::from_millis(300),
                        false,
                    );
                }
            }
            // A new utterance while the sound is undecided: a turn.
            CallEvent::SpeechStarted { .. } | CallEvent::BargeIn { .. }
                if p.ended.is_some() || p.dismissed.is_some() =>
            {
                self.commit("speech", String::new(), media, now);
            }
            _ => {}
        }
    }

    /// Silences the audio before the sound's first voiced frame: over a
    /// reply it holds only our echo, which the recognizer makes words of.
    fn quiet_pre_roll(&self, audio: &mut [f32]) {
        let n = (self.config.pre_roll.as_millis() as usize * 16).min(audio.len());
        audio[..n].fill(0.0);
    }

    fn sound_heard(&mut self, id: u64, heard: String, hint: TurnHint, media: Media, now: Instant) {
        let Some(p) = &self.overlap else { return };
        let Some((_, first, voiced)) = p.checking.filter(|(c, _, _)| *c == id) else {
            return;
        };
        let ended = p.ended.is_some();
        let verdict = overlap::classify(&heard, &self.reply_text, voiced);
        let min_rest = match self.config.barge_in {
            BargeIn::Resume { min_rest, .. } => min_rest,
            BargeIn::Stop => Duration::MAX,
        };
        // Little of a complete reply left: the sound answers it. Between
        // sentences the rest is ours to hold, not the engine's.
        let stashed: usize = self
            .stashed
            .iter()
            .map(|r| r.samples.len() * 1000 / r.sample_rate.max(1) as usize)
            .sum();
        let rest = media.held + Duration::from_millis(stashed as u64);
        let at_end = self.reply_complete && rest < min_rest;
        tracing::info!(call = %self.summary.call, heard = %heard, voiced_ms = voiced.as_millis() as u64, verdict = verdict.as_str(), at_end, "sound over the reply");
        if !verdict.resumes() || at_end {
            let why = if verdict.resumes() {
                "end"
            } else {
                verdict.as_str()
            };
            // Its words are the pause's early transcript: a complete
            // answer ("Nein.") ends the turn there, as without the reply.
            let words = (!heard.is_empty()).then(|| (heard.clone(), hint));
            self.commit_with(why, heard, words, media, now);
            return;
        }
        if ended {
            self.resume(verdict.as_str(), heard, now);
            return;
        }
        if let Some(p) = self.overlap.as_mut() {
            // The sound's utterance ends after the plain hangover, and its
            // end resumes the reply; if the caller speaks on first, the
            // next silence checks the whole of it again ("Nein, …" heard
            // as "Rein" is not lost).
            p.check_until = None;
            p.dismissed = Some((verdict.as_str(), heard));
        }
        self.outputs
            .push_back(Output::ExtendTurn(first, Duration::ZERO));
    }

    /// The sound was no turn: the reply plays on.
    fn resume(&mut self, why: &'static str, heard: String, now: Instant) {
        let Some(p) = self.overlap.take() else { return };
        let from = match self.config.barge_in {
            BargeIn::Resume { from, .. } => from,
            BargeIn::Stop => ResumeFrom::Position,
        };
        self.outputs.push_back(Output::Resume(from));
        if p.gap {
            let held = std::mem::take(&mut self.stashed);
            let nothing = held.is_empty();
            self.outputs.extend(held.into_iter().map(Output::Speak));
            if nothing && self.reply_complete {
                // The reply had ended; only its end was still to be told.
                self.played_out(now);
            }
        }
        self.record_overlap(&p, "resumed", why, heard, now);
        // The endpointer's utterances of the sound are done with.
        self.partials.clear();
        self.in_flight.clear();
    }

    /// The sound took the turn: the reply is dropped, and the sound's
    /// utterance, if it has ended, is answered (never lost, whatever made
    /// the decision: its words, a timeout, the caller speaking again).
    fn commit(&mut self, why: &'static str, heard: String, media: Media, now: Instant) {
        self.commit_with(why, heard, None, media, now);
    }

    /// [`Conversation::commit`], with the sound's words and their hint
    /// when it was its verdict.
    fn commit_with(
        &mut self,
        why: &'static str,
        heard: String,
        words: Option<(String, TurnHint)>,
        media: Media,
        now: Instant,
    ) {
        let Some(mut p) = self.overlap.take() else {
            return;
        };
        tracing::info!(call = %self.summary.call, why, "barge-in: reply dropped");
        self.outputs.push_back(Output::Stop);
        self.stashed.clear();
        let ended = p.ended.take();
        let early = match (p.checking, &ended) {
            (Some((_, first, _)), None) if first > 0 => Some(first),
            _ => None,
        };
        let audio = std::mem::take(&mut p.pause_audio);
        self.record_overlap(&p, "dropped", why, heard, now);
        self.drop_reply();
        if let (Some(first), Some((text, hint))) = (early, &words) {
            // The verdict's transcript serves as the pause's.
            self.handle_speech(
                SpeechOut::Partial {
                    pause: first,
                    transcript: Heard::from(text.as_str()),
                    stt: Duration::ZERO,
                    hint: *hint,
                },
                media,
                now,
            );
        } else if let Some(first) = early {
            // The caller is in (or past) the sound's pause: it gets the
            // early transcript and turn hint any pause gets, so a complete
            // answer ends the turn there as it would without the reply.
            let hold = self.config.hold();
            let work = Work::Pause {
                id: first,
                audio,
                silence: 0,
            };
            self.submit(self.turn, work, now, now + hold, true);
            self.in_flight.push(first);
            self.outputs.push_back(Output::ExtendTurn(first, hold));
        }
        if let Some(u) = ended {
            self.utterance(u, media, now);
        }
    }

    fn record_overlap(
        &mut self,
        p: &Pending,
        outcome: &'static str,
        why: &'static str,
        heard: String,
        now: Instant,
    ) {
        self.summary.overlaps.push(OverlapRecord {
            turn: p.reply.unwrap_or(self.turn),
            outcome,
            why,
            heard,
            paused: now.saturating_duration_since(p.since),
            repeated: Duration::ZERO,
            voiced: p.checking.map_or(Duration::ZERO, |(_, _, v)| v),
            at: p.since,
        });
    }

    /// How much the last resume plays twice (from the engine).
    pub fn resumed(&mut self, repeated: Duration) {
        if let Some(o) = self.summary.overlaps.last_mut() {
            o.repeated = repeated;
        }
    }

    // --- replies and actions ---

    /// The reply is over for good: its turn's pending work is stale.
    /// The playing reply waits while a sound that began at media time
    /// `sound_from` is judged (`gap`: between two sentences, the rest held
    /// here rather than paused in the engine).
    fn hold_for_sound(
        &mut self,
        sound_from: Duration,
        commit_after: Duration,
        gap: bool,
        now: Instant,
    ) {
        self.overlap = Some(Pending {
            reply: self.playing,
            since: now,
            commit_at: now + commit_after,
            sound_from,
            checking: None,
            check_until: None,
            ended: None,
            dismissed: None,
            pause_audio: Vec::new(),
            gap,
        });
    }

    fn drop_reply(&mut self) {
        self.stashed.clear();
        self.next_turn();
        self.pending_action = None;
        self.watch.cancel();
        self.interrupt();
    }

    /// Marks the reply that is playing as interrupted.
    fn interrupt(&mut self) {
        if let Some(turn) = self.playing.take() {
            if let Some(r) = self.record_mut(turn) {
                r.interrupted = true;
            }
        }
    }

    fn played_out(&mut self, now: Instant) {
        if self.playing == Some(self.turn) && !self.reply_complete {
            // The queue ran dry between two sentences: more is coming.
            return;
        }
        self.playing = None;
        match self.pending_action.take() {
            // Tones sent, the call goes on: listen as after any reply.
            Some(Action::SendDtmf(d)) => {
                self.act(Action::SendDtmf(d));
                self.silence_deadline = Some(now + self.config.no_input);
            }
            Some(action) => self.act(action),
            None => self.silence_deadline = Some(now + self.config.no_input),
        }
    }

    /// Plays the filler for `turn` if it is still the current turn and
    /// nothing is playing.
    fn fill(&mut self, turn: u64, media: Media) {
        if !self.has_filler || turn != self.turn || media.speaking || media.paused {
            return;
        }
        self.summary.fillers += 1;
        tracing::info!(call = %self.summary.call, turn, "reply late: filler played");
        self.outputs.push_back(Output::Filler);
    }

    fn act(&mut self, action: Action) {
        tracing::info!(call = %self.summary.call, ?action, "call action");
        match &action {
            Action::Hangup => self.summary.ended_by = "hangup".into(),
            Action::Transfer { .. } => self.summary.ended_by = "transfer".into(),
            Action::SendDtmf(_) => {}
        }
        self.outputs.push_back(Output::Act(action));
    }

    // --- bookkeeping ---

    fn next_turn(&mut self) -> u64 {
        self.turn += 1;
        self.turn
    }

    fn reply_due(&self, since: Instant) -> Instant {
        since + self.config.filler_after.unwrap_or(Duration::from_secs(1))
    }

    fn submit(
        &mut self,
        turn: u64,
        work: Work,
        now: Instant,
        deadline: Instant,
        speculative: bool,
    ) {
        self.outputs.push_back(Output::Submit(Submission {
            turn,
            work,
            handed_over: now,
            deadline,
            speculative,
        }));
    }

    fn record_mut(&mut self, turn: u64) -> Option<&mut TurnRecord> {
        self.summary.turns.iter_mut().rev().find(|r| r.turn == turn)
    }
}

/// Dates a turn's first reply packet (`at`) from its hand-over and from the
/// caller's speech end.
fn date_reply(record: &mut TurnRecord, at: Instant, speech_end: Option<(u64, Instant)>) {
    record.to_first_packet = Some(at.saturating_duration_since(record.handed_over));
    if let Some((_, end)) = speech_end {
        record.from_speech_end = Some(at.saturating_duration_since(end));
    }
}

#[cfg(test)]
mod tests;
