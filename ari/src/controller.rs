//! The Stasis call controller: one lifecycle per caller channel.
//!
//! StasisStart of a caller → answer → mixing bridge → bind a UDP port
//! ([`MediaHost::open`]) → externalMedia to it → caller and externalMedia
//! into the bridge → [`MediaHost::start`] with the codec and the RTP peer
//! Asterisk reported. The externalMedia channel's own StasisStart is
//! recognised and ignored. StasisEnd, hangup or destruction of either side
//! tears everything down (externalMedia channel, bridge, socket); a failing
//! setup step undoes the steps already done. Teardown is idempotent and
//! treats "already gone" as success.
//!
//! After every (re)connect of the event stream the controller reconciles
//! with `GET /applications/{app}`: calls whose caller left while we were
//! disconnected are torn down, callers we never saw are adopted, and
//! bridges or externalMedia channels that belong to no call are removed.

use crate::client::{AriClient, AriError, ExternalMedia};
use crate::event::Event;
use crate::model::Channel;
use crate::stream::StreamEvent;
use aiagc_engine::Codec;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Suffix of the ids we give externalMedia channels (`{caller}-aiagc-em`).
pub const EXTERNAL_SUFFIX: &str = "-aiagc-em";

/// The media side of a call, provided by the runtime (sockets, the engine)
/// or by tests. The controller never sees audio.
pub trait MediaHost: Send + Sync + 'static {
    /// Binds a UDP socket for `call`; returns the address Asterisk should
    /// send RTP to (`external_host`).
    fn open(&self, call: &str) -> Result<SocketAddr, String>;
    /// Starts media for `call`: RTP from/to `peer`, in `codec`.
    fn start(&self, call: &str, peer: SocketAddr, codec: Codec);
    /// Starts media for `call` over Asterisk's WebSocket media channel,
    /// connected and bridged: audio in `codec` on `socket`. A host without
    /// that transport refuses, and the call's setup is undone.
    fn start_stream(
        &self,
        call: &str,
        socket: crate::media_ws::MediaSocket,
        codec: Codec,
    ) -> Result<(), String> {
        let _ = (call, socket, codec);
        Err("this media host has no WebSocket transport".into())
    }
    /// Stops media and closes the socket of `call` (idempotent).
    fn close(&self, call: &str);
    /// A DTMF digit from the caller.
    fn dtmf(&self, _call: &str, _digit: &str) {}
    /// Who called and what they dialled (the caller channel as Asterisk
    /// described it) and the Stasis arguments (`outbound`, an `AMD()`
    /// status), before [`MediaHost::open`]. A caller turned away because
    /// the host is full comes with [`BUSY_ARG`] first: play the busy
    /// message and hang up.
    fn describe(&self, _channel: &Channel, _args: &[String]) {}
    /// Why this host should take no new caller now, measured (its speech
    /// workers are behind the callers it has), or `None`.
    fn behind(&self) -> Option<String> {
        None
    }
}

/// The first Stasis argument the media host is handed for a caller
/// turned away by admission control (never one Asterisk sends: Stasis
/// arguments come from the dialplan, which has no reason to use it).
pub const BUSY_ARG: &str = "aiagc:busy";

/// How a call's media reaches Asterisk (`[media] transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaTransport {
    /// externalMedia RTP over UDP to a port of ours (formats with a static
    /// payload type only: Asterisk drops slin16 it is sent over RTP).
    #[default]
    Rtp,
    /// externalMedia over Asterisk's WebSocket media channel
    /// (`chan_websocket`), Asterisk listening: we connect to its HTTP
    /// server, the port ARI is on, so no port of ours need be reachable from
    /// Asterisk's host, and the connection shares ARI's TLS when that is
    /// `https`. Slin16 both ways.
    WebSocket,
}

impl std::str::FromStr for MediaTransport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rtp" => Ok(Self::Rtp),
            "websocket" => Ok(Self::WebSocket),
            other => Err(format!("{other:?}: use \"rtp\" or \"websocket\"")),
        }
    }
}

/// Controller settings.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Format externalMedia is asked for (RTP; the WebSocket transport
    /// carries slin16).
    pub format: Codec,
    /// RTP or WebSocket.
    pub transport: MediaTransport,
    /// Hang the caller up when setup fails (else leave it in Stasis).
    pub hangup_on_setup_failure: bool,
    /// While draining, new callers go here (ARI `continue`: context,
    /// extension, priority), e.g. the old AGI route; `None` hangs them up.
    /// Callers over the limit of the host go there too.
    pub drain_to: Option<(String, String, i64)>,
    /// Calls this host takes at once (0: no limit); callers beyond it go
    /// to `drain_to` or, without one, hear the busy message.
    pub max_calls: usize,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            format: Codec::G722,
            transport: MediaTransport::Rtp,
            hangup_on_setup_failure: true,
            drain_to: None,
            max_calls: 0,
        }
    }
}

