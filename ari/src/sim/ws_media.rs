//! The simulator's WebSocket media channel, as `chan_websocket` of
//! Asterisk 22.10.1 behaves (read in `channels/chan_websocket.c` of the
//! tarball and seen by `tests/asterisk_websocket.rs`): `/media/<id>` with
//! the `media` sub-protocol takes one connection, the channel is answered
//! and enters the app only then, `MEDIA_START` is its first message.
//! Audio we are sent is cut into whole frames (a short tail is dropped)
//! and played from a queue on a 20 ms clock; an empty queue plays nothing.
//! A mark is queued behind the audio and answered when the frame after it
//! is taken; `FLUSH_MEDIA` drops the queue, marks included; `MEDIA_XOFF`
//! at 900 queued frames, `MEDIA_XON` below 800, audio dropped unread at
//! 1000; text over 128 bytes is ignored, a message over 65,500 bytes or a
//! closed connection hangs the channel up.

use super::media::{Line, Mouth, RtpRecord};
use super::state::{CallerScript, Inner};
use aiagc_engine::Codec;
use axum::extract::ws::{Message, WebSocket};
use serde_json::json;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Frames queued at which audio sent is dropped unread.
const QUEUE_MAX: usize = 1000;
/// `MEDIA_XOFF` at this many queued frames…
const XOFF_LEVEL: usize = 900;
/// …`MEDIA_XON` below this many.
const XON_LEVEL: usize = 800;
/// Longest text command read.
const MAX_TEXT: usize = 128;
/// Largest message before the channel is hung up.
const MAX_MESSAGE: usize = 65_500;

/// The WebSocket side of a `transport=websocket` externalMedia channel.
pub(super) struct WsLeg {
    /// The path under `/media/`.
    pub connection_id: String,
    /// The channel's unique id.
    pub channel_id: String,
    /// `f(json)` in the transport data: control messages as JSON.
    pub json: bool,
    /// The app's connection while no stream runs on it.
    socket: Mutex<Option<WebSocket>>,
    /// Whether the app has connected (a second connection is refused).
    pub connected: AtomicBool,
    /// The channel is gone: a stream that ends closes the connection.
    gone: AtomicBool,
}

impl WsLeg {
    pub fn new(connection_id: String, channel_id: String, json: bool) -> Self {
        Self {
            connection_id,
            channel_id,
            json,
            socket: Mutex::new(None),
            connected: AtomicBool::new(false),
            gone: AtomicBool::new(false),
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<WebSocket>> {
        self.socket.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds the app's connection until a stream takes it.
    pub fn attach(&self, socket: WebSocket) {
        self.put_back(socket);
    }

    fn take(&self) -> Option<WebSocket> {
        self.slot().take()
    }

    fn put_back(&self, socket: WebSocket) {
        if self.gone.load(Ordering::SeqCst) {
            close_later(socket);
            return;
        }
        *self.slot() = Some(socket);
        // The channel may have gone while we stored it.
        if self.gone.load(Ordering::SeqCst) {
            if let Some(s) = self.take() {
                close_later(s);
            }
        }
    }

    /// Connected and not hung up.
    pub fn is_open(&self) -> bool {
        self.connected.load(Ordering::SeqCst) && !self.gone.load(Ordering::SeqCst)
    }

    /// The channel was hung up: Asterisk closes the connection.
    pub fn hung_up(&self) {
        self.gone.store(true, Ordering::SeqCst);
        if let Some(s) = self.take() {
            close_later(s);
        }
    }

    /// `MEDIA_START` for `channel` (its name) in `codec`.
    pub fn media_start(&self, channel: &str, codec: Codec) -> String {
        let size = frame_bytes(codec);
        let format = codec.asterisk_format();
        if self.json {
            json!({"event": "MEDIA_START", "connection_id": self.connection_id, "channel": channel,
                "channel_id": self.channel_id, "format": format, "optimal_frame_size": size,
                "ptime": 20, "channel_variables": {}})
            .to_string()
        } else {
            format!(
                "MEDIA_START connection_id:{} channel:{channel} channel_id:{} format:{format} optimal_frame_size:{size} ptime:20",
                self.connection_id, self.channel_id
            )
        }
    }
}

fn close_later(mut socket: WebSocket) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            let _ = socket.send(Message::Close(None)).await;
        });
    }
}

