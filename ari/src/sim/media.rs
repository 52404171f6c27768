//! The simulator's RTP: the caller's script out, our packets recorded.

use super::state::{CallerScript, Inner};
use aiagc_engine::impair::{Impairment, Network, RtpSender};
use aiagc_engine::resample::Resampler;
use aiagc_engine::Codec;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

/// One RTP packet the simulator received from the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpRecord {
    /// Arrival time.
    pub at: Instant,
    /// Sender.
    pub from: SocketAddr,
    /// Sequence number.
    pub sequence: u16,
    /// Timestamp.
    pub timestamp: u32,
    /// Marker bit.
    pub marker: bool,
    /// Payload type.
    pub payload_type: u8,
    /// SSRC.
    pub ssrc: u32,
    /// Payload.
    pub payload: Vec<u8>,
    /// The payload decoded (in stream order, at the codec's PCM rate):
    /// what the caller hears of it.
    pub pcm: Vec<i16>,
}

impl RtpRecord {
    /// Whether the packet carries speech-level audio.
    pub fn loud(&self) -> bool {
        self.pcm.iter().any(|s| s.unsigned_abs() > 1000)
    }
}

/// A running RTP stream.
pub(super) struct MediaHandle {
    pub bridge: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    /// Stopped by its signal alone: the task hands its connection back.
    graceful: bool,
}

impl MediaHandle {
    pub fn new(
        bridge: String,
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<()>,
    ) -> Self {
        Self {
            bridge,
            stop: Some(stop),
            task,
            graceful: true,
        }
    }

