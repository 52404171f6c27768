//! Asterisk's WebSocket media channel (`chan_websocket`, reached through
//! `POST /channels/externalMedia?transport=websocket`): the text messages
//! beside the audio and the flow control of what we send, sans-IO.
//!
//! Facts of Asterisk 22.10.1 (`channels/chan_websocket.c`) this relies on:
//! audio is binary messages of the channel's format (slin16: 16-bit
//! little-endian at 16 kHz) that Asterisk cuts into `optimal_frame_size`
//! frames (640 bytes for 20 ms of slin16) and plays from a queue at its
//! own 20 ms timer, so we need not pace; a queue of 1000 frames drops
//! further audio unread, `MEDIA_XOFF` is said at 900 queued frames and
//! `MEDIA_XON` below 800 — 18 s of audio, far too much to queue if a
//! barge-in is to be heard at once, so [`Outflow`] keeps its own window,
//! measured by marks: `MARK_MEDIA` queues a note behind the audio sent so
//! far and Asterisk answers `MEDIA_MARK_PROCESSED` when the frame before it
//! has been played, which is the playout position. `FLUSH_MEDIA` drops the
//! queue, marks included (they never come back). Text commands longer than
//! 128 bytes are ignored; a message over 65,500 bytes ends the call.
//!
//! The control messages come as plain text (`MEDIA_START connection_id:…
//! format:slin16 …`) or, with `f(json)` in the channel's transport data, as
//! JSON objects; both are parsed here. Whatever does not parse is an error
//! for the caller to count, never a reason to end the call.

use std::collections::VecDeque;

/// The WebSocket sub-protocol Asterisk's `/media/<connection id>` expects.
pub const SUBPROTOCOL: &str = "media";
/// Largest message Asterisk takes before it hangs up (we send less).
pub const MAX_MESSAGE: usize = 65_500;
/// Longest text command Asterisk reads (longer ones are ignored).
pub const MAX_COMMAND: usize = 128;
/// Frames Asterisk queues before it drops incoming audio.
pub const QUEUE_MAX_FRAMES: u64 = 1000;
/// Queue length at which Asterisk says `MEDIA_XOFF`.
pub const XOFF_FRAMES: u64 = 900;
/// The channel variable with the connection id of a `server` connection.
pub const CONNECTION_ID_VAR: &str = "MEDIA_WEBSOCKET_CONNECTION_ID";
/// The channel variable with the size of one frame in bytes.
pub const FRAME_SIZE_VAR: &str = "MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE";

/// `MEDIA_START`: the connection is up; what its audio is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaStart {
    /// The connection id (the path under `/media/`).
    pub connection_id: String,
    /// The WebSocket channel's name.
    pub channel: String,
    /// Its unique id.
    pub channel_id: String,
    /// Its format (`slin16`, `ulaw`, …).
    pub format: String,
    /// Bytes per frame (0 in passthrough mode).
    pub optimal_frame_size: usize,
    /// Milliseconds per frame.
    pub ptime_ms: u32,
}

/// `STATUS`, the answer to `GET_STATUS`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaStatus {
    /// Frames queued.
    pub queue_length: u64,
    /// Whether Asterisk said `MEDIA_XOFF` and not yet `MEDIA_XON`.
    pub queue_full: bool,
    /// Whether `PAUSE_MEDIA` holds the queue.
    pub paused: bool,
}

/// A text message from Asterisk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// The connection is up.
    Start(MediaStart),
    /// The queue is nearly full: send nothing until [`MediaEvent::Xon`].
    Xoff,
    /// The queue has room again.
    Xon,
    /// The queue ran empty (after `REPORT_QUEUE_DRAINED`).
    QueueDrained,
    /// The audio before this mark has been played.
    MarkProcessed(String),
    /// `STOP_MEDIA_BUFFERING` took effect.
    BufferingCompleted(String),
    /// The caller pressed a key.
    DtmfEnd(char),
    /// The queue's state.
    Status(MediaStatus),
    /// Asterisk refused a command.
    Error(String),
}