/// Bytes of one 20 ms frame in `codec` (slin16: 640).
pub(super) fn frame_bytes(codec: Codec) -> usize {
    match codec {
        Codec::Slin16 => codec.frame_samples() * 2,
        // G.711 one byte a sample; G.722 64 kbit/s.
        _ => 160,
    }
}

/// What Asterisk's queue does, sans-IO: audio and commands in, one frame
/// out per tick, the text messages it says on the way.
pub(super) struct Playout {
    queue: VecDeque<Queued>,
    frames: usize,
    full: bool,
    paused: bool,
    report_drained: bool,
    frame: usize,
    json: bool,
    channel_id: String,
    /// Messages and commands it could not use (counted, as Asterisk logs them).
    pub ignored: u64,
}

enum Queued {
    Frame(Vec<u8>),
    Note(String),
}

/// What a command asks of the channel beyond its queue.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Control {
    None,
    Hangup,
}

impl Playout {
    pub fn new(frame: usize, json: bool, channel_id: &str) -> Self {
        Self {
            queue: VecDeque::new(),
            frames: 0,
            full: false,
            paused: false,
            report_drained: false,
            frame,
            json,
            channel_id: channel_id.to_owned(),
            ignored: 0,
        }
    }

    /// Frames queued.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.frames
    }

    fn event(&self, name: &str, id: Option<&str>) -> String {
        if self.json {
            match id {
                Some(id) => {
                    json!({"event": name, "channel_id": self.channel_id, "correlation_id": id})
                }
                None => json!({"event": name, "channel_id": self.channel_id}),
            }
            .to_string()
        } else {
            match id {
                Some(id) if !id.is_empty() => format!("{name} {id}"),
                _ => name.to_owned(),
            }
        }
    }

    /// A binary message: whole frames queued, the rest dropped.
    pub fn audio(&mut self, bytes: &[u8], say: &mut Vec<String>) {
        if self.frames >= QUEUE_MAX {
            self.ignored += 1;
            return;
        }
        for frame in bytes.chunks_exact(self.frame) {
            self.queue.push_back(Queued::Frame(frame.to_vec()));
            self.frames += 1;
            if !self.full && self.frames >= XOFF_LEVEL {
                self.full = true;
                say.push(self.event("MEDIA_XOFF", None));
            }
        }
    }

    /// A text message (a command).
    pub fn command(&mut self, text: &str, say: &mut Vec<String>) -> Control {
        if text.is_empty() || text.len() > MAX_TEXT {
            self.ignored += 1;
            return Control::None;
        }
        let text = text.trim();
        let (command, id) = if self.json {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
                say.push(self.error("Unable to parse JSON command"));
                self.ignored += 1;
                return Control::None;
            };
            let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
            (
                field("command").unwrap_or_default(),
                field("correlation_id"),
            )
        } else {
            let (c, d) = text.split_once(' ').unwrap_or((text, ""));
            (c.to_owned(), Some(d.to_owned()))
        };
        match command.as_str() {
            "HANGUP" => return Control::Hangup,
            "ANSWER" | "START_MEDIA_BUFFERING" | "STOP_MEDIA_BUFFERING" => {}
            "MARK_MEDIA" => {
                let note = self.event("MEDIA_MARK_PROCESSED", Some(id.as_deref().unwrap_or("")));
                self.queue.push_back(Queued::Note(note));
            }
            "FLUSH_MEDIA" => {
                self.queue.clear();
                self.frames = 0;
            }
            "REPORT_QUEUE_DRAINED" => self.report_drained = true,
            "PAUSE_MEDIA" => self.paused = true,
            "CONTINUE_MEDIA" => self.paused = false,
            "GET_STATUS" => say.push(self.status()),
            _ => self.ignored += 1,
        }
        Control::None
    }

    fn error(&self, text: &str) -> String {
        if self.json {
            json!({"event": "ERROR", "channel_id": self.channel_id, "error_text": text}).to_string()
        } else {
            format!("ERROR {text}")
        }
    }

    fn status(&self) -> String {
        if self.json {
            json!({"event": "STATUS", "channel_id": self.channel_id, "queue_length": self.frames,
                "xon_level": XON_LEVEL, "xoff_level": XOFF_LEVEL, "queue_full": self.full,
                "bulk_media": false, "media_paused": self.paused})
            .to_string()
        } else {
            format!(
                "STATUS channel_id:{} queue_length:{} xon_level:{XON_LEVEL} xoff_level:{XOFF_LEVEL} queue_full:{} bulk_media:false media_paused:{}",
                self.channel_id, self.frames, self.full, self.paused
            )
        }
    }

    /// The 20 ms timer: the next frame to play, if any; marks in front of
    /// it are said on the way.
    pub fn tick(&mut self, say: &mut Vec<String>) -> Option<Vec<u8>> {
        if self.paused {
            return None;
        }
        if self.full && self.frames < XON_LEVEL {
            self.full = false;
            say.push(self.event("MEDIA_XON", None));
        }
        loop {
            match self.queue.pop_front() {
                None => {
                    if std::mem::take(&mut self.report_drained) {
                        say.push(self.event("QUEUE_DRAINED", None));
                    }
                    return None;
                }
                Some(Queued::Note(n)) => say.push(n),
                Some(Queued::Frame(f)) => {
                    self.frames -= 1;
                    return Some(f);
                }
            }
        }
    }
}

