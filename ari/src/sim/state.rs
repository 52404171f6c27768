//! The simulator's channels, bridges, event fan-out and fault plan.

use super::media::{self, MediaHandle, RtpRecord};
use super::SimConfig;
use crate::model::{Bridge, CallerId, Channel, DialplanCep};
use aiagc_engine::Codec;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;

/// What a simulated caller says once bridged: 16 kHz mono PCM (pauses are
/// silence in it), then `hangup_after` (if set) the caller hangs up.
#[derive(Debug, Clone, Default)]
pub struct CallerScript {
    /// Stasis arguments (`inbound` for the incoming-ari context).
    pub args: Vec<String>,
    /// Caller number.
    pub number: String,
    /// 16 kHz audio the caller sends; silence follows.
    pub audio: Vec<i16>,
    /// Hang up this long after the audio ends.
    pub hangup_after: Option<Duration>,
}

/// Counts of what is alive in the simulator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Alive {
    /// Channels that exist.
    pub channels: usize,
    /// Bridges that exist.
    pub bridges: usize,
    /// RTP streams running.
    pub media_streams: usize,
    /// Media sockets the simulator holds (one per externalMedia channel).
    pub sockets: usize,
    /// WebSocket media connections still open.
    pub media_websockets: usize,
}

/// A planned fault.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The next `times` requests whose method and path match answer
    /// `status` with `body`.
    Fail {
        /// HTTP method (`POST`, `DELETE`, …).
        method: String,
        /// Substring of the path (after `/ari`).
        path_contains: String,
        /// Status to answer.
        status: u16,
        /// Body to answer.
        body: String,
        /// How many requests.
        times: u32,
    },
    /// The next `times` matching requests wait `delay` first.
    Delay {
        /// HTTP method.
        method: String,
        /// Substring of the path.
        path_contains: String,
        /// Added latency.
        delay: Duration,
        /// How many requests.
        times: u32,
    },
    /// The caller of the next call set up hangs up when the matching
    /// request arrives (before it is answered).
    HangupCallerOn {
        /// HTTP method.
        method: String,
        /// Substring of the path.
        path_contains: String,
    },
}

pub(super) struct ExternalLeg {
    pub io: LegIo,
    pub codec: Codec,
    pub records: Arc<Mutex<Vec<RtpRecord>>>,
}

/// How an externalMedia channel carries its media.
pub(super) enum LegIo {
    /// RTP over UDP to `target`.
    Rtp {
        socket: Arc<tokio::net::UdpSocket>,
        target: SocketAddr,
    },
    /// `transport=websocket`, the app connected under `/media/<id>`.
    WebSocket(Arc<super::ws_media::WsLeg>),
}

pub(super) struct SimChannel {
    pub model: Channel,
    pub in_stasis: bool,
    pub bridge: Option<String>,
    pub external: Option<ExternalLeg>,
    pub script: Option<CallerScript>,
    /// The other half of a `Local/` channel (`;1` ↔ `;2`). The `;2` half
    /// runs the dialplan and is not in Stasis, but the app that originated
    /// the pair is subscribed to it: Asterisk lists it in
    /// `GET /applications/{app}` and sends its hangup events.
    pub companion: Option<String>,
}

#[derive(Default)]
pub(super) struct State {
    pub channels: HashMap<String, SimChannel>,
    pub bridges: HashMap<String, Bridge>,
    pub registered: Vec<String>,
    /// Events WebSockets and the app each registered.
    pub sockets: Vec<(String, mpsc::UnboundedSender<Option<String>>)>,
    /// The Stasis app of each channel (events go to that app's sockets
    /// only, as Asterisk sends them to the subscribed app).
    pub channel_apps: HashMap<String, String>,
    /// The app of each bridge (of the channels put into it).
    pub bridge_apps: HashMap<String, String>,
    pub faults: Vec<Fault>,
    pub media: HashMap<String, MediaHandle>,
    pub events: Vec<Value>,
    pub playbacks: HashMap<String, String>,
    pub variables: HashMap<(String, String), String>,
    /// Tones sent into channels (`POST /channels/{id}/dtmf`): id, digits.
    pub dtmf_sent: Vec<(String, String)>,
    pub last_caller: Option<String>,
    pub media_started: HashMap<String, std::time::Instant>,
    /// Live speech of each caller (by caller channel id).
    pub mouths: HashMap<String, Arc<Mutex<media::Mouth>>>,
}