/// A text message that is not one of [`MediaEvent`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaWsError {
    /// Nothing but white space.
    #[error("empty control message")]
    Empty,
    /// An event name we do not know (a newer Asterisk, perhaps).
    #[error("unknown control message {0:?}")]
    Unknown(String),
    /// A known event without the fields it must have.
    #[error("malformed {event}: {reason}")]
    Malformed {
        /// The event's name.
        event: String,
        /// What is wrong.
        reason: String,
    },
}

fn malformed(event: &str, reason: impl Into<String>) -> MediaWsError {
    MediaWsError::Malformed {
        event: event.to_owned(),
        reason: reason.into(),
    }
}

/// Reads one text message from Asterisk, plain text or JSON.
pub fn parse_event(text: &str) -> Result<MediaEvent, MediaWsError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(MediaWsError::Empty);
    }
    if text.starts_with('{') {
        return parse_json(text);
    }
    let (name, rest) = text.split_once(' ').unwrap_or((text, ""));
    let rest = rest.trim();
    // `key:value` pairs, values without spaces — except `error_text`, last.
    let field = |key: &str| -> Option<&str> {
        rest.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix(':'))
    };
    match name {
        "MEDIA_START" => {
            let need = |key: &str| {
                field(key)
                    .map(str::to_owned)
                    .ok_or_else(|| malformed(name, format!("no {key}")))
            };
            let number = |key: &str| -> Result<u64, MediaWsError> {
                need(key)?
                    .parse()
                    .map_err(|_| malformed(name, format!("{key} is not a number")))
            };
            media_start(need, number)
        }
        "MEDIA_XOFF" => Ok(MediaEvent::Xoff),
        "MEDIA_XON" => Ok(MediaEvent::Xon),
        "QUEUE_DRAINED" => Ok(MediaEvent::QueueDrained),
        "MEDIA_MARK_PROCESSED" => Ok(MediaEvent::MarkProcessed(rest.to_owned())),
        "MEDIA_BUFFERING_COMPLETED" => Ok(MediaEvent::BufferingCompleted(rest.to_owned())),
        "DTMF_END" => digit(name, field("digit")),
        "STATUS" => {
            let flag = |key: &str| field(key) == Some("true");
            Ok(MediaEvent::Status(MediaStatus {
                queue_length: field("queue_length")
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| malformed(name, "no queue_length"))?,
                queue_full: flag("queue_full"),
                paused: flag("media_paused"),
            }))
        }
        "ERROR" => Ok(MediaEvent::Error(
            rest.split_once("error_text:")
                .map_or(rest, |(_, t)| t)
                .trim()
                .to_owned(),
        )),
        other => Err(MediaWsError::Unknown(other.chars().take(40).collect())),
    }
}

/// `MEDIA_START` from its fields, however the message spelled them.
fn media_start(
    need: impl Fn(&str) -> Result<String, MediaWsError>,
    number: impl Fn(&str) -> Result<u64, MediaWsError>,
) -> Result<MediaEvent, MediaWsError> {
    Ok(MediaEvent::Start(MediaStart {
        connection_id: need("connection_id")?,
        channel: need("channel")?,
        channel_id: need("channel_id")?,
        format: need("format")?,
        optimal_frame_size: number("optimal_frame_size")? as usize,
        ptime_ms: number("ptime")? as u32,
    }))
}

fn digit(event: &str, value: Option<&str>) -> Result<MediaEvent, MediaWsError> {
    let mut chars = value.unwrap_or_default().chars();
    match (chars.next(), chars.next()) {
        (Some(d), None) if d.is_ascii_digit() || "*#ABCD".contains(d) => Ok(MediaEvent::DtmfEnd(d)),
        _ => Err(malformed(event, "no single key in digit")),
    }
}