/// A WebSocket stream between a caller and the app.
pub(super) struct WsStream {
    pub leg: Arc<WsLeg>,
    pub codec: Codec,
    pub records: Arc<Mutex<Vec<RtpRecord>>>,
    pub script: CallerScript,
    pub caller_id: String,
    pub echo: Option<super::EchoPath>,
    pub seed: u64,
    pub mouth: Arc<Mutex<Mouth>>,
    pub suppress_silence: bool,
}

pub(super) fn start(inner: Arc<Inner>, s: WsStream, bridge: &str) -> super::media::MediaHandle {
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(run(inner, s, stop_rx));
    super::media::MediaHandle::new(bridge.to_owned(), stop_tx, task)
}

fn to_bytes(pcm: &[i16], codec: Codec, enc: &mut Option<aiagc_engine::codec::Encoder>) -> Vec<u8> {
    if codec == Codec::Slin16 {
        return pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    }
    let mut out = vec![0u8; 640];
    let k = enc
        .as_mut()
        .and_then(|e| e.encode(pcm, &mut out).ok())
        .unwrap_or(0);
    out.truncate(k);
    out
}

fn to_pcm(bytes: &[u8], codec: Codec, dec: &mut Option<aiagc_engine::codec::Decoder>) -> Vec<i16> {
    if codec == Codec::Slin16 {
        return bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
    }
    let mut out = vec![0i16; aiagc_engine::codec::MAX_DECODED_SAMPLES];
    let k = dec
        .as_mut()
        .and_then(|d| d.decode(bytes, &mut out).ok())
        .unwrap_or(0);
    out.truncate(k);
    out
}