#[derive(Default)]
struct Resources {
    bridge: Option<String>,
    external: Option<String>,
    media_open: bool,
    torn_down: bool,
}

struct Slot {
    caller: String,
    /// Turned away by admission control: hears the busy message only.
    busy: bool,
    /// Stasis arguments (from StasisStart, or the dialplan's app data).
    args: Vec<String>,
    ended: AtomicBool,
    resources: tokio::sync::Mutex<Resources>,
}

/// Counters of the controller's work.
#[derive(Debug, Default)]
pub struct ControllerStats {
    /// Calls whose setup completed.
    pub calls_started: AtomicU64,
    /// Setups that failed and were undone.
    pub setups_failed: AtomicU64,
    /// Calls torn down.
    pub calls_ended: AtomicU64,
    /// Reconciliations run.
    pub reconciliations: AtomicU64,
    /// Calls adopted during reconciliation.
    pub adopted: AtomicU64,
    /// Orphans (bridges, externalMedia channels) removed by reconciliation.
    pub orphans_removed: AtomicU64,
    /// Times the events WebSocket connected (the first plus reconnects).
    pub connects: AtomicU64,
    /// Times it was lost.
    pub disconnects: AtomicU64,
    /// Frames that were not a valid event (skipped).
    pub malformed_events: AtomicU64,
    /// Callers turned away because the host was full (the configured
    /// limit, or its speech workers behind).
    pub turned_away: AtomicU64,
}

struct Shared<M> {
    client: AriClient,
    media: Arc<M>,
    config: ControllerConfig,
    calls: Mutex<HashMap<String, Arc<Slot>>>,
    external: Mutex<HashMap<String, String>>,
    tasks: AtomicUsize,
    stats: ControllerStats,
    draining: AtomicBool,
    connected: AtomicBool,
}

/// The call controller (cheap to clone).
pub struct Controller<M: MediaHost> {
    shared: Arc<Shared<M>>,
}

impl<M: MediaHost> Clone for Controller<M> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

/// Teardown steps succeed when the resource is already gone; anything
/// else is logged once with the call id (and the next reconciliation
/// retries).
fn gone_is_fine(call: &str, step: &str, result: Result<(), AriError>) {
    if let Err(e) = result {
        if !e.is_gone() {
            tracing::warn!(call = %call, error = %e, "{step} failed");
        }
    }
}