impl State {
    /// Stops the RTP streams of `bridge` (either side left, or it was destroyed).
    pub fn stop_bridge_media(&mut self, bridge: &str) {
        let keys: Vec<String> = self
            .media
            .iter()
            .filter(|(_, m)| m.bridge == bridge)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            if let Some(m) = self.media.remove(&k) {
                m.stop();
            }
        }
    }
}

pub(super) struct Inner {
    pub config: SimConfig,
    state: Mutex<State>,
    counter: AtomicU64,
    connections: AtomicU64,
    rng: Mutex<rand::rngs::SmallRng>,
}

pub(super) fn now_text() -> String {
    // ARI's Date format: 2026-11-24T12:23:14.405+0000.
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}+0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl Inner {
    pub fn new(config: SimConfig) -> Self {
        let rng = rand::rngs::SmallRng::seed_from_u64(config.seed);
        Self {
            config,
            state: Mutex::new(State::default()),
            counter: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            rng: Mutex::new(rng),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    pub fn channel_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        format!("{secs}.{n}")
    }

    pub fn uuid(&self) -> String {
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let b: [u8; 16] = rng.random();
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "{}-{}-4{}-a{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32]
        )
    }

    pub fn random_u64(&self) -> u64 {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).random()
    }

    /// Sends an event to the WebSockets of the app its channel (or bridge)
    /// belongs to; events of no known app go to every socket.
    pub fn emit(&self, state: &mut State, mut event: Value) {
        let id = |kind: &str| {
            event
                .get(kind)
                .and_then(|c| c.get("id"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let (channel, bridge) = (id("channel"), id("bridge"));
        let app = channel
            .as_ref()
            .and_then(|c| state.channel_apps.get(c))
            .or_else(|| bridge.as_ref().and_then(|b| state.bridge_apps.get(b)))
            .cloned();
        if let (Some(a), Some(b)) = (&app, &bridge) {
            state
                .bridge_apps
                .entry(b.clone())
                .or_insert_with(|| a.clone());
        }
        let label = app
            .clone()
            .or_else(|| state.registered.first().cloned())
            .unwrap_or_else(|| "aiagc".into());
        if let Some(obj) = event.as_object_mut() {
            obj.insert("timestamp".into(), json!(now_text()));
            obj.insert("asterisk_id".into(), json!("02:fc:00:00:00:01"));
            obj.insert("application".into(), json!(label));
        }
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match (kind, &channel, &bridge) {
            ("ChannelDestroyed", Some(c), _) => {
                state.channel_apps.remove(c);
            }
            ("BridgeDestroyed", _, Some(b)) => {
                state.bridge_apps.remove(b);
            }
            _ => {}
        }
        let text = event.to_string();
        state.events.push(event);
        if !self.config.retain_history && state.events.len() > 1024 {
            let excess = state.events.len() - 512;
            state.events.drain(..excess);
        }
        state.sockets.retain(|(a, s)| match &app {
            Some(target) if target != a => true,
            _ => s.send(Some(text.clone())).is_ok(),
        });
    }

    /// Forgets closed connections; `app` stays registered while one of its
    /// connections is open.
    pub fn unregister_closed(&self, app: &str) {
        let mut st = self.lock();
        st.sockets.retain(|(_, s)| !s.is_closed());
        if !st.sockets.iter().any(|(a, _)| a == app) {
            st.registered.retain(|a| a != app);
        }
    }

    pub fn register(&self, app: &str) -> mpsc::UnboundedReceiver<Option<String>> {
        self.connections.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let mut st = self.lock();
        if !st.registered.iter().any(|a| a == app) {
            st.registered.push(app.to_owned());
        }
        st.sockets.push((app.to_owned(), tx));
        rx
    }

    pub fn new_channel(
        &self,
        name: String,
        state: &str,
        number: &str,
        context: &str,
        app_data: &str,
    ) -> Channel {
        Channel {
            id: self.channel_id(),
            name,
            state: state.into(),
            protocol_id: String::new(),
            caller: CallerId {
                name: String::new(),
                number: number.into(),
            },
            connected: CallerId::default(),
            accountcode: String::new(),
            dialplan: DialplanCep {
                context: context.into(),
                exten: "s".into(),
                priority: 1,
                app_name: "Stasis".into(),
                app_data: app_data.into(),
            },
            creationtime: now_text(),
            language: "de".into(),
            channelvars: None,
        }
    }

    pub fn place_call(&self, app: &str, script: CallerScript) -> Result<String, String> {
        let mut st = self.lock();
        if !st.registered.iter().any(|a| a == app) {
            return Err(format!("Stasis app {app} is not registered"));
        }
        let n = self.counter.load(Ordering::Relaxed);
        let mut args = vec![app.to_owned()];
        args.extend(script.args.iter().cloned());
        let channel = self.new_channel(
            format!("PJSIP/trunk-{n:08x}"),
            "Ring",
            &script.number,
            "incoming-ari",
            &args.join(","),
        );
        let id = channel.id.clone();
        st.channel_apps.insert(id.clone(), app.to_owned());
        self.emit(
            &mut st,
            json!({"type": "StasisStart", "args": script.args, "channel": channel}),
        );
        st.last_caller = Some(id.clone());
        st.channels.insert(
            id.clone(),
            SimChannel {
                model: channel,
                in_stasis: true,
                bridge: None,
                external: None,
                script: Some(script),
                companion: None,
            },
        );
        Ok(id)
    }

    /// Removes a channel with Asterisk's event sequence; stops its media.
    pub fn hangup(&self, id: &str, cause: i64) -> bool {
        let mut st = self.lock();
        self.hangup_locked(&mut st, id, cause)
    }

    pub fn hangup_locked(&self, st: &mut State, id: &str, cause: i64) -> bool {
        // A Local pair goes down together, led by the half in the app.
        let id = match st.channels.get(id) {
            Some(c) if !c.in_stasis && c.external.is_none() && c.companion.is_some() => {
                c.companion.clone().unwrap_or_default()
            }
            Some(_) => id.to_owned(),
            None => return false,
        };
        let id = id.as_str();
        let Some(ch) = st.channels.remove(id) else {
            return false;
        };
        // Order seen on 22.10.1 when the dialplan half hangs up: its
        // HangupRequest, the app half's, its ChannelDestroyed, then the app
        // half's StasisEnd and ChannelDestroyed.
        let other = ch
            .companion
            .as_ref()
            .and_then(|c| st.channels.remove(c))
            .map(|c| json!(c.model));
        if let Some(other) = &other {
            self.emit(
                st,
                json!({"type": "ChannelHangupRequest", "cause": cause, "channel": other}),
            );
        }
        if !self.config.retain_history {
            st.mouths.remove(id);
            st.media_started.remove(id);
            st.variables.retain(|(c, _), _| c != id);
        }
        let channel = json!(ch.model);
        self.emit(
            st,
            json!({"type": "ChannelHangupRequest", "cause": cause, "channel": channel}),
        );
        if let Some(bridge_id) = &ch.bridge {
            if let Some(b) = st.bridges.get_mut(bridge_id) {
                b.channels.retain(|c| c != id);
                let bridge = json!(b);
                self.emit(
                    st,
                    json!({"type": "ChannelLeftBridge", "bridge": bridge, "channel": channel}),
                );
            }
        }
        if let Some(other) = &other {
            self.emit(st, json!({"type": "ChannelDestroyed", "cause": cause, "cause_txt": "Normal Clearing", "channel": other}));
        }
        if ch.in_stasis {
            self.emit(st, json!({"type": "StasisEnd", "channel": channel}));
        }
        self.emit(st, json!({"type": "ChannelDestroyed", "cause": cause, "cause_txt": "Normal Clearing", "channel": channel}));
        // Media of the bridge this channel was in stops when either side goes.
        if let Some(bridge_id) = ch.bridge {
            st.stop_bridge_media(&bridge_id);
        }
        if let Some(leg) = &ch.external {
            if let Some(m) = st.media.remove(id) {
                m.stop();
            }
            if let LegIo::WebSocket(w) = &leg.io {
                w.hung_up();
            }
        }
        true
    }

    /// Starts RTP when a bridge holds a caller and an externalMedia channel.
    pub fn maybe_start_media(self: &Arc<Self>, st: &mut State, bridge_id: &str) {
        let Some(bridge) = st.bridges.get(bridge_id) else {
            return;
        };
        let members = bridge.channels.clone();
        let ext = members
            .iter()
            .find(|c| st.channels.get(*c).is_some_and(|ch| ch.external.is_some()));
        let caller = members
            .iter()
            .find(|c| st.channels.get(*c).is_some_and(|ch| ch.external.is_none()));
        let (Some(ext), Some(caller)) = (ext.cloned(), caller.cloned()) else {
            // Two externalMedia channels and no caller (`aiagc check`'s
            // round trip): Asterisk mixes them into each other.
            let legs: Vec<&String> = members
                .iter()
                .filter(|c| st.channels.get(*c).is_some_and(|ch| ch.external.is_some()))
                .collect();
            if let [a, b] = legs[..] {
                if st.media.contains_key(a) {
                    return;
                }
                let leg = |id: &String| {
                    st.channels
                        .get(id)
                        .and_then(|c| c.external.as_ref())
                        .and_then(|l| match &l.io {
                            LegIo::Rtp { socket, target } => Some(media::RelayLeg {
                                socket: socket.clone(),
                                target: *target,
                                codec: l.codec,
                            }),
                            LegIo::WebSocket(_) => None,
                        })
                };
                let ws = |id: &String| {
                    st.channels
                        .get(id)
                        .and_then(|c| c.external.as_ref())
                        .and_then(|l| match &l.io {
                            LegIo::WebSocket(w) => Some((w.clone(), l.codec)),
                            LegIo::Rtp { .. } => None,
                        })
                };
                if let (Some(wa), Some(wb)) = (ws(a), ws(b)) {
                    let handle = super::ws_media::start_relay(wa, wb, bridge_id);
                    st.media.insert(a.clone(), handle);
                    return;
                }
                if let (Some(la), Some(lb)) = (leg(a), leg(b)) {
                    let handle = media::start_relay(la, lb, bridge_id, self.random_u64());
                    st.media.insert(a.clone(), handle);
                }
            }
            return;
        };
        if st.media.contains_key(&ext) {
            return;
        }
        let script = st
            .channels
            .get(&caller)
            .and_then(|c| c.script.clone())
            .unwrap_or_default();
        let Some(leg) = st.channels.get(&ext).and_then(|c| c.external.as_ref()) else {
            return;
        };
        let suppress_silence = self.config.silence_suppression
            || st
                .channels
                .get(&caller)
                .is_some_and(|c| c.model.name.starts_with("Local/"));
        let (socket, target) = match &leg.io {
            LegIo::Rtp { socket, target } => (socket.clone(), *target),
            LegIo::WebSocket(w) => {
                let handle = super::ws_media::start(
                    self.clone(),
                    super::ws_media::WsStream {
                        leg: w.clone(),
                        codec: leg.codec,
                        records: leg.records.clone(),
                        script,
                        caller_id: caller.clone(),
                        echo: self.config.echo,
                        seed: self.random_u64(),
                        mouth: st.mouths.entry(caller.clone()).or_default().clone(),
                        suppress_silence,
                    },
                    bridge_id,
                );
                st.media.insert(ext, handle);
                st.media_started.insert(caller, std::time::Instant::now());
                return;
            }
        };
        let handle = media::start(
            self.clone(),
            media::Stream {
                socket,
                target,
                codec: leg.codec,
                records: leg.records.clone(),
                script,
                caller_id: caller.clone(),
                bridge_id: bridge_id.to_owned(),
                impairment: self.config.impairment,
                echo: self.config.echo,
                seed: self.random_u64(),
                mouth: st.mouths.entry(caller.clone()).or_default().clone(),
                suppress_silence,
            },
        );
        st.media.insert(ext, handle);
        st.media_started.insert(caller, std::time::Instant::now());
    }

    /// Queues live speech for the caller `id` (16 kHz); false if its media
    /// has not started.
    pub fn say(&self, id: &str, audio: &[i16]) -> bool {
        let st = self.lock();
        let codec = st.channels.values().find_map(|c| {
            c.external
                .as_ref()
                .filter(|_| st.media.contains_key(&c.model.id))
                .filter(|_| {
                    c.bridge.is_some()
                        && c.bridge == st.channels.get(id).and_then(|x| x.bridge.clone())
                })
                .map(|leg| leg.codec)
        });
        match (codec, st.mouths.get(id)) {
            (Some(codec), Some(m)) => {
                m.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .say(audio, codec);
                true
            }
            _ => false,
        }
    }

    /// When each live utterance of caller `id` started being sent.
    pub fn spoken(&self, id: &str) -> Vec<std::time::Instant> {
        let st = self.lock();
        st.mouths
            .get(id)
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).spoken.clone())
            .unwrap_or_default()
    }

    pub fn dtmf(&self, id: &str, digit: char) -> bool {
        let mut st = self.lock();
        let Some(c) = st.channels.get(id).map(|c| json!(c.model)) else {
            return false;
        };
        self.emit(&mut st, json!({"type": "ChannelDtmfReceived", "digit": digit.to_string(), "duration_ms": 100, "channel": c}));
        true
    }

    pub fn raw_frame(&self, text: &str) {
        let mut st = self.lock();
        st.sockets
            .retain(|(_, s)| s.send(Some(text.to_owned())).is_ok());
    }

    pub fn alive(&self) -> Alive {
        let st = self.lock();
        Alive {
            channels: st.channels.len(),
            bridges: st.bridges.len(),
            media_streams: st.media.values().filter(|m| !m.is_finished()).count(),
            sockets: st
                .channels
                .values()
                .filter(|c| c.external.is_some())
                .count(),
            media_websockets: st
                .channels
                .values()
                .filter_map(|c| match c.external.as_ref().map(|l| &l.io) {
                    Some(LegIo::WebSocket(w)) => Some(w),
                    _ => None,
                })
                .filter(|w| w.is_open())
                .count(),
        }
    }

    pub fn received(&self, id: &str) -> Vec<RtpRecord> {
        let st = self.lock();
        st.channels
            .get(id)
            .and_then(|c| c.external.as_ref())
            .map(|l| l.records.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .unwrap_or_default()
    }

    pub fn received_for_caller(&self, caller: &str) -> Vec<RtpRecord> {
        self.caller_records(caller, |r| r.clone())
    }

    pub fn take_received_for_caller(&self, caller: &str) -> Vec<RtpRecord> {
        self.caller_records(caller, std::mem::take)
    }

    /// The RTP records of the externalMedia legs in the caller's bridge,
    /// through `get` (a copy, or taking them).
    fn caller_records(
        &self,
        caller: &str,
        get: impl Fn(&mut Vec<RtpRecord>) -> Vec<RtpRecord>,
    ) -> Vec<RtpRecord> {
        let st = self.lock();
        let Some(bridge) = st.channels.get(caller).and_then(|c| c.bridge.clone()) else {
            return Vec::new();
        };
        st.channels
            .values()
            .filter(|c| c.bridge.as_deref() == Some(bridge.as_str()))
            .filter_map(|c| c.external.as_ref())
            .flat_map(|l| get(&mut l.records.lock().unwrap_or_else(|p| p.into_inner())))
            .collect()
    }

    pub fn media_started(&self, caller: &str) -> Option<std::time::Instant> {
        self.lock().media_started.get(caller).copied()
    }

    pub fn events(&self) -> Vec<Value> {
        self.lock().events.clone()
    }

    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    pub fn close_websockets(&self) {
        let mut st = self.lock();
        for (_, s) in st.sockets.drain(..) {
            let _ = s.send(None);
        }
    }

    pub fn restart(&self) {
        let mut st = self.lock();
        for (_, s) in st.sockets.drain(..) {
            let _ = s.send(None);
        }
        for (_, m) in st.media.drain() {
            m.stop();
        }
        for c in st.channels.values() {
            if let Some(LegIo::WebSocket(w)) = c.external.as_ref().map(|l| &l.io) {
                w.hung_up();
            }
        }
        st.channels.clear();
        st.bridges.clear();
        st.channel_apps.clear();
        st.bridge_apps.clear();
        st.registered.clear();
        st.playbacks.clear();
        st.variables.clear();
    }

    /// Sets a channel variable map on a channel model.
    pub fn channelvars(vars: &[(&str, String)]) -> Option<BTreeMap<String, String>> {
        Some(
            vars.iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_in_aris_format() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_781), (2026, 11, 24));
        let t = now_text();
        assert_eq!(t.len(), "2026-11-24T12:23:14.405+0000".len());
        assert!(t.ends_with("+0000"));
    }
}