async fn run(inner: Arc<Inner>, s: WsStream, mut stop: oneshot::Receiver<()>) {
    let Some(mut socket) = s.leg.take() else {
        tracing::debug!(call = %s.caller_id, "simulator: WebSocket media bridged before the app connected");
        return;
    };
    let codec = s.codec;
    let n = codec.frame_samples();
    let pcm = super::media::at_codec_rate(&s.script.audio, codec);
    let playing = super::media::playback_frames(&pcm, n);
    let mut enc = aiagc_engine::codec::Encoder::new(codec).ok();
    let mut dec = aiagc_engine::codec::Decoder::new(codec).ok();
    let mut playout = Playout::new(frame_bytes(codec), s.leg.json, &s.leg.channel_id);
    let mut line = Line::new(s.echo, codec, s.seed);
    let start = Instant::now();
    let frames_of_script = pcm.len().div_ceil(n) as u64;
    let hangup_at = s
        .script
        .hangup_after
        .map(|d| start + Duration::from_millis(20 * frames_of_script) + d);
    let silence = vec![0i16; n];
    let mut live = vec![0i16; n];
    let (mut frame, mut played) = (0u64, 0u64);
    let mut say = Vec::new();
    let from: std::net::SocketAddr = ([0, 0, 0, 0], 0).into();
    // `Some(cause)`: the channel hangs up and the connection is done.
    let mut end: Option<i64> = None;
    let mut open = true;
    loop {
        let next_tick = start + Duration::from_millis(20 * frame);
        let wake = hangup_at.map_or(next_tick, |h| h.min(next_tick));
        tokio::select! {
            _ = &mut stop => break,
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(b))) if b.len() > MAX_MESSAGE => {
                    tracing::debug!(call = %s.caller_id, bytes = b.len(), "simulator: WebSocket message too large, hanging up");
                    end = Some(38);
                }
                Some(Ok(Message::Binary(b))) => playout.audio(&b, &mut say),
                Some(Ok(Message::Text(t))) => {
                    if playout.command(t.as_str(), &mut say) == Control::Hangup {
                        end = Some(16);
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    open = false;
                    end = Some(38);
                }
                Some(Ok(_)) => {}
            },
            _ = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                if hangup_at.is_some_and(|h| now >= h) {
                    let (inner, id) = (inner.clone(), s.caller_id.clone());
                    tokio::spawn(async move { inner.hangup(&id, 16); });
                    break;
                }
                while start + Duration::from_millis(20 * frame) <= now {
                    let at = start + Duration::from_millis(20 * frame);
                    // What the caller hears: one frame off the queue.
                    if let Some(bytes) = playout.tick(&mut say) {
                        let pcm = to_pcm(&bytes, codec, &mut dec);
                        line.heard(&pcm, codec.ticks(n).wrapping_mul(played as u32), at.saturating_duration_since(start));
                        let rec = RtpRecord { at, from, sequence: played as u16, timestamp: codec.ticks(n).wrapping_mul(played as u32), marker: false, payload_type: 0, ssrc: 0, payload: bytes, pcm };
                        s.records.lock().unwrap_or_else(|p| p.into_inner()).push(rec);
                        played += 1;
                    }
                    // What the caller says, as over RTP.
                    let (chunk, in_playback) = super::media::caller_frame(
                        &pcm, &playing, frame, n, &s.mouth, &mut live, &silence, at,
                    );
                    // The end of a file goes out as long as what is left
                    // of it (614 bytes seen after a Playback() of slin16).
                    let chunk = line.mix(chunk, frame * n as u64);
                    frame += 1;
                    let silent = s.suppress_silence && !in_playback && chunk.iter().all(|&x| x == 0);
                    if !silent {
                        let bytes = to_bytes(chunk, codec, &mut enc);
                        if socket.send(Message::Binary(bytes.into())).await.is_err() {
                            open = false;
                            end = Some(38);
                            break;
                        }
                    }
                }
            }
        }
        for text in say.drain(..) {
            if open && socket.send(Message::Text(text.into())).await.is_err() {
                open = false;
                end = Some(38);
            }
        }
        if end.is_some() {
            break;
        }
    }
    if let Some(cause) = end {
        // The channel goes; with it the connection (Asterisk closes it).
        let (inner, id) = (inner.clone(), s.leg.channel_id.clone());
        tokio::spawn(async move {
            inner.hangup(&id, cause);
        });
        if open {
            close_later(socket);
        }
        return;
    }
    s.leg.put_back(socket);
}

