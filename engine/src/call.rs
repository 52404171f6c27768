//! [`Call`]: the sans-IO media state of one call (see the crate docs for
//! the driving loop).

use crate::codec::{Codec, CodecError, Decoder, MAX_DECODED_SAMPLES};
use crate::echo::{EchoCanceller, EchoConfig, EchoVerdict};
use crate::endpoint::{Endpoint, EndpointConfig, Endpointer, MediaPosition, Pause, Utterance};
use crate::jitter::{JitterBuffer, JitterConfig, Pop, Push};
use crate::packet::{self, MAX_PAYLOAD};
use crate::playout::{Playout, PlayoutError, ResumeFrom, SilencePolicy};
use crate::resample::{ResampleError, Resampler};
use crate::stats::CallStats;
use crate::vad::{EnergyVad, Vad, FRAME_16K};
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One frame: the engine's unit of time on both directions.
pub const FRAME: Duration = Duration::from_millis(20);
/// Outbound ticks later than this are not sent (no bursts after a stall).
const MAX_SEND_LATENESS: Duration = Duration::from_millis(60);
/// [`Transport::Stream`]: how long past a frame's due time the far end is
/// taken to be silent (it sends nothing then), for arrival jitter.
pub const STREAM_GAP: Duration = Duration::from_millis(60);
/// Most inbound ticks processed by one `handle_timeout` (10 s of media).
const MAX_CATCH_UP_TICKS: u32 = 500;

/// Which datagram sources are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourcePolicy {
    /// Address and port must equal the peer Asterisk reported
    /// (`UNICASTRTP_LOCAL_ADDRESS`/`_PORT`). The default.
    #[default]
    Strict,
    /// Only the address must match (NAT that rewrites ports).
    AddressOnly,
    /// The first source that sends is the peer, wherever it is (NAT that
    /// rewrites addresses); replies go there. A stranger who sends first
    /// would win: only for trusted networks.
    Latch,
}

impl std::str::FromStr for SourcePolicy {
    type Err = String;
    /// The configuration's names: `strict`, `address`, `latch`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "strict" => Ok(Self::Strict),
            "address" => Ok(Self::AddressOnly),
            "latch" => Ok(Self::Latch),
            other => Err(format!(
                "{other:?}: use \"strict\", \"address\" or \"latch\""
            )),
        }
    }
}

/// How the call's media crosses the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// RTP datagrams ([`Call::receive`]): jitter buffer and concealment
    /// inbound, one packet per 20 ms slot of our clock outbound.
    #[default]
    Rtp,
    /// An ordered, lossless stream of the codec's bytes without headers
    /// ([`Call::receive_stream`]; slin16 little-endian), as Asterisk's
    /// WebSocket media channel carries it. Inbound frames are heard as they
    /// arrive (nothing to reorder or conceal). Outbound, the far end paces
    /// and queues, so reply frames go out up to `lead` ahead of our clock
    /// (enough that a late wake-up never starves its queue), and after a
    /// stall the clock starts again instead of dropping slots. Silence goes
    /// out on the clock as over RTP ([`SilencePolicy`]): Asterisk 22.10.1's
    /// WebSocket channel plays nothing at all while its queue is empty, so
    /// without it the caller's leg would carry no media between replies. A
    /// far end that sends nothing is heard as silence from [`STREAM_GAP`]
    /// after the frame that did not come.
    Stream {
        /// How far ahead of the 20 ms grid reply audio is handed out.
        lead: Duration,
    },
}

/// What caller speech over a reply does to it the moment it is detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BargeInPolicy {
    /// Drop the reply (the driver decides nothing more).
    #[default]
    Stop,
    /// Pause it: the driver later resumes it ([`Call::resume_speaking`],
    /// the sound was no turn) or drops it ([`Call::stop_speaking`]).
    Pause,
    /// Leave it playing (the driver decides).
    Continue,
}

/// Configuration of one call's media.
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// The format externalMedia was created with.
    pub codec: Codec,
    /// RTP or a stream of frames.
    pub transport: Transport,
    /// Payload type to accept and send; `None` = the codec's Asterisk default.
    pub payload_type: Option<u8>,
    /// Where Asterisk sends from and expects our RTP. `None`: latch the
    /// first source seen (for tests and loopback setups).
    pub peer: Option<SocketAddr>,
    /// How strictly the source is checked against `peer`.
    pub source_policy: SourcePolicy,
    /// Jitter buffer bounds.
    pub jitter: JitterConfig,
    /// Endpointing thresholds.
    pub endpoint: EndpointConfig,
    /// What is sent while the agent is silent.
    pub silence: SilencePolicy,
    /// What a barge-in does to the reply, at once (within one frame).
    pub barge_in: BargeInPolicy,
    /// Bound of queued reply audio.
    pub max_reply: Duration,
    /// Seed for the random initial sequence number, timestamp and SSRC.
    pub seed: u64,
    /// Our own echo in the caller's audio: cancelled and kept from
    /// counting as the caller.
    pub echo: EchoConfig,
}