fn parse_json(text: &str) -> Result<MediaEvent, MediaWsError> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| malformed("JSON message", e.to_string()))?;
    let name = v
        .get("event")
        .and_then(|e| e.as_str())
        .ok_or_else(|| malformed("JSON message", "no event"))?;
    let string = |key: &str| v.get(key).and_then(|x| x.as_str()).map(str::to_owned);
    let need = |key: &str| string(key).ok_or_else(|| malformed(name, format!("no {key}")));
    let number = |key: &str| {
        v.get(key)
            .and_then(|x| x.as_u64())
            .ok_or_else(|| malformed(name, format!("no number {key}")))
    };
    let flag = |key: &str| v.get(key).and_then(|x| x.as_bool()).unwrap_or(false);
    match name {
        "MEDIA_START" => media_start(need, number),
        "MEDIA_XOFF" => Ok(MediaEvent::Xoff),
        "MEDIA_XON" => Ok(MediaEvent::Xon),
        "QUEUE_DRAINED" => Ok(MediaEvent::QueueDrained),
        "MEDIA_MARK_PROCESSED" => Ok(MediaEvent::MarkProcessed(
            string("correlation_id").unwrap_or_default(),
        )),
        "MEDIA_BUFFERING_COMPLETED" => Ok(MediaEvent::BufferingCompleted(
            string("correlation_id").unwrap_or_default(),
        )),
        "DTMF_END" => digit(name, string("digit").as_deref()),
        "STATUS" => Ok(MediaEvent::Status(MediaStatus {
            queue_length: number("queue_length")?,
            queue_full: flag("queue_full"),
            paused: flag("media_paused"),
        })),
        "ERROR" => Ok(MediaEvent::Error(string("error_text").unwrap_or_default())),
        other => Err(MediaWsError::Unknown(other.chars().take(40).collect())),
    }
}

/// A text command to Asterisk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaCommand {
    /// Answer the WebSocket channel (when created without auto-answer).
    Answer,
    /// Hang the WebSocket channel up.
    Hangup,
    /// Note the playout position behind the audio sent so far.
    Mark(String),
    /// Drop everything queued.
    Flush,
    /// Hold the queue (silence plays; the audio stays).
    Pause,
    /// Play the held queue on.
    Continue,
    /// Say `QUEUE_DRAINED` when the queue next runs empty.
    ReportQueueDrained,
    /// Say `STATUS`.
    GetStatus,
}

impl MediaCommand {
    /// The command as `f(json)` channels read it. Plain-text channels read
    /// [`MediaCommand::plain_text`].
    pub fn json(&self) -> String {
        let (command, id) = self.parts();
        match id {
            Some(id) => serde_json::json!({"command": command, "correlation_id": id}).to_string(),
            None => serde_json::json!({ "command": command }).to_string(),
        }
    }

    /// The command in Asterisk's default plain-text control format.
    pub fn plain_text(&self) -> String {
        match self.parts() {
            (command, Some(id)) => format!("{command} {id}"),
            (command, None) => command.to_owned(),
        }
    }

    fn parts(&self) -> (&'static str, Option<&str>) {
        match self {
            MediaCommand::Answer => ("ANSWER", None),
            MediaCommand::Hangup => ("HANGUP", None),
            MediaCommand::Mark(id) => ("MARK_MEDIA", Some(id)),
            MediaCommand::Flush => ("FLUSH_MEDIA", None),
            MediaCommand::Pause => ("PAUSE_MEDIA", None),
            MediaCommand::Continue => ("CONTINUE_MEDIA", None),
            MediaCommand::ReportQueueDrained => ("REPORT_QUEUE_DRAINED", None),
            MediaCommand::GetStatus => ("GET_STATUS", None),
        }
    }
}

