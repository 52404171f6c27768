//! A call's media edge: the UDP socket of externalMedia RTP, or the
//! connection of Asterisk's WebSocket media channel (`[media] transport =
//! "websocket"`), behind one interface for the call's task. The engine's
//! `Call` decides what is heard and said; the edge only moves bytes and,
//! on the WebSocket, keeps Asterisk's queue in step with the call.
//!
//! Over the WebSocket, Asterisk plays what it is sent from its own queue at
//! its own 20 ms clock. The call hands out a reply 60 ms ahead of its grid
//! (the cushion, [`STREAM_LEAD`]); when the call drops or pauses a reply
//! (barge-in), the cushion is flushed (`FLUSH_MEDIA`) so the caller hears
//! the reply stop at once — the call itself holds what a pause keeps
//! (with what the flush dropped unplayed: `Call::unheard`), so Asterisk's
//! queue never needs `PAUSE_MEDIA`. A mark every 5 frames
//! measures what has played; with over a second in flight (Asterisk not
//! playing) or after `MEDIA_XOFF`, nothing more is sent until it catches up.

use aiagc_ari::media_ws::{Incoming, MediaCommand, MediaEvent, MediaSocket, MediaWsError, Outflow};
use aiagc_engine::Call;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How far ahead of its 20 ms grid a call hands reply audio to Asterisk's
/// queue: three frames absorb a late wake-up of the task on a loaded host.
pub const STREAM_LEAD: Duration = Duration::from_millis(60);
/// Frames in flight (sent, no mark back yet) at most: one second.
const STREAM_WINDOW: u64 = 50;
/// A mark after this many frames.
const MARK_EVERY: u64 = 5;

/// What the WebSocket edge counted over a call.
#[derive(Debug, Default, Clone)]
pub struct StreamCounts {
    /// Text messages that did not parse (unknown or malformed).
    pub rejected: u64,
    /// `MEDIA_XOFF`s from Asterisk.
    pub xoff: u64,
    /// `FLUSH_MEDIA`s we sent (barge-ins).
    pub flushes: u64,
    /// Marks that came back.
    pub marks: u64,
    /// `ERROR`s Asterisk said.
    pub errors: u64,
    /// Reply audio a flush dropped before it played that a paused reply
    /// holds again, in ms.
    pub unheard_ms: u64,
}

/// The WebSocket side of a call.
pub struct Stream {
    socket: Option<MediaSocket>,
    flow: Outflow,
    out: Vec<u8>,
    /// The mark in front of the last reply's first frame: when it comes
    /// back, the caller has begun to hear the reply.
    reply_mark: Option<String>,
    /// The call's interrupted and paused replies, as last seen.
    seen: (u64, u64),
    /// What it counted.
    pub counts: StreamCounts,
}

/// A call's media edge.
pub enum Edge {
    /// externalMedia RTP.
    Rtp(tokio::net::UdpSocket),
    /// Asterisk's WebSocket media channel.
    Stream(Box<Stream>),
}

/// What arrived at the edge.
pub enum Input {
    /// An RTP datagram of this length, in the buffer given to `recv`.
    Datagram(usize, SocketAddr),
    /// Audio bytes of the stream.
    Audio(Vec<u8>),
    /// A control message of the stream.
    Event(MediaEvent),
    /// A control message that did not parse.
    Rejected(MediaWsError),
    /// The stream ended.
    Closed(String),
    /// A receive error (logged, the call goes on).
    Error(String),
}

impl Edge {
    /// A WebSocket edge on a connected `socket`.
    pub fn stream(socket: MediaSocket) -> Self {
        Edge::Stream(Box::new(Stream {
            socket: Some(socket),
            flow: Outflow::new(STREAM_WINDOW, MARK_EVERY),
            out: Vec::with_capacity(640 * 8),
            reply_mark: None,
            seen: (0, 0),
            counts: StreamCounts::default(),
        }))
    }

    /// The next input (cancel-safe). A WebSocket edge without a connection
    /// waits for ever: the controller ends the call.
    pub async fn recv(&mut self, buf: &mut [u8]) -> Input {
        match self {
            Edge::Rtp(socket) => match socket.recv_from(buf).await {
                Ok((n, from)) => Input::Datagram(n, from),
                Err(e) => Input::Error(e.to_string()),
            },
            Edge::Stream(s) => match s.socket.as_mut() {
                Some(ws) => match ws.recv().await {
                    Incoming::Audio(bytes) => Input::Audio(bytes),
                    Incoming::Event(e) => Input::Event(e),
                    Incoming::Rejected(e) => Input::Rejected(e),
                    Incoming::Closed(why) => Input::Closed(why),
                },
                None => std::future::pending().await,
            },
        }
    }