impl CallConfig {
    /// Defaults for `codec`, with `seed` for the random RTP identifiers.
    pub fn new(codec: Codec, seed: u64) -> Self {
        Self {
            codec,
            transport: Transport::Rtp,
            payload_type: None,
            peer: None,
            source_policy: SourcePolicy::Strict,
            jitter: JitterConfig::default(),
            endpoint: EndpointConfig::default(),
            silence: SilencePolicy::SendSilence,
            barge_in: BargeInPolicy::Stop,
            max_reply: Duration::from_secs(60),
            seed,
            echo: EchoConfig::default(),
        }
    }
}

/// Why a call could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The codec could not be initialised.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A resampler could not be built.
    #[error(transparent)]
    Resample(#[from] ResampleError),
    /// Reply audio could not be queued.
    #[error(transparent)]
    Playout(#[from] PlayoutError),
}

/// Kinds of rejected input, reported (rate-limited) as events so the
/// driver can log them once with the call's context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not parseable as RTP.
    Malformed,
    /// Unexpected payload type.
    PayloadType,
    /// From an address other than the peer.
    Source,
    /// From an SSRC other than the stream's.
    ForeignSsrc,
    /// Undecodable payload.
    Decode,
}

/// What the call reports to its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    /// The caller started speaking.
    SpeechStarted {
        /// Position of the first voiced frame.
        at: MediaPosition,
        /// Whether the agent was talking at the time.
        barge_in: bool,
    },
    /// The caller finished an utterance.
    SpeechEnded(Utterance),
    /// The caller paused mid-turn: the utterance so far, for an early
    /// transcript. Answer with [`Call::end_turn`] or [`Call::extend_turn`],
    /// or do nothing and the hangover decides.
    SpeechPaused(Pause),
    /// The caller spoke over the reply; queued reply audio was dropped (if
    /// configured) and pending work for that turn should be cancelled.
    BargeIn {
        /// Position of the first voiced frame.
        at: MediaPosition,
    },
    /// The first packet of a reply was handed out at `at`.
    ReplyStarted {
        /// Time of the transmit.
        at: Instant,
    },
    /// The reply queue ran empty.
    PlayoutFinished,
    /// The far end began to play the reply started last, at `at` (a
    /// stream transport's mark came back: [`Call::reply_heard`]). Over RTP
    /// the packet plays as it leaves, and this never comes.
    ReplyHeard {
        /// When the far end said so.
        at: Instant,
    },
    /// Input was rejected; sent on the 1st, 2nd, 4th, 8th… occurrence.
    InputRejected {
        /// Kind of rejection.
        kind: Rejection,
        /// Occurrences so far.
        count: u64,
    },
}

/// A datagram to send.
#[derive(Debug, PartialEq, Eq)]
pub struct Transmit<'a> {
    /// The peer, when known.
    pub destination: Option<SocketAddr>,
    /// The RTP packet.
    pub data: &'a [u8],
    /// The first frame of a reply: a stream edge marks it, so the far end
    /// can say when it began to play ([`Call::reply_heard`]).
    pub first_of_reply: bool,
}