    pub fn stop(mut self) {
        let signalled = self.stop.take().is_some_and(|s| s.send(()).is_ok());
        if !(self.graceful && signalled) {
            self.task.abort();
        }
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

pub(super) struct Stream {
    pub socket: Arc<UdpSocket>,
    pub target: SocketAddr,
    pub codec: Codec,
    pub records: Arc<Mutex<Vec<RtpRecord>>>,
    pub script: CallerScript,
    pub caller_id: String,
    pub bridge_id: String,
    pub impairment: Impairment,
    pub echo: Option<super::EchoPath>,
    pub seed: u64,
    pub mouth: Arc<Mutex<Mouth>>,
    /// Send no RTP for silent frames (a `Local/` channel outside
    /// `Playback()`, a phone with VAD); else every 20 ms.
    pub suppress_silence: bool,
}

/// What the caller says live, after its script (see `Simulator::say`).
#[derive(Default)]
pub struct Mouth {
    /// Audio at the codec's PCM rate, not yet sent.
    queue: std::collections::VecDeque<i16>,
    /// Samples queued so far, and where each utterance starts among them.
    queued: u64,
    starts: std::collections::VecDeque<u64>,
    /// Samples sent so far.
    sent: u64,
    /// When the first frame of each utterance was sent.
    pub spoken: Vec<Instant>,
}

impl Mouth {
    /// Queues one utterance (16 kHz) for a stream in `codec`.
    pub fn say(&mut self, audio: &[i16], codec: Codec) {
        let pcm = at_codec_rate(audio, codec);
        self.starts.push_back(self.queued);
        self.queued += pcm.len() as u64;
        self.queue.extend(pcm);
    }

    /// Fills `out` (one frame) from the queue, zero-padded; false if empty.
    pub(super) fn take(&mut self, out: &mut [i16], at: Instant) -> bool {
        if self.queue.is_empty() {
            return false;
        }
        let end = self.sent + out.len() as u64;
        while self.starts.front().is_some_and(|&s| s < end) {
            self.starts.pop_front();
            self.spoken.push(at);
        }
        for o in out.iter_mut() {
            *o = self.queue.pop_front().unwrap_or(0);
        }
        self.sent = end;
        true
    }
}

/// The caller's frame number `frame` of `n` samples: the script, then what
/// [`Mouth::say`] queued, then `silence`; and whether it is inside a
/// `Playback()` (sent even when quiet).
#[allow(clippy::too_many_arguments)]
pub(super) fn caller_frame<'a>(
    pcm: &'a [i16],
    playing: &[bool],
    frame: u64,
    n: usize,
    mouth: &Mutex<Mouth>,
    live: &'a mut [i16],
    silence: &'a [i16],
    at: Instant,
) -> (&'a [i16], bool) {
    let lo = frame as usize * n;
    let spoken = lo >= pcm.len()
        && mouth
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(live, at);
    let chunk: &[i16] = if lo < pcm.len() {
        &pcm[lo..(lo + n).min(pcm.len())]
    } else if spoken {
        live
    } else {
        silence
    };
    let in_playback = playing.get(frame as usize).copied().unwrap_or(spoken);
    (chunk, in_playback)
}

/// The script's 16 kHz audio at the codec's PCM rate.
pub(super) fn at_codec_rate(audio: &[i16], codec: Codec) -> Vec<i16> {
    if codec.pcm_rate() == 16000 {
        return audio.to_vec();
    }
    let Ok(mut r) = Resampler::new(16000, codec.pcm_rate()) else {
        return Vec::new();
    };
    let input: Vec<f32> = audio.iter().map(|&s| s as f32 / 32768.0).collect();
    let mut out = Vec::with_capacity(audio.len());
    let mut sink = |o: &[f32]| out.extend(o.iter().map(|&x| (x.clamp(-1.0, 1.0) * 32767.0) as i16));
    let delay = r.delay_samples();
    if r.push(&input, &mut sink).is_err() || r.flush(&mut sink).is_err() {
        return Vec::new();
    }
    out.drain(..delay.min(out.len()));
    out
}

pub(super) fn start(inner: Arc<Inner>, s: Stream) -> MediaHandle {
    let (stop_tx, stop_rx) = oneshot::channel();
    let bridge = s.bridge_id.clone();
    let task = tokio::spawn(run(inner, s, stop_rx));
    MediaHandle {
        bridge,
        stop: Some(stop_tx),
        task,
        graceful: false,
    }
}

async fn run(inner: Arc<Inner>, s: Stream, mut stop: oneshot::Receiver<()>) {
    let pcm = at_codec_rate(&s.script.audio, s.codec);
    let n = s.codec.frame_samples();
    let Ok(sender) = RtpSender::new(s.codec, (s.seed & 0xFFFF) as u16, 0, (s.seed >> 16) as u32)
    else {
        return;
    };
    let mut sender = sender.with_end_stamps();
    // What Asterisk does with each direction of this format (observed on
    // 22.10.1): Opus has no transcoder, so nothing flows either way; a
    // dynamic payload type (slin16) is sent to us but what we send back is
    // dropped without a trace.
    let sends = s.codec != aiagc_engine::Codec::Opus;
    let plays = s.codec.rtp_playback().is_ok();
    let mut decoder = aiagc_engine::codec::Decoder::new(s.codec).ok();
    let mut decoded = vec![0i16; aiagc_engine::codec::MAX_DECODED_SAMPLES];
    let mut dropped = 0u64;
    let mut net = Network::new(s.impairment, s.seed);
    let start = Instant::now();
    let frames_of_script = pcm.len().div_ceil(n) as u64;
    let hangup_at = s
        .script
        .hangup_after
        .map(|d| start + Duration::from_millis(20 * frames_of_script) + d);
    let mut frame: u64 = 0;
    let mut buf = vec![0u8; 2048];
    let silence = vec![0i16; n];
    let mut live = vec![0i16; n];
    let mut line = Line::new(s.echo, s.codec, s.seed);
    let playing = playback_frames(&pcm, n);
    loop {
        let next_tick = start + Duration::from_millis(20 * frame);
        let mut wake = net.next_arrival().map_or(next_tick, |a| a.min(next_tick));
        if let Some(h) = hangup_at {
            wake = wake.min(h);
        }
        tokio::select! {
            _ = &mut stop => break,
            r = s.socket.recv_from(&mut buf) => {
                if let Ok((len, from)) = r {
                    if let Ok(v) = aiagc_engine::packet::parse(&buf[..len]) {
                        if !plays {
                            dropped += 1;
                            if dropped == 1 {
                                tracing::debug!(call = %s.caller_id, codec = ?s.codec, "simulator drops RTP in a format Asterisk does not play back");
                            }
                            continue;
                        }
                        let k = decoder
                            .as_mut()
                            .and_then(|d| d.decode(v.payload, &mut decoded).ok())
                            .unwrap_or(0);
                        let rec = RtpRecord { at: Instant::now(), from, sequence: v.sequence, timestamp: v.timestamp, marker: v.marker, payload_type: v.payload_type, ssrc: v.ssrc, payload: v.payload.to_vec(), pcm: decoded[..k].to_vec() };
                        line.heard(&rec.pcm, rec.timestamp, rec.at.saturating_duration_since(start));
                        s.records.lock().unwrap_or_else(|p| p.into_inner()).push(rec);
                    }
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                if hangup_at.is_some_and(|h| now >= h) {
                    // The caller hangs up; this also stops this stream.
                    let inner = inner.clone();
                    let id = s.caller_id.clone();
                    tokio::spawn(async move { inner.hangup(&id, 16); });
                    break;
                }
                while start + Duration::from_millis(20 * frame) <= now {
                    let at = start + Duration::from_millis(20 * frame);
                    let lo = frame as usize * n;
                    let (chunk, in_playback) =
                        caller_frame(&pcm, &playing, frame, n, &s.mouth, &mut live, &silence, at);
                    // A file's last frame is as long as what is left of it:
                    // Asterisk sends it short (a 106-byte µ-law payload was
                    // seen) and the next packet after the gap.
                    let file_ends = s.suppress_silence
                        && in_playback
                        && lo < pcm.len()
                        && !playing.get(frame as usize + 1).copied().unwrap_or(false);
                    let chunk = line.mix(chunk, frame * n as u64);
                    frame += 1;
                    if file_ends && sends {
                        let keep = last_sound(chunk, s.codec);
                        if keep < chunk.len() {
                            net.send(&sender.packet(&chunk[..keep]), at);
                            sender.skip(chunk.len() - keep);
                            continue;
                        }
                    }
                    // The far end sends RTP only while it makes a sound: a
                    // Local channel in Wait() or Record() sends nothing, one
                    // in Playback() every frame of the file, quiet or not.
                    let silent =
                        s.suppress_silence && !in_playback && chunk.iter().all(|&x| x == 0);
                    if !sends || silent {
                        sender.skip(chunk.len());
                        continue;
                    }
                    net.send(&sender.packet(chunk), at);
                }
                while let Some((_, d)) = net.poll(now) {
                    let _ = s.socket.send_to(&d, s.target).await;
                }
            }
        }
    }
}

/// One externalMedia leg of a bridge without a caller.
pub(super) struct RelayLeg {
    pub socket: Arc<UdpSocket>,
    pub target: SocketAddr,
    pub codec: Codec,
}

/// Two externalMedia channels in one bridge: what arrives on either is
/// sent out of the other with that leg's own SSRC, sequence and
/// timestamps, as Asterisk's mixing does; formats it cannot play back are
/// dropped (slin16) or never flow (Opus), as in [`run`].
pub(super) fn start_relay(a: RelayLeg, b: RelayLeg, bridge: &str, seed: u64) -> MediaHandle {
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut state = [
            (seed as u16, 160u32, (seed >> 16) as u32),
            ((seed >> 8) as u16, 160u32, (seed >> 24) as u32 ^ 0x5A5A),
        ];
        let (mut ba, mut bb) = ([0u8; 2048], [0u8; 2048]);
        let mut out = [0u8; 2048];
        loop {
            let (from, len, to) = tokio::select! {
                _ = &mut stop_rx => break,
                r = a.socket.recv_from(&mut ba) => match r { Ok((n, f)) if f == a.target => (0, n, 1), _ => continue },
                r = b.socket.recv_from(&mut bb) => match r { Ok((n, f)) if f == b.target => (1, n, 0), _ => continue },
            };
            let (src_leg, dst_leg) = if from == 0 { (&a, &b) } else { (&b, &a) };
            if src_leg.codec.rtp_playback().is_err() {
                continue;
            }
            let data = if from == 0 { &ba[..len] } else { &bb[..len] };
            let Ok(v) = aiagc_engine::packet::parse(data) else {
                continue;
            };
            let (seq, ts, ssrc) = &mut state[to];
            let payload = v.payload;
            let samples = aiagc_engine::codec::Decoder::new(dst_leg.codec)
                .ok()
                .and_then(|d| d.samples_in(payload).ok())
                .unwrap_or(dst_leg.codec.frame_samples());
            let Ok(n) = aiagc_engine::packet::write(
                &mut out,
                dst_leg.codec.default_payload_type(),
                *seq,
                *ts,
                *ssrc,
                v.marker,
                |p| {
                    let k = payload.len().min(p.len());
                    p[..k].copy_from_slice(&payload[..k]);
                    k
                },
            ) else {
                continue;
            };
            *seq = seq.wrapping_add(1);
            *ts = ts.wrapping_add(dst_leg.codec.ticks(samples));
            let _ = dst_leg.socket.send_to(&out[..n], dst_leg.target).await;
        }
    });
    MediaHandle {
        bridge: bridge.to_owned(),
        stop: Some(stop_tx),
        task,
        graceful: false,
    }
}