    /// Hands `input` to `call` (audio) or to the edge's own state.
    pub fn take(&mut self, input: Input, buf: &[u8], call: &mut Call, id: &str, now: Instant) {
        match input {
            Input::Datagram(n, from) => call.receive(from, &buf[..n], now),
            Input::Audio(bytes) => call.receive_stream(&bytes, now),
            Input::Error(e) => tracing::debug!(call = %id, error = %e, "media receive error"),
            Input::Event(e) => {
                if let Edge::Stream(s) = self {
                    s.event(e, id, call, now);
                }
            }
            Input::Rejected(e) => {
                if let Edge::Stream(s) = self {
                    s.counts.rejected += 1;
                    if s.counts.rejected.is_power_of_two() {
                        tracing::warn!(call = %id, error = %e, count = s.counts.rejected, "media control message skipped");
                    }
                }
            }
            Input::Closed(why) => {
                if let Edge::Stream(s) = self {
                    if s.socket.take().is_some() {
                        tracing::info!(call = %id, reason = %why, "media WebSocket closed");
                    }
                }
            }
        }
    }

    /// Sends what `call` has for now; `sent` sees each frame handed out
    /// (for the recording of what the caller heard).
    pub async fn transmit(
        &mut self,
        call: &mut Call,
        now: Instant,
        id: &str,
        mut sent: impl FnMut(&Call),
    ) {
        match self {
            Edge::Rtp(socket) => {
                while let Some(tx) = call.poll_transmit(now) {
                    if let Some(dest) = tx.destination {
                        let _ = socket.try_send_to(tx.data, dest);
                    }
                    sent(call);
                }
            }
            Edge::Stream(s) => {
                if s.socket.is_none() {
                    // Nobody listens: let the call's clock run on.
                    while call.poll_transmit(now).is_some() {}
                    return;
                }
                if let Err(e) = s.transmit(call, now, &mut sent).await {
                    tracing::info!(call = %id, error = %e, "media WebSocket lost");
                    s.socket = None;
                }
            }
        }
    }

    /// Whether the edge takes nothing from the call now (after
    /// `MEDIA_XOFF`, or a second in flight without a mark back): the
    /// call's send slots are then no reason to wake, or its task would spin
    /// until Asterisk catches up.
    pub fn holding(&self) -> bool {
        match self {
            Edge::Stream(s) => s.socket.is_some() && s.flow.room() == 0,
            Edge::Rtp(_) => false,
        }
    }

    /// The WebSocket edge's counts (`None` over RTP).
    pub fn stream_counts(&self) -> Option<&StreamCounts> {
        match self {
            Edge::Stream(s) => Some(&s.counts),
            Edge::Rtp(_) => None,
        }
    }
}

impl Stream {
    fn event(&mut self, e: MediaEvent, id: &str, call: &mut Call, now: Instant) {
        match &e {
            MediaEvent::Start(start) => tracing::info!(
                call = %id,
                format = %start.format,
                frame_bytes = start.optimal_frame_size,
                ptime_ms = start.ptime_ms,
                "media WebSocket started"
            ),
            MediaEvent::Xoff => {
                self.counts.xoff += 1;
                tracing::warn!(call = %id, "Asterisk's media queue is full (MEDIA_XOFF)");
            }
            MediaEvent::MarkProcessed(m) => {
                self.counts.marks += 1;
                if self.reply_mark.as_ref() == Some(m) {
                    self.reply_mark = None;
                    call.reply_heard(now);
                }
            }
            MediaEvent::Error(text) => {
                self.counts.errors += 1;
                tracing::warn!(call = %id, error = %text, "Asterisk refused a media command");
            }
            // Keys come as ARI events on the caller's channel, as over RTP.
            MediaEvent::DtmfEnd(_) => {}
            _ => {}
        }
        self.flow.event(&e);
    }

    async fn transmit(
        &mut self,
        call: &mut Call,
        now: Instant,
        sent: &mut impl FnMut(&Call),
    ) -> Result<(), aiagc_ari::media_ws::MediaSocketError> {
        let Some(ws) = self.socket.as_mut() else {
            return Ok(());
        };
        // A reply dropped or paused since we last looked: what Asterisk
        // still queues of it must not play.
        let stats = call.stats();
        let now_seen = (stats.replies_interrupted, stats.replies_paused);
        if now_seen != self.seen {
            self.seen = now_seen;
            ws.send(&MediaCommand::Flush).await?;
            // What was in Asterisk's queue never played: a paused reply
            // holds it again (at most a mark's spacing too much: heard
            // twice rather than skipped).
            let back = call.unheard(self.flow.in_flight());
            self.counts.unheard_ms += back.as_millis() as u64;
            self.flow.flushed();
            self.reply_mark = None;
            self.counts.flushes += 1;
        }
        while self.flow.room() > 0 {
            let Some(tx) = call.poll_transmit(now) else {
                break;
            };
            if tx.first_of_reply {
                // A mark just before the reply: Asterisk answers it as it
                // takes the reply's first frame from its queue.
                if !self.out.is_empty() {
                    ws.send_audio(&self.out).await?;
                    self.out.clear();
                }
                let mark = self.flow.mark();
                if let MediaCommand::Mark(m) = &mark {
                    self.reply_mark = Some(m.clone());
                }
                ws.send(&mark).await?;
            }
            self.out.extend_from_slice(tx.data);
            sent(call);
            if let Some(mark) = self.flow.sent(1) {
                ws.send_audio(&self.out).await?;
                self.out.clear();
                ws.send(&mark).await?;
            }
        }
        if !self.out.is_empty() {
            ws.send_audio(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }
}