/// The sans-IO media state machine of one call.
pub struct Call {
    config: CallConfig,
    payload_type: u8,
    peer: Option<SocketAddr>,
    jitter: JitterBuffer,
    decoder: Decoder,
    decode_buf: Vec<i16>,
    fifo: Vec<i16>,
    fifo_len: usize,
    fifo_ts: u32,
    expected_ts: Option<u32>,
    last_good: Vec<i16>,
    conceal_run: u32,
    inbound: Resampler,
    frame_f32: Vec<f32>,
    frame_16k: Vec<f32>,
    vad: Box<dyn Vad>,
    endpointer: Endpointer,
    playout: Playout,
    tx: Vec<u8>,
    /// A reply's first packet fell into a skipped slot: the next audio
    /// packet carries the marker, so the far end still sees the talkspurt.
    marker_owed: bool,
    fec: Vec<u8>,
    events: VecDeque<CallEvent>,
    stats: CallStats,
    next_tick: Option<Instant>,
    next_send: Instant,
    /// Start of the send grid: inbound frames are placed on it for the
    /// echo canceller.
    send_origin: Instant,
    echo: EchoCanceller,
    /// Last inbound timestamp and its place on the send timeline.
    echo_anchor: Option<(u32, u64)>,
    /// The inbound timestamp expected before a run of empty ticks began,
    /// and the run's length (see the underrun count in `inbound_tick`).
    empty_ticks: Option<(u32, u64)>,
    /// Arrival of the last stored inbound packet (the call's creation
    /// before the first): a long gap tells the echo canceller the line
    /// returned nothing of what we said meanwhile.
    last_arrival: Instant,
    /// [`Transport::Stream`]: bytes of an inbound frame not yet whole.
    stream_in: Vec<u8>,
    /// Its running sample clock (in codec ticks), standing in for RTP
    /// timestamps.
    stream_ts: u32,
    /// The outbound frame in the stream's byte order.
    stream_out: Vec<u8>,
}

impl Call {
    /// A call with the built-in energy VAD, its clocks starting at `now`.
    pub fn new(config: CallConfig, now: Instant) -> Result<Self, CallError> {
        Self::with_vad(config, Box::new(EnergyVad::default()), now)
    }

    /// A call with a given VAD (e.g. Silero from `aiagc-models`).
    pub fn with_vad(
        config: CallConfig,
        vad: Box<dyn Vad>,
        now: Instant,
    ) -> Result<Self, CallError> {
        let codec = config.codec;
        let mut rng = rand::rngs::SmallRng::seed_from_u64(config.seed);
        let initial = (
            rng.random::<u16>(),
            rng.random::<u32>(),
            rng.random::<u32>(),
        );
        let payload_type = config.payload_type.unwrap_or(codec.default_payload_type());
        let n = codec.frame_samples();
        Ok(Self {
            payload_type,
            // Latching ignores the reported address until the first packet.
            peer: config
                .peer
                .filter(|_| config.source_policy != SourcePolicy::Latch),
            jitter: JitterBuffer::new(config.jitter, codec.clock_rate()),
            decoder: Decoder::new(codec)?,
            decode_buf: vec![0; MAX_DECODED_SAMPLES],
            fifo: vec![0; MAX_DECODED_SAMPLES + 2 * n],
            fifo_len: 0,
            fifo_ts: 0,
            expected_ts: None,
            last_good: vec![0; n],
            conceal_run: 0,
            inbound: Resampler::new(codec.pcm_rate(), 16000)?,
            frame_f32: vec![0.0; n],
            frame_16k: vec![0.0; FRAME_16K],
            vad,
            endpointer: Endpointer::new(config.endpoint),
            playout: Playout::new(
                codec,
                payload_type,
                config.silence,
                initial,
                config.max_reply,
            )?,
            tx: vec![0; MAX_PAYLOAD + 64],
            marker_owed: false,
            fec: vec![0; MAX_PAYLOAD],
            events: VecDeque::with_capacity(64),
            stats: CallStats::default(),
            next_tick: None,
            next_send: now,
            send_origin: now,
            echo: EchoCanceller::new(config.echo, codec.pcm_rate(), n),
            echo_anchor: None,
            last_arrival: now,
            empty_ticks: None,
            stream_in: Vec::with_capacity(MAX_PAYLOAD),
            stream_ts: 0,
            stream_out: vec![0; MAX_PAYLOAD],
            config,
        })
    }

    /// The codec of this call.
    pub fn codec(&self) -> Codec {
        self.config.codec
    }

    /// Our outbound SSRC.
    pub fn ssrc(&self) -> u32 {
        self.playout.ssrc()
    }

