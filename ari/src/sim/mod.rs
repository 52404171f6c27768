//! `ari::sim`: an in-process Asterisk for tests and the demo.
//!
//! It serves the ARI REST paths the product uses and the events WebSocket
//! on loopback, with the JSON shapes of Asterisk 22 (checked against
//! `api-docs/` in tests) and the behaviour observed on a real one
//! (`shared/asterisk/README.md`): the externalMedia channel enters the app
//! too, the bridge and externalMedia channel outlive the caller, RTP flows
//! as soon as a caller and an externalMedia channel share a bridge, events
//! raised while the WebSocket is down are not replayed, error bodies are
//! Asterisk's own. Once bridged, each call's caller script is streamed as
//! RTP in real time through the engine's seeded impairment model, and every
//! packet that comes back is recorded with its arrival time.
//!
//! Faults: fail or delay any request, close the WebSockets, restart
//! (everything gone), hang a caller up at any moment.

mod http;
mod media;
mod state;
mod ws_media;

pub use media::RtpRecord;
pub use state::{Alive, CallerScript, Fault};

use aiagc_engine::impair::Impairment;
use state::Inner;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Configuration of a simulated Asterisk.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// ARI user.
    pub username: String,
    /// ARI password.
    pub password: String,
    /// Version reported by `/asterisk/info`.
    pub version: String,
    /// Network impairment of the RTP the simulator sends.
    pub impairment: Impairment,
    /// Seed for ids, impairment and timing.
    pub seed: u64,
    /// Time from originate to answer.
    pub answer_delay: Duration,
    /// Dialplan of `Local/` channels: `exten@context` → what its other half
    /// plays into the call (as `Playback()`s and `Wait()`s would), then when
    /// it hangs up. Originating `Local/exten@context` into an app gives the
    /// app a caller that speaks this script.
    pub dialplan: std::collections::HashMap<String, CallerScript>,
    /// Keep what ended calls leave (every event, each caller's speech
    /// times and variables) for inspection after the fact; off for long
    /// runs, which then keep the last 512 events and forget a caller when
    /// it hangs up.
    pub retain_history: bool,
    /// The agent's own audio fed back into the caller's stream, as a
    /// telephone hybrid or a speakerphone would (off by default).
    pub echo: Option<EchoPath>,
    /// Callers placed with [`Simulator::place_call`] (SIP phones) send no
    /// RTP while they are silent, as a phone with silence suppression (VAD)
    /// does. Off by default: a SIP phone or trunk without VAD sends every
    /// 20 ms. `Local/` callers (originated into a dialplan) always send
    /// RTP only while their dialplan plays, as Asterisk does.
    pub silence_suppression: bool,
}

/// How the simulated line echoes the agent back to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EchoPath {
    /// From the agent's packet arriving to its echo leaving with the
    /// caller's audio (20–300 ms for a hybrid or speakerphone).
    pub delay: Duration,
    /// Echo return loss in dB (6–30).
    pub attenuation_db: f32,
    /// Line noise added to the caller's stream, RMS in dBFS.
    pub noise_dbfs: Option<f32>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            username: "aiagc".into(),
            password: "aiagc-secret".into(),
            version: "22.10.1".into(),
            impairment: Impairment::default(),
            seed: 1,
            answer_delay: Duration::from_millis(200),
            dialplan: Default::default(),
            retain_history: true,
            echo: None,
            silence_suppression: false,
        }
    }
}