/// What we may send now: a window of audio ahead of what the caller has
/// heard, measured by marks, closed by `MEDIA_XOFF`. Sans-IO: the driver
/// tells it what it sent and what Asterisk said.
#[derive(Debug, Clone)]
pub struct Outflow {
    /// Frames allowed ahead of the last processed mark.
    window: u64,
    /// A mark after every this many frames.
    mark_every: u64,
    sent: u64,
    played: u64,
    since_mark: u64,
    next_mark: u64,
    /// Marks on their way: (id number, frames sent before it).
    marks: VecDeque<(u64, u64)>,
    xoff: bool,
    /// Marks that came back unknown (not ours, or after a flush).
    pub stray_marks: u64,
}

impl Outflow {
    /// A window of `window` frames with a mark every `mark_every` frames
    /// (both at least one; the window is kept below Asterisk's XOFF level).
    pub fn new(window: u64, mark_every: u64) -> Self {
        Self {
            window: window.clamp(1, XOFF_FRAMES - 1),
            mark_every: mark_every.max(1),
            sent: 0,
            played: 0,
            since_mark: 0,
            next_mark: 0,
            marks: VecDeque::new(),
            xoff: false,
            stray_marks: 0,
        }
    }

    /// Frames that may be sent now, up to the next mark: send them, call
    /// [`Outflow::sent`], send the mark it gives, ask again. Marking every
    /// few frames keeps the window sliding; one mark per window would let
    /// Asterisk's queue run dry before each refill (a 20 ms gap per window,
    /// seen on 22.10.1: marks after 15 frames came back every 320 ms).
    pub fn room(&self) -> u64 {
        if self.xoff {
            return 0;
        }
        let window = self.window.saturating_sub(self.sent - self.played);
        window.min(self.mark_every - self.since_mark.min(self.mark_every - 1))
    }

    /// `frames` were sent: the mark to send after them, when one is due.
    pub fn sent(&mut self, frames: u64) -> Option<MediaCommand> {
        self.sent += frames;
        self.since_mark += frames;
        if self.since_mark < self.mark_every {
            return None;
        }
        Some(self.mark())
    }

    /// A mark behind everything sent so far (at the end of a reply, say).
    pub fn mark(&mut self) -> MediaCommand {
        self.since_mark = 0;
        let id = self.next_mark;
        self.next_mark += 1;
        self.marks.push_back((id, self.sent));
        MediaCommand::Mark(format!("m{id}"))
    }

    /// Asterisk said `event`: the window moves (marks) or closes (XOFF).
    pub fn event(&mut self, event: &MediaEvent) {
        match event {
            MediaEvent::Xoff => self.xoff = true,
            MediaEvent::Xon => self.xoff = false,
            MediaEvent::Status(s) => self.xoff = s.queue_full,
            MediaEvent::MarkProcessed(id) => {
                let n = id.strip_prefix('m').and_then(|n| n.parse::<u64>().ok());
                match n.and_then(|n| self.marks.iter().position(|&(m, _)| m == n)) {
                    Some(i) => {
                        // Marks play in order: the ones before it are past too.
                        let (_, at) = self.marks[i];
                        self.marks.drain(..=i);
                        self.played = self.played.max(at);
                    }
                    None => self.stray_marks += 1,
                }
            }
            _ => {}
        }
    }

    /// We asked Asterisk to drop its queue: what was in it is not going to
    /// play, and its marks will not come back.
    pub fn flushed(&mut self) {
        self.played = self.sent;
        self.marks.clear();
        self.since_mark = 0;
    }

    /// Frames sent so far.
    pub fn frames_sent(&self) -> u64 {
        self.sent
    }

    /// Frames known to have played (up to the last processed mark).
    pub fn frames_played(&self) -> u64 {
        self.played
    }

    /// Frames sent and not yet known to have played.
    pub fn in_flight(&self) -> u64 {
        self.sent - self.played
    }
}