    /// The peer RTP is pinned to (reported or latched).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CallStats {
        let mut s = self.stats.clone();
        s.jitter = self.jitter.jitter();
        s.target_delay = self.jitter.target_delay();
        s.resyncs = self.jitter.resyncs();
        s.dropped_for_delay = self.jitter.dropped_for_delay();
        s
    }

    /// The last 16 kHz frame played to the VAD (a tap for recording).
    pub fn last_frame(&self) -> &[f32] {
        &self.frame_16k
    }

    /// Whether reply audio is queued or playing.
    pub fn is_speaking(&self) -> bool {
        self.playout.is_speaking()
    }

    /// Reply audio still queued, as play time: audio queued now starts
    /// this much later (one 20 ms frame per tick).
    pub fn queued_audio(&self) -> Duration {
        Duration::from_secs_f64(
            self.playout.queued_samples() as f64 / self.config.codec.pcm_rate() as f64,
        )
    }

    fn reject(&mut self, kind: Rejection) {
        let count = match kind {
            Rejection::Malformed => &mut self.stats.malformed,
            Rejection::PayloadType => &mut self.stats.payload_type_violations,
            Rejection::Source => &mut self.stats.source_violations,
            Rejection::ForeignSsrc => &mut self.stats.foreign_ssrc,
            Rejection::Decode => &mut self.stats.decode_errors,
        };
        *count += 1;
        let count = *count;
        if count.is_power_of_two() && self.events.len() < self.events.capacity() {
            self.events
                .push_back(CallEvent::InputRejected { kind, count });
        }
    }

    fn source_ok(&mut self, from: SocketAddr) -> bool {
        match self.peer {
            None => {
                self.peer = Some(from);
                true
            }
            Some(peer) => match self.config.source_policy {
                SourcePolicy::Strict | SourcePolicy::Latch => peer == from,
                SourcePolicy::AddressOnly => peer.ip() == from.ip(),
            },
        }
    }

    /// Handles one datagram that arrived from `from` at `now`. Never fails:
    /// bad input is counted (see [`CallStats`]) and reported as
    /// [`CallEvent::InputRejected`].
    pub fn receive(&mut self, from: SocketAddr, datagram: &[u8], now: Instant) {
        self.stats.datagrams += 1;
        if !self.source_ok(from) {
            return self.reject(Rejection::Source);
        }
        let view = match packet::parse(datagram) {
            Ok(v) => v,
            Err(_) => return self.reject(Rejection::Malformed),
        };
        if view.payload_type != self.payload_type {
            return self.reject(Rejection::PayloadType);
        }
        match self.jitter.push(&view, now) {
            Push::Stored | Push::Resynced => {
                self.stats.received += 1;
                self.arrived(now);
            }
            Push::Reordered => {
                self.stats.received += 1;
                self.stats.reordered += 1;
                self.arrived(now);
            }
            Push::Duplicate => self.stats.duplicate += 1,
            Push::Late => self.stats.late += 1,
            Push::ForeignSsrc => self.reject(Rejection::ForeignSsrc),
            Push::TooLarge => self.reject(Rejection::Malformed),
        }
        if self.next_tick.is_none() && self.jitter.started() {
            self.next_tick = Some(now + self.jitter.initial_delay());
        }
    }

    /// Handles bytes of a [`Transport::Stream`] that arrived at `now`:
    /// every whole frame among them is heard at once (VAD, endpointing,
    /// echo), a partial one waits for the next bytes. Never fails: on an
    /// RTP call the bytes are counted as malformed.
    pub fn receive_stream(&mut self, bytes: &[u8], now: Instant) {
        self.stats.datagrams += 1;
        let Transport::Stream { .. } = self.config.transport else {
            return self.reject(Rejection::Malformed);
        };
        let Some(frame_bytes) = stream_frame_bytes(self.config.codec) else {
            return self.reject(Rejection::PayloadType);
        };
        self.arrived(now);
        let mut rest = bytes;
        while !rest.is_empty() {
            let take = (frame_bytes - self.stream_in.len()).min(rest.len());
            self.stream_in.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.stream_in.len() < frame_bytes {
                break;
            }
            let decoded = if self.config.codec == Codec::Slin16 {
                for (d, b) in self
                    .decode_buf
                    .iter_mut()
                    .zip(self.stream_in.chunks_exact(2))
                {
                    *d = i16::from_le_bytes([b[0], b[1]]);
                }
                Ok(frame_bytes / 2)
            } else {
                self.decoder.decode(&self.stream_in, &mut self.decode_buf)
            };
            self.stream_in.clear();
            self.stats.received += 1;
            let n = self.config.codec.frame_samples();
            let k = match decoded {
                Ok(k) => k,
                Err(_) => {
                    self.reject(Rejection::Decode);
                    self.decode_buf[..n].fill(0);
                    n
                }
            };
            if self.fifo_len == 0 {
                self.fifo_ts = self.stream_ts;
            }
            self.stream_ts = self.stream_ts.wrapping_add(self.config.codec.ticks(k));
            self.expected_ts = Some(self.stream_ts);
            self.conceal_run = 0;
            self.append_fifo(k);
            while self.fifo_len >= n {
                self.play_frame(now);
            }
        }
        // Silence is heard by the clock if nothing more comes.
        self.next_tick = Some(now + FRAME + STREAM_GAP);
    }

    /// A packet arrived at `now`: after a gap longer than any echo takes to
    /// come back, the far end was silent while we (perhaps) talked.
    fn arrived(&mut self, now: Instant) {
        let gap = now.saturating_duration_since(self.last_arrival);
        if gap > self.config.echo.max_delay + 4 * FRAME {
            let pos = |t: Instant| {
                let slots =
                    t.saturating_duration_since(self.send_origin).as_micros() / FRAME.as_micros();
                slots as u64 * self.config.codec.frame_samples() as u64
            };
            self.echo.far_end_silent(pos(self.last_arrival), pos(now));
        }
        self.last_arrival = now;
    }

    /// The next instant at which [`Call::handle_timeout`] or
    /// [`Call::poll_transmit`] has work.
    pub fn poll_timeout(&self) -> Instant {
        let send = match self.config.transport {
            Transport::Rtp => self.next_send,
            // Ahead by the lead only while there is a reply to send (see
            // `poll_stream`).
            Transport::Stream { lead } if self.playout.is_speaking() => {
                self.next_send.checked_sub(lead).unwrap_or(self.next_send)
            }
            Transport::Stream { .. } => self.next_send,
        };
        match self.next_tick {
            Some(t) => t.min(send),
            None => send,
        }
    }

    /// Plays out every inbound frame due by `now` (one per 20 ms since the
    /// first packet plus the initial delay), running VAD and endpointing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut ticks = 0;
        while let Some(t) = self.next_tick {
            if t > now {
                break;
            }
            if ticks == MAX_CATCH_UP_TICKS {
                // The driver was stalled for over 10 s: restart the clock.
                self.next_tick = Some(now + FRAME);
                break;
            }
            match self.config.transport {
                Transport::Rtp => self.inbound_tick(t),
                Transport::Stream { .. } => self.silent_tick(t),
            }
            self.next_tick = Some(t + FRAME);
            ticks += 1;
        }
    }

    /// [`Transport::Stream`]: nothing came for a frame and [`STREAM_GAP`]:
    /// the far end is silent (Asterisk sends only what its bridge gives
    /// the channel), so silence is heard by the clock, and turns end.
    fn silent_tick(&mut self, at: Instant) {
        let n = self.config.codec.frame_samples();
        if self.fifo_len == 0 {
            self.fifo_ts = self.stream_ts;
        }
        self.decode_buf[..n].fill(0);
        self.append_fifo(n);
        self.stream_ts = self.stream_ts.wrapping_add(self.config.codec.ticks(n));
        self.expected_ts = Some(self.stream_ts);
        // Not the caller's audio: the echo canceller must not learn from it.
        self.conceal_run = self.conceal_run.max(1);
        while self.fifo_len >= n {
            self.play_frame(at);
        }
    }

    fn append_fifo(&mut self, samples: usize) {
        let room = self.fifo.len() - self.fifo_len;
        let samples = samples.min(room);
        self.fifo[self.fifo_len..self.fifo_len + samples]
            .copy_from_slice(&self.decode_buf[..samples]);
        self.fifo_len += samples;
    }

    /// Fills one frame of concealment into the FIFO: the codec's own
    /// (Opus FEC from the next packet's first `fec_len` bytes in `self.fec`,
    /// else its PLC), or for G.711/slin16 the last good frame repeated with
    /// a fade to silence over 60 ms.
    fn conceal(&mut self, fec_len: Option<usize>) {
        let n = self.config.codec.frame_samples();
        self.stats.concealed_frames += 1;
        self.conceal_run += 1;
        if self.fifo_len == 0 {
            self.fifo_ts = self.expected_ts.unwrap_or(self.fifo_ts);
        }
        let fec = fec_len.map(|len| &self.fec[..len]);
        let produced = match self.decoder.conceal(fec, &mut self.decode_buf[..n]) {
            Some(Ok(k)) => k,
            Some(Err(_)) => {
                self.decode_buf[..n].fill(0);
                n
            }
            None => {
                let k = self.conceal_run as f32;
                let (g0, g1) = ((1.0 - (k - 1.0) / 3.0).max(0.0), (1.0 - k / 3.0).max(0.0));
                for i in 0..n {
                    let g = g0 + (g1 - g0) * i as f32 / n as f32;
                    self.decode_buf[i] = (self.last_good[i] as f32 * g) as i16;
                }
                n
            }
        };
        self.append_fifo(produced);
        if let Some(ts) = self.expected_ts {
            self.expected_ts = Some(ts.wrapping_add(self.config.codec.ticks(produced)));
        }
    }

    /// Where the inbound frame with RTP timestamp `ts` sits on our send
    /// timeline. The far end mixes our echo into its stream on its own
    /// media clock, so the frame is placed by its timestamp: our jitter
    /// buffer growing or shrinking does not move the echo. The first frame
    /// (and any timestamp jump) is anchored to the send slot current at
    /// `at`; the delay estimate absorbs that offset.
    fn echo_position(&mut self, at: Instant, ts: u32) -> u64 {
        let n = self.config.codec.frame_samples() as u64;
        let by_clock = || {
            let slot =
                at.saturating_duration_since(self.send_origin).as_micros() / FRAME.as_micros();
            slot as u64 * n
        };
        let pos = match self.echo_anchor {
            Some((last_ts, last_pos)) => {
                let delta = self
                    .config
                    .codec
                    .samples_of_ticks(ts.wrapping_sub(last_ts) as i32 as i64);
                // More than a second off: a new stream, anchor again.
                if delta.unsigned_abs() > self.config.codec.pcm_rate() as u64 {
                    by_clock()
                } else {
                    last_pos.saturating_add_signed(delta)
                }
            }
            None => by_clock(),
        };
        self.echo_anchor = Some((ts, pos));
        pos
    }

    /// Plays out the inbound frame due at `at` (on the inbound grid).
    fn inbound_tick(&mut self, at: Instant) {
        let n = self.config.codec.frame_samples();
        let codec = self.config.codec;
        while self.fifo_len < n {
            let pop = self.jitter.pop_at(at);
            match pop {
                Pop::Packet {
                    payload, timestamp, ..
                } => {
                    // Empty ticks before this packet were our fault (an
                    // underrun) only if the sender's stream went on without
                    // a gap; a far end that paused (no RTP while silent,
                    // timestamps moved on) is no underrun.
                    if let Some((expected, ticks)) = self.empty_ticks.take() {
                        if expected == timestamp {
                            self.stats.underruns += ticks;
                        }
                    }
                    if let Some(expected) = self.expected_ts {
                        if expected != timestamp {
                            self.stats.timestamp_jumps += 1;
                        }
                    }
                    match self.decoder.decode(payload, &mut self.decode_buf) {
                        Ok(k) => {
                            if self.fifo_len == 0 {
                                self.fifo_ts = timestamp;
                            }
                            self.expected_ts = Some(timestamp.wrapping_add(codec.ticks(k)));
                            self.conceal_run = 0;
                            self.append_fifo(k);
                        }
                        Err(_) => {
                            self.expected_ts = Some(timestamp);
                            self.reject(Rejection::Decode);
                            self.conceal(None);
                        }
                    }
                }
                Pop::Lost { next } => {
                    let fec_len = next.map(|p| {
                        let len = p.len().min(self.fec.len());
                        self.fec[..len].copy_from_slice(&p[..len]);
                        len
                    });
                    self.stats.lost += 1;
                    self.conceal(fec_len);
                }
                Pop::Underrun => {
                    if self.jitter.started() {
                        let expected = self.expected_ts.unwrap_or(self.fifo_ts);
                        self.empty_ticks.get_or_insert((expected, 0)).1 += 1;
                    }
                    self.conceal(None);
                    break;
                }
            }
        }
        self.play_frame(at);
    }

    /// Hears the next 20 ms of the FIFO (played out at `at`): echo, VAD,
    /// endpointing.
    fn play_frame(&mut self, at: Instant) {
        let n = self.config.codec.frame_samples();
        let codec = self.config.codec;
        // One 20 ms frame out of the FIFO.
        let take = n.min(self.fifo_len);
        for (dst, &src) in self.frame_f32.iter_mut().zip(&self.fifo[..take]) {
            *dst = src as f32 / 32768.0;
        }
        self.frame_f32[take..].fill(0.0);
        if self.conceal_run == 0 && take == n {
            self.last_good.copy_from_slice(&self.fifo[..n]);
        }
        self.fifo.copy_within(take..self.fifo_len, 0);
        self.fifo_len -= take;
        let position = MediaPosition {
            elapsed: self.media_time(),
            rtp_timestamp: self.fifo_ts,
        };
        self.fifo_ts = self.fifo_ts.wrapping_add(codec.ticks(take));
        self.stats.frames_played += 1;

        let echo_pos = self.echo_position(at, position.rtp_timestamp);
        let concealed = self.conceal_run > 0;
        let echo = self.echo.process(echo_pos, &mut self.frame_f32, concealed);
        if self
            .inbound
            .process_chunk(&self.frame_f32, &mut self.frame_16k)
            .is_err()
        {
            self.frame_16k.fill(0.0);
        }
        let mut probability = self.vad.speech_probability(&self.frame_16k);
        if echo == EchoVerdict::Echo {
            if probability > 0.5 {
                self.stats.echo_suppressed += 1;
            }
            probability = 0.0;
        }
        let talking = self.playout.is_speaking();
        match self
            .endpointer
            .push(&self.frame_16k, probability, position, talking)
        {
            Some(Endpoint::Started { at, barge_in }) => {
                self.events
                    .push_back(CallEvent::SpeechStarted { at, barge_in });
                if barge_in {
                    self.events.push_back(CallEvent::BargeIn { at });
                    match self.config.barge_in {
                        BargeInPolicy::Stop => self.stop_speaking(),
                        BargeInPolicy::Pause => self.pause_speaking(),
                        BargeInPolicy::Continue => {}
                    }
                }
            }
            Some(Endpoint::Ended(utterance)) => {
                self.events.push_back(CallEvent::SpeechEnded(utterance))
            }
            Some(Endpoint::Paused(pause)) => self.events.push_back(CallEvent::SpeechPaused(pause)),
            None => {}
        }
    }

    /// The next outbound packet if its 20 ms slot has come by `now`. Call
    /// until `None` after every wake-up. Slots more than 60 ms overdue are
    /// consumed without sending, so a stalled driver never bursts.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit<'_>> {
        if let Transport::Stream { lead } = self.config.transport {
            return self.poll_stream(now, lead);
        }
        while self.next_send <= now {
            let due = self.next_send;
            self.next_send += FRAME;
            let Some(sent) = self.send_tick(now) else {
                continue;
            };
            if now.saturating_duration_since(due) > MAX_SEND_LATENESS {
                self.stats.send_ticks_skipped += 1;
                self.marker_owed = (self.marker_owed || sent.first_of_reply) && !sent.finished;
                continue;
            }
            // The playout marks a reply's first packet; one owed by a
            // skipped slot goes on the next audio packet.
            let owed = self.marker_owed && sent.audio;
            if owed {
                packet::set_marker(&mut self.tx);
            }
            let first_of_reply = sent.first_of_reply || owed;
            self.marker_owed = false;
            self.stats.sent += 1;
            if sent.audio {
                self.stats.sent_audio += 1;
            }
            return Some(Transmit {
                destination: self.peer,
                data: &self.tx[..sent.len],
                first_of_reply,
            });
        }
        None
    }

    /// One outbound slot: the playout's next frame into `tx` (or none), the
    /// echo canceller's reference, the reply's start and end as events.
    fn send_tick(&mut self, now: Instant) -> Option<crate::playout::Sent> {
        let ticked = self.playout.tick(&mut self.tx);
        self.echo.push_reference(self.playout.last_frame());
        let sent = ticked.ok().flatten()?;
        if sent.first_of_reply {
            self.events.push_back(CallEvent::ReplyStarted { at: now });
        }
        if sent.finished {
            self.events.push_back(CallEvent::PlayoutFinished);
        }
        Some(sent)
    }

    /// [`Call::poll_transmit`] of a [`Transport::Stream`]: the next reply
    /// frame if its slot is no more than `lead` away, in the stream's byte
    /// order.
    fn poll_stream(&mut self, now: Instant, lead: Duration) -> Option<Transmit<'_>> {
        // Held up (the far end said stop, or we stalled): start the clock
        // again rather than skip what the caller has not heard.
        if now.saturating_duration_since(self.next_send) > MAX_SEND_LATENESS {
            self.next_send = now;
        }
        // Silence goes out on the clock, so the far end's queue is all but
        // empty when a reply begins: its first `lead` goes out at once, a
        // cushion against our late wake-ups.
        while self.next_send
            <= now
                + if self.playout.is_speaking() {
                    lead
                } else {
                    Duration::ZERO
                }
        {
            self.next_send += FRAME;
            let Some(sent) = self.send_tick(now) else {
                continue;
            };
            let Ok(view) = packet::parse(&self.tx[..sent.len]) else {
                continue;
            };
            let payload = view.payload;
            let len = payload.len().min(self.stream_out.len());
            if self.config.codec == Codec::Slin16 {
                // RTP's slin16 is big-endian, the stream's little-endian.
                for (d, s) in self.stream_out[..len]
                    .chunks_exact_mut(2)
                    .zip(payload.chunks_exact(2))
                {
                    d[0] = s[1];
                    d[1] = s[0];
                }
            } else {
                self.stream_out[..len].copy_from_slice(&payload[..len]);
            }
            self.stats.sent += 1;
            if sent.audio {
                self.stats.sent_audio += 1;
            }
            return Some(Transmit {
                destination: None,
                data: &self.stream_out[..len],
                first_of_reply: sent.first_of_reply,
            });
        }
        None
    }

    /// The far end says the reply whose first frame was marked began to
    /// play at `at` (the stream edge's mark came back): what the caller
    /// heard, rather than what we handed out ahead of its clock.
    pub fn reply_heard(&mut self, at: Instant) {
        self.events.push_back(CallEvent::ReplyHeard { at });
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    /// Queues reply audio (mono `f32`, any rate that is a multiple of 50 Hz).
    /// Each call is one complete segment, e.g. one synthesized sentence.
    pub fn speak(&mut self, pcm: &[f32], sample_rate: u32) -> Result<(), CallError> {
        Ok(self.playout.speak(pcm, sample_rate)?)
    }

    /// The PCM (at the codec's rate) of the last outbound tick, for
    /// recordings of what the caller heard.
    pub fn last_sent_frame(&self) -> &[i16] {
        self.playout.last_frame()
    }

    /// Media time heard so far (20 ms a frame):
    /// the clock of [`MediaPosition::elapsed`].
    pub fn media_time(&self) -> Duration {
        FRAME * self.stats.frames_played as u32
    }

    /// Ends the caller's turn now if they are still silent in pause `id`
    /// (a [`CallEvent::SpeechEnded`] follows); otherwise does nothing.
    pub fn end_turn(&mut self, id: u64) {
        let at = MediaPosition {
            elapsed: self.media_time(),
            rtp_timestamp: self.fifo_ts,
        };
        if let Some(Endpoint::Ended(u)) = self.endpointer.end_now(id, at) {
            self.events.push_back(CallEvent::SpeechEnded(u));
        }
    }

    /// Waits `more` beyond the hangover before ending the turn of pause
    /// `id` (the words so far are clearly unfinished).
    pub fn extend_turn(&mut self, id: u64, more: Duration) {
        self.endpointer.extend(id, more);
    }

    /// The echo canceller's view: estimated delay and learned loss.
    pub fn echo(&self) -> &EchoCanceller {
        &self.echo
    }

    /// Drops queued (or paused) reply audio within one frame (with a 5 ms
    /// fade-out).
    pub fn stop_speaking(&mut self) {
        if self.playout.stop() {
            self.stats.replies_interrupted += 1;
        }
    }

    /// Pauses the reply within one frame (5 ms fade-out), holding the rest.
    pub fn pause_speaking(&mut self) {
        if self.playout.pause() {
            self.stats.replies_paused += 1;
        }
    }

    /// Whether a reply is paused.
    pub fn is_paused(&self) -> bool {
        self.playout.is_paused()
    }

    /// Plays a paused reply again from `from`; returns how much will be
    /// heard twice (`None`: nothing was paused).
    pub fn resume_speaking(&mut self, from: ResumeFrom) -> Option<Duration> {
        let again = self.playout.resume(from)?;
        self.stats.replies_resumed += 1;
        Some(Duration::from_secs_f64(
            again as f64 / self.config.codec.pcm_rate() as f64,
        ))
    }

    /// The far end dropped the last `frames` it was sent before they
    /// played (the stream edge flushed Asterisk's queue at a pause): the
    /// paused reply holds them again ([`Playout::unheard`]). Returns the
    /// play time put back.
    pub fn unheard(&mut self, frames: u64) -> Duration {
        let n = self.config.codec.frame_samples() as u64;
        let back = self.playout.unheard((frames * n) as usize);
        Duration::from_secs_f64(back as f64 / self.config.codec.pcm_rate() as f64)
    }

    /// Reply audio held by a pause, as play time.
    pub fn held_audio(&self) -> Duration {
        Duration::from_secs_f64(
            self.playout.held_samples() as f64 / self.config.codec.pcm_rate() as f64,
        )
    }
}

/// Bytes of one 20 ms frame of `codec` in a headerless stream (`None`:
/// a codec whose frames are not of fixed size).
fn stream_frame_bytes(codec: Codec) -> Option<usize> {
    match codec {
        Codec::Slin16 => Some(640),
        Codec::Ulaw | Codec::Alaw | Codec::G722 => Some(160),
        Codec::Opus => None,
    }
}