/// Two WebSocket channels in one bridge and no caller (`aiagc check`'s
/// round trip): what either is sent plays out of the other.
pub(super) fn start_relay(
    a: (Arc<WsLeg>, Codec),
    b: (Arc<WsLeg>, Codec),
    bridge: &str,
) -> super::media::MediaHandle {
    let (stop_tx, mut stop) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let (Some(mut sa), Some(mut sb)) = (a.0.take(), b.0.take()) else {
            return;
        };
        let mut pa = Playout::new(frame_bytes(a.1), a.0.json, &a.0.channel_id);
        let mut pb = Playout::new(frame_bytes(b.1), b.0.json, &b.0.channel_id);
        let start = Instant::now();
        let mut frame = 0u64;
        let (mut say_a, mut say_b) = (Vec::new(), Vec::new());
        let mut ended = false;
        loop {
            let next = start + Duration::from_millis(20 * frame);
            tokio::select! {
                _ = &mut stop => break,
                m = sa.recv() => match m {
                    Some(Ok(Message::Binary(x))) => pa.audio(&x, &mut say_a),
                    Some(Ok(Message::Text(t))) => { pa.command(t.as_str(), &mut say_a); }
                    Some(Ok(_)) => {}
                    _ => { ended = true; break; }
                },
                m = sb.recv() => match m {
                    Some(Ok(Message::Binary(x))) => pb.audio(&x, &mut say_b),
                    Some(Ok(Message::Text(t))) => { pb.command(t.as_str(), &mut say_b); }
                    Some(Ok(_)) => {}
                    _ => { ended = true; break; }
                },
                _ = tokio::time::sleep_until(next.into()) => {
                    frame += 1;
                    if let Some(f) = pa.tick(&mut say_a) {
                        let _ = sb.send(Message::Binary(f.into())).await;
                    }
                    if let Some(f) = pb.tick(&mut say_b) {
                        let _ = sa.send(Message::Binary(f.into())).await;
                    }
                }
            }
            for t in say_a.drain(..) {
                let _ = sa.send(Message::Text(t.into())).await;
            }
            for t in say_b.drain(..) {
                let _ = sb.send(Message::Text(t.into())).await;
            }
        }
        if ended {
            close_later(sa);
            close_later(sb);
        } else {
            a.0.put_back(sa);
            b.0.put_back(sb);
        }
    });
    super::media::MediaHandle::new(bridge.to_owned(), stop_tx, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aiagc_parse(text: &str) -> crate::media_ws::MediaEvent {
        crate::media_ws::parse_event(text).unwrap()
    }

    fn frames(n: usize) -> Vec<u8> {
        (0..n * 640).map(|i| (i / 640) as u8).collect()
    }

    #[test]
    fn marks_come_back_when_the_frame_after_them_is_taken() {
        let mut p = Playout::new(640, true, "1.2");
        let mut say = Vec::new();
        p.audio(&frames(2), &mut say);
        assert_eq!(
            p.command(
                r#"{"command":"MARK_MEDIA","correlation_id":"m1"}"#,
                &mut say
            ),
            Control::None
        );
        p.audio(&frames(1), &mut say);
        assert!(say.is_empty());
        assert_eq!(p.tick(&mut say).map(|f| f[0]), Some(0));
        assert_eq!(p.tick(&mut say).map(|f| f[0]), Some(1));
        assert!(say.is_empty(), "the mark waits for the next frame");
        assert!(p.tick(&mut say).is_some());
        assert_eq!(say.len(), 1);
        let mark = aiagc_parse(&say[0]);
        assert_eq!(
            mark,
            crate::media_ws::MediaEvent::MarkProcessed("m1".into())
        );
        assert!(p.tick(&mut say).is_none(), "an empty queue plays nothing");
    }

    #[test]
    fn a_short_tail_is_dropped_and_flush_drops_marks() {
        let mut p = Playout::new(640, false, "1.2");
        let mut say = Vec::new();
        p.audio(&[0u8; 1000], &mut say);
        assert_eq!(p.queued(), 1);
        p.command("MARK_MEDIA a", &mut say);
        p.command("FLUSH_MEDIA", &mut say);
        assert!(p.tick(&mut say).is_none());
        assert!(say.is_empty(), "a flushed mark never comes back");
    }

    #[test]
    fn flow_control_and_the_queue_limit() {
        let mut p = Playout::new(640, false, "c");
        let mut say = Vec::new();
        p.audio(&frames(950), &mut say);
        assert_eq!(say, ["MEDIA_XOFF"]);
        p.audio(&frames(60), &mut say);
        assert_eq!(p.queued(), 1010, "the limit is checked per message");
        p.audio(&frames(1), &mut say);
        assert_eq!((p.queued(), p.ignored), (1010, 1));
        say.clear();
        for _ in 0..211 {
            p.tick(&mut say);
        }
        assert!(say.is_empty(), "XON below 800 only: {say:?}");
        p.tick(&mut say);
        assert_eq!(say, ["MEDIA_XON"]);
    }

    #[test]
    fn pause_holds_and_bad_commands_are_counted() {
        let mut p = Playout::new(640, true, "c");
        let mut say = Vec::new();
        p.audio(&frames(1), &mut say);
        p.command(r#"{"command":"PAUSE_MEDIA"}"#, &mut say);
        assert!(p.tick(&mut say).is_none());
        p.command(r#"{"command":"CONTINUE_MEDIA"}"#, &mut say);
        assert!(p.tick(&mut say).is_some());
        p.command("not json", &mut say);
        p.command(r#"{"command":"DANCE"}"#, &mut say);
        p.command(&"x".repeat(200), &mut say);
        assert_eq!(p.ignored, 3);
        assert_eq!(say.len(), 1, "one ERROR for the unparsable JSON: {say:?}");
        assert_eq!(
            p.command(r#"{"command":"HANGUP"}"#, &mut say),
            Control::Hangup
        );
        p.command(r#"{"command":"GET_STATUS"}"#, &mut say);
        let status: serde_json::Value = serde_json::from_str(&say[1]).unwrap();
        assert_eq!(status["queue_length"], 0);
    }
}