struct TaskGuard<'a>(&'a AtomicUsize);
impl Drop for TaskGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<M: MediaHost> Controller<M> {
    /// A controller using `client` for REST and `media` for the media side.
    pub fn new(client: AriClient, media: Arc<M>, config: ControllerConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                client,
                media,
                config,
                calls: Mutex::new(HashMap::new()),
                external: Mutex::new(HashMap::new()),
                tasks: AtomicUsize::new(0),
                stats: ControllerStats::default(),
                draining: AtomicBool::new(false),
                connected: AtomicBool::new(false),
            }),
        }
    }

    /// Calls in progress (set up or being set up).
    pub fn active_calls(&self) -> usize {
        self.shared
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Ids of the caller channels of active calls.
    pub fn call_ids(&self) -> Vec<String> {
        self.shared
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Setup/teardown tasks still running.
    pub fn tasks(&self) -> usize {
        self.shared.tasks.load(Ordering::SeqCst)
    }

    /// Counters.
    pub fn stats(&self) -> &ControllerStats {
        &self.shared.stats
    }

    fn spawn<F>(&self, f: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.shared.tasks.fetch_add(1, Ordering::SeqCst);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let _guard = TaskGuard(&shared.tasks);
            f.await;
        });
    }

    /// Consumes the event stream until it ends.
    pub async fn run(self, mut events: tokio::sync::mpsc::Receiver<StreamEvent>) {
        while let Some(item) = events.recv().await {
            self.handle(item);
        }
    }

    /// Handles one item of the event stream.
    pub fn handle(&self, item: StreamEvent) {
        match item {
            StreamEvent::Connected => {
                self.shared.stats.connects.fetch_add(1, Ordering::Relaxed);
                self.shared.connected.store(true, Ordering::SeqCst);
                let me = self.clone();
                self.spawn(async move { me.reconcile().await });
            }
            StreamEvent::Event(event) => self.on_event(*event),
            StreamEvent::Disconnected(_) => {
                self.shared
                    .stats
                    .disconnects
                    .fetch_add(1, Ordering::Relaxed);
                self.shared.connected.store(false, Ordering::SeqCst)
            }
            StreamEvent::Malformed(_) => {
                self.shared
                    .stats
                    .malformed_events
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn slots(&self) -> Vec<Arc<Slot>> {
        self.shared
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn is_call(&self, caller: &str) -> bool {
        self.shared
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(caller)
    }

    fn slot_of_channel(&self, id: &str) -> Option<(Arc<Slot>, bool)> {
        if let Some(s) = self
            .shared
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            return Some((s.clone(), true));
        }
        let caller = self
            .shared
            .external
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()?;
        self.shared
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&caller)
            .map(|s| (s.clone(), false))
    }

    fn on_event(&self, event: Event) {
        match event {
            Event::StasisStart { channel, args, .. } => {
                if channel.is_external_media() || channel.id.ends_with(EXTERNAL_SUFFIX) {
                    return;
                }
                if self.shared.draining.load(Ordering::SeqCst) {
                    self.turn_away(channel.id);
                    return;
                }
                let known = self
                    .shared
                    .calls
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains_key(&channel.id);
                // A call already taken is never turned away (a repeated
                // StasisStart adopts nothing new).
                if let Some(why) = self.full().filter(|_| !known) {
                    self.shared
                        .stats
                        .turned_away
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(call = %channel.id, why = %why, "host full: caller turned away");
                    if self.shared.config.drain_to.is_some() {
                        self.turn_away(channel.id);
                    } else {
                        self.adopt_as(channel, args, true);
                    }
                    return;
                }
                self.adopt(channel, args);
            }
            Event::StasisEnd { channel }
            | Event::ChannelDestroyed { channel, .. }
            | Event::ChannelHangupRequest { channel, .. } => {
                if let Some((slot, is_caller)) = self.slot_of_channel(&channel.id) {
                    slot.ended.store(true, Ordering::SeqCst);
                    // The caller left the app (hangup or transfer): leave it be.
                    // Our externalMedia leg died: the caller has no media, hang up.
                    let hangup_caller = !is_caller;
                    let me = self.clone();
                    self.spawn(async move { me.teardown(slot, hangup_caller).await });
                }
            }
            Event::ChannelDtmfReceived { channel, digit, .. } if self.is_call(&channel.id) => {
                self.shared.media.dtmf(&channel.id, &digit);
            }
            _ => {}
        }
    }

    /// Why no new caller should be taken now: the configured limit of
    /// calls is reached, or the media host says it is behind.
    pub fn full(&self) -> Option<String> {
        let max = self.shared.config.max_calls;
        if max > 0 {
            let taken = self
                .shared
                .calls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .filter(|s| !s.busy)
                .count();
            if taken >= max {
                return Some(format!("{taken} of {max} calls"));
            }
        }
        self.shared.media.behind()
    }

    /// Whether a new caller would be taken now, and if not, why: for
    /// `/readyz`, so a load balancer or the dialplan steers around a host
    /// that is full, draining or not connected.
    pub fn admits(&self) -> Result<(), String> {
        if !self.is_connected() {
            return Err("ARI events not connected".into());
        }
        if self.shared.draining.load(Ordering::SeqCst) {
            return Err("draining".into());
        }
        match self.full() {
            Some(why) => Err(format!("full: {why}")),
            None => Ok(()),
        }
    }

    /// Starts the lifecycle of a caller channel (idempotent).
    fn adopt(&self, channel: Channel, args: Vec<String>) {
        self.adopt_as(channel, args, false)
    }

    fn adopt_as(&self, channel: Channel, mut args: Vec<String>, busy: bool) {
        if busy {
            args.insert(0, BUSY_ARG.to_owned());
        }
        let slot = {
            let mut calls = self.shared.calls.lock().unwrap_or_else(|p| p.into_inner());
            if calls.contains_key(&channel.id) {
                return;
            }
            let slot = Arc::new(Slot {
                caller: channel.id.clone(),
                busy,
                args,
                ended: AtomicBool::new(false),
                resources: tokio::sync::Mutex::new(Resources::default()),
            });
            calls.insert(channel.id.clone(), slot.clone());
            slot
        };
        let me = self.clone();
        self.spawn(async move { me.setup(slot, channel).await });
    }

    async fn setup(&self, slot: Arc<Slot>, channel: Channel) {
        let call = slot.caller.clone();
        match self.try_setup(&slot, &channel).await {
            Ok(()) => {
                self.shared
                    .stats
                    .calls_started
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(call = %call, "call set up");
                if slot.ended.load(Ordering::SeqCst) {
                    self.teardown(slot, false).await;
                }
            }
            Err(e) => {
                self.shared
                    .stats
                    .setups_failed
                    .fetch_add(1, Ordering::Relaxed);
                // Unless the caller already left the app, hang it up: a 404
                // says it is gone (the hangup then 404s harmlessly), anything
                // else leaves it in silence with no one to answer it.
                let left = slot.ended.load(Ordering::SeqCst);
                tracing::warn!(call = %call, error = %e, caller_left = left, "call setup failed; undoing");
                self.teardown(slot, !left && self.shared.config.hangup_on_setup_failure)
                    .await;
            }
        }
    }

    async fn try_setup(&self, slot: &Slot, channel: &Channel) -> Result<(), AriError> {
        let s = &self.shared;
        let id = &channel.id;
        let check = || {
            if slot.ended.load(Ordering::SeqCst) {
                Err(AriError::NotFound("caller hung up during setup".into()))
            } else {
                Ok(())
            }
        };
        let mut res = slot.resources.lock().await;
        if channel.state != "Up" {
            s.client.answer(id).await?;
        }
        check()?;
        let bridge = s.client.create_bridge(Some(&format!("aiagc-{id}"))).await?;
        res.bridge = Some(bridge.id.clone());
        check()?;
        s.media.describe(channel, &slot.args);
        if s.config.transport == MediaTransport::WebSocket {
            return self.setup_stream(&mut res, id, &bridge.id, check).await;
        }
        let local = s
            .media
            .open(id)
            .map_err(|e| AriError::Transport(format!("RTP socket: {e}")))?;
        res.media_open = true;
        let em_id = format!("{id}{EXTERNAL_SUFFIX}");
        s.external
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(em_id.clone(), id.clone());
        let em = s
            .client
            .external_media(&ExternalMedia {
                external_host: local.to_string(),
                format: s.config.format.asterisk_format().into(),
                channel_id: Some(em_id.clone()),
            })
            .await?;
        res.external = Some(em.id.clone());
        check()?;
        s.client.add_channel(&bridge.id, id).await?;
        s.client.add_new_channel(&bridge.id, &em.id).await?;
        let peer = em.unicast_rtp_peer().ok_or_else(|| {
            AriError::Decode("externalMedia channel without UNICASTRTP_LOCAL_ADDRESS/PORT".into())
        })?;
        check()?;
        s.media.start(id, peer, s.config.format);
        Ok(())
    }

    /// The rest of [`Self::try_setup`] over the WebSocket transport: the
    /// media channel, both into the bridge, then the media host connects.
    async fn setup_stream(
        &self,
        res: &mut Resources,
        id: &str,
        bridge: &str,
        check: impl Fn() -> Result<(), AriError>,
    ) -> Result<(), AriError> {
        let s = &self.shared;
        let em_id = format!("{id}{EXTERNAL_SUFFIX}");
        s.external
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(em_id.clone(), id.to_owned());
        let codec = Codec::Slin16;
        let em = s
            .client
            .external_media_websocket(codec.asterisk_format(), Some(&em_id))
            .await?;
        res.external = Some(em.id.clone());
        check()?;
        let connection = em.media_connection_id().ok_or_else(|| {
            AriError::Decode("WebSocket externalMedia without MEDIA_WEBSOCKET_CONNECTION_ID".into())
        })?;
        let url = s.client.config().media_url(connection);
        // Asterisk answers the media channel (and it enters the app) only
        // once the connection is up: connect, then bridge.
        let tls = s.client.config().ws_connector()?;
        let socket =
            crate::media_ws::MediaSocket::connect(&url, true, s.client.config().timeout, tls)
                .await
                .map_err(|e| AriError::Transport(e.to_string()))?;
        s.client.add_channel(bridge, id).await?;
        s.client.add_new_channel(bridge, &em.id).await?;
        check()?;
        res.media_open = true;
        s.media
            .start_stream(id, socket, codec)
            .map_err(|e| AriError::Transport(format!("media WebSocket: {e}")))?;
        Ok(())
    }

    /// Removes everything of a call; "already gone" counts as done.
    async fn teardown(&self, slot: Arc<Slot>, hangup_caller: bool) {
        let s = &self.shared;
        let mut res = slot.resources.lock().await;
        if res.torn_down {
            return;
        }
        res.torn_down = true;
        let call = &slot.caller;
        if let Some(em) = res.external.take() {
            gone_is_fine(
                call,
                "externalMedia hangup",
                s.client.hangup(&em, "normal").await,
            );
        }
        if let Some(b) = res.bridge.take() {
            gone_is_fine(call, "bridge destroy", s.client.destroy_bridge(&b).await);
        }
        if res.media_open {
            s.media.close(call);
            res.media_open = false;
        }
        if hangup_caller {
            gone_is_fine(call, "caller hangup", s.client.hangup(call, "normal").await);
        }
        s.external
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, c| c != call);
        s.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(call);
        s.stats.calls_ended.fetch_add(1, Ordering::Relaxed);
        tracing::info!(call = %call, "call torn down");
    }

    /// Brings our view in line with Asterisk's after a (re)connect.
    pub async fn reconcile(&self) {
        let s = &self.shared;
        s.stats.reconciliations.fetch_add(1, Ordering::Relaxed);
        // Right after a restart the app may not be registered yet: retry briefly.
        let mut attempt = 0;
        let app = loop {
            match s.client.application().await {
                Ok(app) => break app,
                Err(AriError::NotFound(_)) if attempt < 10 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reconciliation: application lookup failed");
                    return;
                }
            }
        };
        let in_app: std::collections::HashSet<&String> = app.channel_ids.iter().collect();
        // Calls whose caller is gone.
        let known = self.slots();
        let mut live_bridges = std::collections::HashSet::new();
        for slot in known {
            if in_app.contains(&slot.caller) {
                if let Ok(res) = slot.resources.try_lock() {
                    if let Some(b) = &res.bridge {
                        live_bridges.insert(b.clone());
                    }
                } else {
                    // Setup in flight: its bridge is not an orphan.
                    live_bridges.insert(format!("aiagc-{}", slot.caller));
                }
                continue;
            }
            slot.ended.store(true, Ordering::SeqCst);
            self.teardown(slot, false).await;
        }
        // Channels in the app we do not know: orphaned externalMedia legs
        // are removed, callers in Stasis are adopted.
        for id in &app.channel_ids {
            if self.slot_of_channel(id).is_some() {
                continue;
            }
            match s.client.channel(id).await {
                Ok(ch) if ch.is_external_media() || ch.id.ends_with(EXTERNAL_SUFFIX) => {
                    if s.client.hangup(id, "normal").await.is_ok() {
                        s.stats.orphans_removed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(ch) if ch.in_stasis(&s.client.config().app) => {
                    s.stats.adopted.fetch_add(1, Ordering::Relaxed);
                    // Its StasisStart was missed: the arguments from the
                    // dialplan application's data (`aiagc,outbound`).
                    let args = ch
                        .dialplan
                        .app_data
                        .split(',')
                        .skip(1)
                        .map(|a| a.trim().to_owned())
                        .collect();
                    self.adopt(ch, args);
                }
                // Listed because the app is subscribed to it (the other half
                // of a Local channel, a channel it originated that is still
                // in the dialplan): not ours to answer.
                Ok(_) => {}
                Err(_) => {}
            }
        }
        for b in &app.bridge_ids {
            let ours = s
                .calls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .any(|slot| {
                    slot.resources
                        .try_lock()
                        .map(|r| r.bridge.as_deref() == Some(b.as_str()))
                        .unwrap_or(true)
                });
            if !ours && !live_bridges.contains(b) && s.client.destroy_bridge(b).await.is_ok() {
                s.stats.orphans_removed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Whether the events WebSocket is connected (the app is registered).
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    /// Stops taking calls: new callers are sent to `drain_to` (or hung
    /// up); calls in progress go on.
    pub fn drain(&self) {
        self.shared.draining.store(true, Ordering::SeqCst);
    }

    fn turn_away(&self, caller: String) {
        let me = self.clone();
        self.spawn(async move {
            let client = &me.shared.client;
            let result = match &me.shared.config.drain_to {
                Some((context, exten, prio)) => {
                    client
                        .continue_in_dialplan(&caller, context, exten, *prio)
                        .await
                }
                None => client.hangup(&caller, "congestion").await,
            };
            tracing::info!(call = %caller, "draining: call turned away");
            gone_is_fine(&caller, "turning away", result);
        });
    }

    /// Tears down every call (shutdown), hanging the callers up.
    pub async fn shutdown(&self) {
        for slot in self.slots() {
            slot.ended.store(true, Ordering::SeqCst);
            self.teardown(slot, true).await;
        }
    }
}