/// A running simulator; dropping it stops the server and all media.
pub struct Simulator {
    addr: SocketAddr,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl Simulator {
    /// Starts a simulator on `127.0.0.1` with an ephemeral port.
    pub async fn start(config: SimConfig) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner::new(config));
        let app = http::router(inner.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "simulator server stopped");
            }
        });
        Ok(Self {
            addr,
            inner,
            server,
        })
    }

    /// The HTTP address (ARI base is `http://{addr}/ari`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A client configuration for this simulator and `app`.
    pub fn client_config(&self, app: &str) -> crate::client::AriConfig {
        let c = &self.inner.config;
        crate::client::AriConfig::new("127.0.0.1", self.addr.port(), &c.username, &c.password, app)
    }

    /// An inbound call: a caller channel enters `Stasis(app, args…)`.
    /// Fails when no WebSocket has registered `app` (Asterisk would fail
    /// the Stasis application and hang up).
    pub fn place_call(&self, app: &str, script: CallerScript) -> Result<String, String> {
        self.inner.place_call(app, script)
    }

    /// The caller says `audio` (16 kHz) now, after its script: a live
    /// caller for dialogues. False if the call's media is not running.
    pub fn say(&self, caller_id: &str, audio: &[i16]) -> bool {
        self.inner.say(caller_id, audio)
    }

    /// When each utterance given to [`Simulator::say`] started being sent
    /// (its first frame's send time).
    pub fn spoken(&self, caller_id: &str) -> Vec<std::time::Instant> {
        self.inner.spoken(caller_id)
    }

    /// The caller (or any channel) hangs up.
    pub fn hangup(&self, channel_id: &str) -> bool {
        self.inner.hangup(channel_id, 16)
    }

    /// What is alive: channels, bridges, media streams, simulator sockets.
    pub fn alive(&self) -> Alive {
        self.inner.alive()
    }

    /// RTP packets received on an externalMedia channel.
    pub fn received(&self, external_channel_id: &str) -> Vec<RtpRecord> {
        self.inner.received(external_channel_id)
    }

    /// RTP packets received for the call of `caller_id` (through its bridge).
    pub fn received_for_caller(&self, caller_id: &str) -> Vec<RtpRecord> {
        self.inner.received_for_caller(caller_id)
    }

    /// Like [`Simulator::received_for_caller`], but hands the packets over:
    /// the simulator forgets them, so a long call's observer neither copies
    /// nor keeps the whole history.
    pub fn take_received_for_caller(&self, caller_id: &str) -> Vec<RtpRecord> {
        self.inner.take_received_for_caller(caller_id)
    }

    /// When the caller's RTP started (the first frame of its script is sent
    /// then): the reference for latency measured on the caller's timeline.
    pub fn media_started(&self, caller_id: &str) -> Option<std::time::Instant> {
        self.inner.media_started(caller_id)
    }

    /// Every event sent to WebSocket clients so far (JSON), for checks
    /// against the api-docs.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.inner.events()
    }

    /// Whether the channel `id` exists (not yet hung up).
    pub fn has_channel(&self, id: &str) -> bool {
        self.inner.lock().channels.contains_key(id)
    }

    /// Tones the app sent into `channel` (`POST /channels/{id}/dtmf`).
    pub fn dtmf_sent(&self, channel: &str) -> Vec<String> {
        self.inner
            .lock()
            .dtmf_sent
            .iter()
            .filter(|(c, _)| c == channel)
            .map(|(_, d)| d.clone())
            .collect()
    }

    /// Adds a fault to the plan.
    pub fn inject(&self, fault: Fault) {
        self.inner.inject(fault);
    }

    /// Closes every events WebSocket (the app stays registered).
    pub fn close_websockets(&self) {
        self.inner.close_websockets();
    }

    /// Asterisk restarts: every channel and bridge is gone without events,
    /// WebSockets close, the app is unregistered.
    pub fn restart(&self) {
        self.inner.restart();
    }

    /// The far end presses a DTMF key (a `ChannelDtmfReceived` event).
    pub fn send_dtmf(&self, channel_id: &str, digit: char) -> bool {
        self.inner.dtmf(channel_id, digit)
    }

    /// Sends a raw text frame to every events WebSocket (to test how the
    /// app copes with frames Asterisk would never send).
    pub fn send_raw_frame(&self, text: &str) {
        self.inner.raw_frame(text);
    }

    /// Number of events WebSocket connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.inner.connections()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.inner.restart();
        self.server.abort();
    }
}