/// What came over a media WebSocket.
#[derive(Debug)]
pub enum Incoming {
    /// Audio in the channel's format.
    Audio(Vec<u8>),
    /// A control message.
    Event(MediaEvent),
    /// A text message that did not parse (count it; the call goes on).
    Rejected(MediaWsError),
    /// The connection ended (Asterisk hung the channel up, or the network).
    Closed(String),
}

/// Why the media WebSocket could not be opened or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaSocketError {
    /// The upgrade failed: 404 (no such connection id), 409 (taken), …
    #[error("media WebSocket {url}: {reason}")]
    Connect {
        /// Where.
        url: String,
        /// Why.
        reason: String,
    },
    /// A write failed: the connection is gone.
    #[error("media WebSocket write: {0}")]
    Write(String),
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One call's media WebSocket to Asterisk (`connection_type=server`: we
/// dial Asterisk's HTTP server, the port ARI is on).
pub struct MediaSocket {
    ws: Ws,
    json: bool,
}

impl MediaSocket {
    /// Opens `url` ([`crate::client::AriConfig::media_url`]) with the
    /// `media` sub-protocol within `timeout`; `json` says which control
    /// format the channel was created with; `tls` is ARI's connector for
    /// `wss` ([`crate::client::AriConfig::ws_connector`]).
    pub async fn connect(
        url: &str,
        json: bool,
        timeout: std::time::Duration,
        tls: Option<tokio_tungstenite::Connector>,
    ) -> Result<Self, MediaSocketError> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
        let failed = |reason: String| MediaSocketError::Connect {
            url: url.to_owned(),
            reason,
        };
        let mut request = url
            .into_client_request()
            .map_err(|e| failed(e.to_string()))?;
        request.headers_mut().insert(
            "sec-websocket-protocol",
            tokio_tungstenite::tungstenite::http::HeaderValue::from_static(SUBPROTOCOL),
        );
        // Asterisk sends one frame per message; a megabyte is a broken peer.
        let config = WebSocketConfig::default()
            .max_message_size(Some(1 << 20))
            .max_frame_size(Some(1 << 20));
        let connecting =
            tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, tls);
        match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok((ws, _))) => Ok(Self { ws, json }),
            Ok(Err(e)) => Err(failed(e.to_string())),
            Err(_) => Err(failed("timeout".into())),
        }
    }

    /// The next message (cancel-safe: use it in `select!`).
    pub async fn recv(&mut self) -> Incoming {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            return match self.ws.next().await {
                Some(Ok(Message::Binary(b))) => Incoming::Audio(b.to_vec()),
                Some(Ok(Message::Text(t))) => match parse_event(&t) {
                    Ok(e) => Incoming::Event(e),
                    Err(e) => Incoming::Rejected(e),
                },
                Some(Ok(Message::Close(c))) => {
                    Incoming::Closed(c.map_or("closed".into(), |c| format!("closed: {}", c.code)))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => Incoming::Closed(e.to_string()),
                None => Incoming::Closed("closed".into()),
            };
        }
    }

    /// Sends audio, cut into messages Asterisk accepts.
    pub async fn send_audio(&mut self, bytes: &[u8]) -> Result<(), MediaSocketError> {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        // Whole 20 ms slin16 frames per message, well under the limit.
        const CHUNK: usize = 640 * 50;
        for chunk in bytes.chunks(CHUNK.min(MAX_MESSAGE)) {
            self.ws
                .send(Message::binary(chunk.to_vec()))
                .await
                .map_err(|e| MediaSocketError::Write(e.to_string()))?;
        }
        Ok(())
    }

    /// Sends a command in the channel's control format.
    pub async fn send(&mut self, command: &MediaCommand) -> Result<(), MediaSocketError> {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        let text = if self.json {
            command.json()
        } else {
            command.plain_text()
        };
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|e| MediaSocketError::Write(e.to_string()))
    }

    /// Closes the connection (Asterisk hangs the WebSocket channel up).
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_asterisk_plain_text_events() {
        let start = parse_event(
            "MEDIA_START connection_id:4d1f channel:WebSocket/4d1f/0x7f00 \
             channel_id:1700000000.12 format:slin16 optimal_frame_size:640 ptime:20",
        )
        .unwrap();
        assert_eq!(
            start,
            MediaEvent::Start(MediaStart {
                connection_id: "4d1f".into(),
                channel: "WebSocket/4d1f/0x7f00".into(),
                channel_id: "1700000000.12".into(),
                format: "slin16".into(),
                optimal_frame_size: 640,
                ptime_ms: 20,
            })
        );
        assert_eq!(
            parse_event("MEDIA_MARK_PROCESSED m7").unwrap(),
            MediaEvent::MarkProcessed("m7".into())
        );
        assert_eq!(
            parse_event("MEDIA_MARK_PROCESSED").unwrap(),
            MediaEvent::MarkProcessed(String::new())
        );
        assert_eq!(
            parse_event("DTMF_END digit:# channel_id:1.2").unwrap(),
            MediaEvent::DtmfEnd('#')
        );
        assert_eq!(parse_event(" MEDIA_XOFF\n").unwrap(), MediaEvent::Xoff);
        assert_eq!(parse_event("MEDIA_XON").unwrap(), MediaEvent::Xon);
        assert_eq!(
            parse_event(
                "STATUS channel_id:1.2 queue_length:901 xon_level:800 xoff_level:900 \
                 queue_full:true bulk_media:false media_paused:false"
            )
            .unwrap(),
            MediaEvent::Status(MediaStatus {
                queue_length: 901,
                queue_full: true,
                paused: false
            })
        );
        assert_eq!(
            parse_event(
                "ERROR channel_id:1.2 error_text:SET_MEDIA_DIRECTION only supports JSON format."
            )
            .unwrap(),
            MediaEvent::Error("SET_MEDIA_DIRECTION only supports JSON format.".into())
        );
    }

    #[test]
    fn reads_asterisk_json_events() {
        let start = parse_event(
            r#"{"event":"MEDIA_START","connection_id":"ab","channel":"WebSocket/ab/0x1","channel_id":"1.3","format":"slin16","optimal_frame_size":640,"ptime":20,"channel_variables":{"X":"1"}}"#,
        )
        .unwrap();
        let MediaEvent::Start(s) = start else {
            panic!("{start:?}")
        };
        assert_eq!(
            (s.format.as_str(), s.optimal_frame_size, s.ptime_ms),
            ("slin16", 640, 20)
        );
        assert_eq!(
            parse_event(
                r#"{"event":"MEDIA_MARK_PROCESSED","channel_id":"1.3","correlation_id":"m3"}"#
            )
            .unwrap(),
            MediaEvent::MarkProcessed("m3".into())
        );
        assert_eq!(
            parse_event(r#"{"event":"DTMF_END","channel_id":"1.3","digit":"5"}"#).unwrap(),
            MediaEvent::DtmfEnd('5')
        );
        assert_eq!(
            parse_event(r#"{"event":"STATUS","channel_id":"1","queue_length":3,"xon_level":800,"xoff_level":900,"queue_full":false,"bulk_media":false,"media_paused":true}"#)
                .unwrap(),
            MediaEvent::Status(MediaStatus { queue_length: 3, queue_full: false, paused: true })
        );
    }

    #[test]
    fn malformed_and_unknown_messages_are_errors_not_panics() {
        assert_eq!(parse_event("  "), Err(MediaWsError::Empty));
        assert!(
            matches!(parse_event("MEDIA_SOMETHING_NEW x:1"), Err(MediaWsError::Unknown(n)) if n == "MEDIA_SOMETHING_NEW")
        );
        for bad in [
            "MEDIA_START connection_id:a channel:b channel_id:c format:slin16 ptime:20",
            "MEDIA_START connection_id:a channel:b channel_id:c format:slin16 optimal_frame_size:lots ptime:20",
            "DTMF_END digit:55",
            "DTMF_END",
            "DTMF_END digit:x",
            "STATUS queue_length:-1",
            "{\"event\":\"MEDIA_START\"}",
            "{\"event\":7}",
            "{not json",
            "{\"event\":\"STATUS\",\"queue_length\":\"3\"}",
        ] {
            assert!(
                matches!(parse_event(bad), Err(MediaWsError::Malformed { .. })),
                "{bad}: {:?}",
                parse_event(bad)
            );
        }
        // Any bytes at all: an error or an event, never a panic.
        let mut state = 0x9e37_79b9u32;
        for _ in 0..2000 {
            let len = (state % 60) as usize;
            let text: String = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    b"MEDIA_START:{}\" ,_digit0:1x"[(state % 27) as usize] as char
                })
                .collect();
            let _ = parse_event(&text);
        }
    }

    #[test]
    fn commands_fit_what_asterisk_reads() {
        assert_eq!(
            MediaCommand::Mark("m12".into()).plain_text(),
            "MARK_MEDIA m12"
        );
        assert_eq!(MediaCommand::Flush.plain_text(), "FLUSH_MEDIA");
        let v: serde_json::Value =
            serde_json::from_str(&MediaCommand::Mark("m1".into()).json()).unwrap();
        assert_eq!(v["command"], "MARK_MEDIA");
        assert_eq!(v["correlation_id"], "m1");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&MediaCommand::Pause.json()).unwrap()
                ["command"],
            "PAUSE_MEDIA"
        );
        let mut flow = Outflow::new(50, 5);
        for _ in 0..10_000 {
            if let Some(m) = flow.sent(5) {
                assert!(m.json().len() <= MAX_COMMAND && m.plain_text().len() <= MAX_COMMAND);
            }
        }
    }

    #[test]
    fn outflow_opens_as_marks_come_back_and_closes_on_xoff() {
        let mut flow = Outflow::new(10, 5);
        assert_eq!(flow.room(), 5, "up to the first mark");
        flow.sent(2);
        assert_eq!(flow.room(), 3);
        let m1 = flow.sent(3).expect("a mark after 5 frames");
        assert_eq!(flow.room(), 5);
        let m2 = flow.sent(5).expect("and after 10");
        assert_eq!(flow.room(), 0, "the window is full");
        assert_eq!(flow.sent(0), None);
        let MediaCommand::Mark(id1) = m1 else {
            panic!()
        };
        let MediaCommand::Mark(id2) = m2 else {
            panic!()
        };
        flow.event(&MediaEvent::MarkProcessed(id1));
        assert_eq!((flow.frames_played(), flow.room()), (5, 5));
        flow.event(&MediaEvent::Xoff);
        assert_eq!(flow.room(), 0, "XOFF closes the window");
        flow.event(&MediaEvent::Xon);
        assert_eq!(flow.room(), 5);
        // A mark not ours (or a repeat) is counted and moves nothing.
        flow.event(&MediaEvent::MarkProcessed("zz".into()));
        flow.event(&MediaEvent::MarkProcessed("m0".into()));
        assert_eq!((flow.stray_marks, flow.frames_played()), (2, 5));
        // A later mark implies the earlier ones.
        flow.sent(3);
        let m3 = flow.mark();
        flow.event(&MediaEvent::MarkProcessed(match m3 {
            MediaCommand::Mark(id) => id,
            _ => unreachable!(),
        }));
        assert_eq!((flow.frames_played(), flow.in_flight()), (13, 0));
        flow.event(&MediaEvent::MarkProcessed(id2));
        assert_eq!(flow.stray_marks, 3, "m1 was implied by m2's successor");
        // A flush: what was queued will not play, its marks never return.
        flow.sent(4);
        flow.flushed();
        assert_eq!((flow.in_flight(), flow.room()), (0, 5));
        assert!(Outflow::new(5000, 0).window < XOFF_FRAMES);
    }
}