/// How much of a file's last frame is the file: up to its last sample
/// with sound, whole G.722 sample pairs (one byte each), at least one.
fn last_sound(chunk: &[i16], codec: Codec) -> usize {
    let end = chunk.iter().rposition(|&x| x != 0).map_or(1, |i| i + 1);
    let end = if codec == Codec::G722 {
        end.div_ceil(2) * 2
    } else {
        end
    };
    end.min(chunk.len())
}

/// Which frames of a script are inside a `Playback()`: every frame with
/// sound, and digital silence shorter than 200 ms between two of them
/// (a pause inside a recording). Longer silence is a `Wait()`.
pub(super) fn playback_frames(pcm: &[i16], n: usize) -> Vec<bool> {
    const WAIT_FRAMES: usize = 10;
    let sound: Vec<bool> = pcm.chunks(n).map(|f| f.iter().any(|&x| x != 0)).collect();
    let mut out = sound.clone();
    let mut i = 0;
    while i < sound.len() {
        if sound[i] {
            i += 1;
            continue;
        }
        let run = sound[i..].iter().take_while(|&&s| !s).count();
        let inside = i > 0 && i + run < sound.len();
        if inside && run < WAIT_FRAMES {
            out[i..i + run].fill(true);
        }
        i += run;
    }
    out
}

/// The line between the caller's mouth and the network: the agent's echo
/// (decoded, delayed, attenuated) and line noise mixed into what the
/// caller sends. The echo is placed by the agent's RTP timestamps, as the
/// far end's own playout would: a fixed, linear path however the packets
/// arrive.
pub(super) struct Line {
    path: Option<super::EchoPath>,
    codec: Codec,
    /// Echo samples waiting to be mixed, a ring indexed by the caller's
    /// sample position.
    ring: Vec<f32>,
    /// Agent timestamp and caller sample position of the first packet.
    anchor: Option<(u32, u64)>,
    mixed: Vec<i16>,
    rng: rand::rngs::SmallRng,
}

impl Line {
    pub(super) fn new(path: Option<super::EchoPath>, codec: Codec, seed: u64) -> Self {
        use rand::SeedableRng;
        Self {
            path,
            codec,
            // Only a line that echoes holds sound.
            ring: if path.is_some() {
                vec![0.0; 4 * codec.pcm_rate() as usize]
            } else {
                Vec::new()
            },
            anchor: None,
            mixed: Vec::new(),
            rng: rand::rngs::SmallRng::seed_from_u64(seed ^ 0xEC40),
        }
    }

    /// An agent packet with `timestamp` arrived `since_start` after the
    /// caller's stream began.
    pub(super) fn heard(&mut self, pcm: &[i16], timestamp: u32, since_start: Duration) {
        let Some(path) = self.path else {
            return;
        };
        let rate = self.codec.pcm_rate() as f64;
        let (ts0, pos0) = *self.anchor.get_or_insert_with(|| {
            (
                timestamp,
                ((since_start + path.delay).as_secs_f64() * rate) as u64,
            )
        });
        let offset = self
            .codec
            .samples_of_ticks(timestamp.wrapping_sub(ts0) as i32 as i64);
        let Some(pos) = pos0.checked_add_signed(offset) else {
            return;
        };
        let len = self.ring.len();
        for (i, &x) in pcm.iter().enumerate() {
            self.ring[(pos as usize + i) % len] = x as f32;
        }
    }

    /// The caller's frame starting at sample `position`, with the echo due
    /// there and the line noise.
    pub(super) fn mix<'a>(&'a mut self, chunk: &'a [i16], position: u64) -> &'a [i16] {
        use rand::Rng;
        let Some(path) = self.path else {
            return chunk;
        };
        let g = 10f32.powf(-path.attenuation_db / 20.0);
        // Uniform noise of the given RMS (uniform on ±a has RMS a/√3).
        let a = path
            .noise_dbfs
            .map_or(0.0, |db| 32768.0 * 10f32.powf(db / 20.0) * 3f32.sqrt());
        let len = self.ring.len();
        self.mixed.clear();
        for (i, &s) in chunk.iter().enumerate() {
            let slot = (position as usize + i) % len;
            let mut x = s as f32 + g * std::mem::take(&mut self.ring[slot]);
            if a > 0.0 {
                x += self.rng.random_range(-a..=a);
            }
            self.mixed.push(x.clamp(-32768.0, 32767.0) as i16);
        }
        &self.mixed
    }
}
