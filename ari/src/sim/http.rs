//! The simulator's HTTP side: ARI REST paths and the events WebSocket.

use super::state::{ExternalLeg, Fault, Inner, LegIo, SimChannel, State};
use super::ws_media::WsLeg;
use crate::model::{AsteriskInfo, Bridge, BuildInfo, Playback, SystemInfo};
use aiagc_engine::Codec;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State as AxState};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Params = HashMap<String, String>;

pub(super) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/ari/events", axum::routing::get(events))
        .route("/media/{connection}", axum::routing::get(media_socket))
        .fallback(rest)
        .with_state(inner)
}

fn authorized(inner: &Inner, headers: &HeaderMap, params: &Params) -> bool {
    let expected = format!("{}:{}", inner.config.username, inner.config.password);
    if params.get("api_key").is_some_and(|k| *k == expected) {
        return true;
    }
    headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .is_some_and(|d| d == expected.as_bytes())
}

fn reply(status: u16, body: Value) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status == 204 {
        return code.into_response();
    }
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn message(status: u16, text: &str) -> Response {
    reply(status, json!({ "message": text }))
}

async fn events(
    ws: WebSocketUpgrade,
    headers: HeaderMap,
    Query(params): Query<Params>,
    AxState(inner): AxState<Arc<Inner>>,
) -> Response {
    if !authorized(&inner, &headers, &params) {
        return message(401, "Authentication required");
    }
    let Some(app) = params.get("app").cloned() else {
        return message(400, "Missing parameter app");
    };
    // Asterisk registers the application during the handshake: by the time
    // the client sees the upgrade, `GET /applications/{app}` knows it.
    let rx = inner.register(&app);
    let inner = inner.clone();
    ws.on_upgrade(move |socket| async move {
        serve_events(socket, rx).await;
        // Its last connection gone, the app is no longer registered:
        // Stasis() into it fails, as on Asterisk.
        inner.unregister_closed(&app);
    })
}

async fn serve_events(
    mut socket: WebSocket,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Option<String>>,
) {
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Some(text)) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                _ => {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                _ => {}
            },
        }
    }
}

/// Applies the fault plan to a request; `Some` answers it.
async fn faults(inner: &Inner, method: &Method, path: &str) -> Option<Response> {
    let mut delay = None;
    let mut fail = None;
    {
        let mut st = inner.lock();
        let mut hangup_caller = false;
        st.faults.retain_mut(|f| match f {
            Fault::Fail {
                method: m,
                path_contains,
                status,
                body,
                times,
            } if m == method.as_str()
                && path.contains(path_contains.as_str())
                && fail.is_none() =>
            {
                fail = Some((*status, body.clone()));
                *times -= 1;
                *times > 0
            }
            Fault::Delay {
                method: m,
                path_contains,
                delay: d,
                times,
            } if m == method.as_str()
                && path.contains(path_contains.as_str())
                && delay.is_none() =>
            {
                delay = Some(*d);
                *times -= 1;
                *times > 0
            }
            Fault::HangupCallerOn {
                method: m,
                path_contains,
            } if m == method.as_str() && path.contains(path_contains.as_str()) => {
                hangup_caller = true;
                false
            }
            _ => true,
        });
        if hangup_caller {
            if let Some(id) = st.last_caller.clone() {
                inner.hangup_locked(&mut st, &id, 16);
            }
        }
    }
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    fail.map(|(status, body)| {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, [("content-type", "application/json")], body).into_response()
    })
}

async fn rest(
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(params): Query<Params>,
    AxState(inner): AxState<Arc<Inner>>,
    body: Bytes,
) -> Response {
    let Some(path) = uri.path().strip_prefix("/ari") else {
        return message(404, "Not found");
    };
    if !authorized(&inner, &headers, &params) {
        return message(401, "Authentication required");
    }
    if let Some(r) = faults(&inner, &method, path).await {
        return r;
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let body: Option<Value> = if body.is_empty() {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    match (method.as_str(), segs.as_slice()) {
        ("GET", ["asterisk", "info"]) => asterisk_info(&inner),
        ("GET", ["applications", app]) => application(&inner, app),
        ("GET", ["channels"]) => {
            let st = inner.lock();
            reply(
                200,
                json!(st.channels.values().map(|c| &c.model).collect::<Vec<_>>()),
            )
        }
        ("POST", ["channels"]) => originate(&inner, &params, body).await,
        ("POST", ["channels", "externalMedia"]) => external_media(&inner, &params).await,
        ("GET", ["channels", id]) => match inner.lock().channels.get(*id) {
            Some(c) => reply(200, json!(c.model)),
            None => message(404, "Channel not found"),
        },
        ("DELETE", ["channels", id]) => {
            if inner.hangup(id, 16) {
                reply(204, Value::Null)
            } else {
                message(404, "Channel not found")
            }
        }
        ("POST", ["channels", id, "answer"]) => answer(&inner, id),
        ("POST", ["channels", id, "continue"]) => continue_dialplan(&inner, id, &params),
        ("POST", ["channels", id, "redirect"]) => {
            if !params.contains_key("endpoint") {
                return message(400, "endpoint parameter required");
            }
            let mut st = inner.lock();
            if !st.channels.contains_key(*id) {
                return message(404, "Channel not found");
            }
            inner.hangup_locked(&mut st, id, 16);
            reply(204, Value::Null)
        }
        ("POST", ["channels", id, "play"]) => play(&inner, id, &params),
        ("POST", ["channels", id, "dtmf"]) => {
            let mut st = inner.lock();
            if !st.channels.contains_key(*id) {
                return message(404, "Channel not found");
            }
            let Some(digits) = params.get("dtmf").filter(|d| !d.is_empty()).cloned() else {
                return message(400, "DTMF is required");
            };
            st.dtmf_sent.push(((*id).to_owned(), digits));
            reply(204, Value::Null)
        }
        ("GET", ["channels", id, "variable"]) => {
            let st = inner.lock();
            if !st.channels.contains_key(*id) {
                return message(404, "Channel not found");
            }
            let Some(name) = params.get("variable") else {
                return message(400, "Variable name is required");
            };
            match st.variables.get(&((*id).to_owned(), name.clone())) {
                Some(v) => reply(200, json!({ "value": v })),
                None => message(404, "Provided variable was not found"),
            }
        }
        ("POST", ["channels", id, "variable"]) => {
            let mut st = inner.lock();
            if !st.channels.contains_key(*id) {
                return message(404, "Channel not found");
            }
            let Some(name) = params.get("variable").cloned() else {
                return message(400, "Variable name is required");
            };
            let value = params.get("value").cloned().unwrap_or_default();
            st.variables
                .insert(((*id).to_owned(), name.clone()), value.clone());
            let channel = st.channels.get(*id).map(|c| json!(c.model));
            inner.emit(&mut st, json!({"type": "ChannelVarset", "variable": name, "value": value, "channel": channel}));
            reply(204, Value::Null)
        }
        ("GET", ["bridges"]) => reply(
            200,
            json!(inner.lock().bridges.values().collect::<Vec<_>>()),
        ),
        ("POST", ["bridges"]) => create_bridge(&inner, &params),
        ("GET", ["bridges", id]) => match inner.lock().bridges.get(*id) {
            Some(b) => reply(200, json!(b)),
            None => message(404, "Bridge not found"),
        },
        ("DELETE", ["bridges", id]) => destroy_bridge(&inner, id),
        ("POST", ["bridges", id, "addChannel"]) => add_channel(&inner, id, &params),
        ("POST", ["bridges", id, "removeChannel"]) => remove_channel(&inner, id, &params),
        ("DELETE", ["playbacks", id]) => {
            let mut st = inner.lock();
            match st.playbacks.remove(*id) {
                Some(_) => reply(204, Value::Null),
                None => message(404, "Playback not found"),
            }
        }
        _ => message(404, "Resource not found"),
    }
}

fn asterisk_info(inner: &Inner) -> Response {
    let info = AsteriskInfo {
        build: Some(BuildInfo {
            os: "Linux".into(),
            kernel: "6.1.0".into(),
            options: "".into(),
            machine: "x86_64".into(),
            date: "2026-10-01 00:00:00 UTC".into(),
            user: "sim".into(),
        }),
        system: Some(SystemInfo {
            version: inner.config.version.clone(),
            entity_id: "02:fc:00:00:00:01".into(),
        }),
    };
    reply(200, json!(info))
}

fn application(inner: &Inner, app: &str) -> Response {
    let st = inner.lock();
    if !st.registered.iter().any(|a| a == app) {
        return message(404, "Application not found");
    }
    // Channels and bridges of this app; those of no known app count for
    // every app (the single-app simulator's behaviour).
    let mine = |owner: Option<&String>| owner.is_none_or(|a| a == app);
    // A WebSocket media channel is the app's from its creation, before it
    // is connected and enters Stasis (seen on 22.10.1).
    let subscribed = |c: &SimChannel| {
        c.in_stasis
            || c.companion.is_some()
            || matches!(
                c.external.as_ref().map(|l| &l.io),
                Some(LegIo::WebSocket(_))
            )
    };
    let channel_ids: Vec<&String> = st
        .channels
        .iter()
        .filter(|(id, c)| subscribed(c) && mine(st.channel_apps.get(*id)))
        .map(|(id, _)| id)
        .collect();
    let bridge_ids: Vec<&String> = st
        .bridges
        .keys()
        .filter(|id| mine(st.bridge_apps.get(*id)))
        .collect();
    reply(
        200,
        json!({"name": app, "channel_ids": channel_ids, "bridge_ids": bridge_ids, "endpoint_ids": [], "device_names": [], "events_allowed": [], "events_disallowed": []}),
    )
}

async fn originate(inner: &Arc<Inner>, params: &Params, body: Option<Value>) -> Response {
    let Some(endpoint) = params.get("endpoint").cloned() else {
        return message(400, "Endpoint must be specified");
    };
    let tech = endpoint.split('/').next().unwrap_or_default();
    if !["PJSIP", "SIP", "IAX2", "Local"].contains(&tech) || !endpoint.contains('/') {
        return reply(500, json!({ "error": "Allocation failed" }));
    }
    let app = params.get("app").cloned();
    let context = params.get("context").cloned();
    if app.is_none() && context.is_none() {
        return message(400, "Application or extension must be specified");
    }
    let number = params.get("callerId").cloned().unwrap_or_default();
    let local = endpoint.starts_with("Local/");
    let tag = inner.random_u64() as u32;
    // A Local channel is a pair: `;1` is the originated channel (it enters
    // the app), `;2` runs the dialplan (Asterisk 22 names them so).
    let name = if local {
        format!("{endpoint}-{tag:08x};1")
    } else {
        format!("{endpoint}-{tag:08x}")
    };
    let mut channel = inner.new_channel(
        name,
        "Down",
        &number,
        context.as_deref().unwrap_or("default"),
        "",
    );
    if let Some(id) = params.get("channelId") {
        if inner.lock().channels.contains_key(id) {
            return message(409, "Channel with given unique ID already exists");
        }
        channel.id = id.clone();
    }
    if let Some(vars) = body
        .as_ref()
        .and_then(|b| b.get("variables"))
        .and_then(Value::as_object)
    {
        let mut st = inner.lock();
        for (k, v) in vars {
            st.variables.insert(
                (channel.id.clone(), k.clone()),
                v.as_str().unwrap_or_default().to_owned(),
            );
        }
    }
    let id = channel.id.clone();
    if let Some(app) = &app {
        inner.lock().channel_apps.insert(id.clone(), app.clone());
    }
    let companion = (local && app.is_some()).then(|| {
        let mut half = inner.new_channel(
            format!("{endpoint}-{tag:08x};2"),
            "Up",
            &number,
            endpoint
                .strip_prefix("Local/")
                .and_then(|t| t.split('@').nth(1))
                .unwrap_or("default"),
            "",
        );
        half.dialplan.app_name = "Playback".into();
        half
    });
    // A Local channel's other half runs the dialplan: its script is what the
    // app's half hears.
    let script = endpoint
        .strip_prefix("Local/")
        .map(|target| target.split('/').next().unwrap_or_default())
        .and_then(|target| inner.config.dialplan.get(target))
        .cloned();
    {
        let mut st = inner.lock();
        if let (Some(half), Some(app)) = (&companion, &app) {
            st.channel_apps.insert(half.id.clone(), app.clone());
            st.channels.insert(
                half.id.clone(),
                SimChannel {
                    model: half.clone(),
                    in_stasis: false,
                    bridge: None,
                    external: None,
                    script: None,
                    companion: Some(id.clone()),
                },
            );
        }
        st.channels.insert(
            id.clone(),
            SimChannel {
                model: channel.clone(),
                in_stasis: false,
                bridge: None,
                external: None,
                script,
                companion: companion.as_ref().map(|h| h.id.clone()),
            },
        );
    }
    // Ringing, then the callee answers and the channel enters the app.
    let args: Vec<String> = match &app {
        Some(_) => params
            .get("appArgs")
            .map(|a| a.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
        None => vec!["outbound".to_owned()],
    };
    let delay = inner.config.answer_delay;
    let task_inner = inner.clone();
    let task_id = id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay / 2).await;
        {
            let mut st = task_inner.lock();
            let Some(ch) = st.channels.get_mut(&task_id) else {
                return;
            };
            ch.model.state = "Ringing".into();
            let c = json!(ch.model);
            task_inner.emit(&mut st, json!({"type": "ChannelStateChange", "channel": c}));
        }
        tokio::time::sleep(delay / 2).await;
        let mut st = task_inner.lock();
        let Some(ch) = st.channels.get_mut(&task_id) else {
            return;
        };
        ch.model.state = "Up".into();
        ch.model.dialplan.app_name = "Stasis".into();
        ch.in_stasis = true;
        let c = json!(ch.model);
        task_inner.emit(&mut st, json!({"type": "ChannelStateChange", "channel": c}));
        task_inner.emit(
            &mut st,
            json!({"type": "StasisStart", "args": args, "channel": c}),
        );
        st.last_caller = Some(task_id);
    });
    reply(200, json!(channel))
}

async fn external_media(inner: &Arc<Inner>, params: &Params) -> Response {
    if params.get("app").is_none() {
        return message(400, "app parameter required");
    }
    if params.get("transport").is_some_and(|t| t == "websocket") {
        return external_media_websocket(inner, params);
    }
    let Some(host) = params.get("external_host") else {
        return message(
            400,
            "external_host is required for all but websocket server connections",
        );
    };
    let Some(codec) = params
        .get("format")
        .and_then(|f| Codec::from_asterisk_format(f).ok())
    else {
        return message(
            500,
            "An internal error prevented this request from being handled",
        );
    };
    let Ok(target) = host.parse::<std::net::SocketAddr>() else {
        return message(400, "external_host must be host:port");
    };
    let socket = match tokio::net::UdpSocket::bind("127.0.0.1:0").await {
        Ok(s) => Arc::new(s),
        Err(_) => {
            return message(
                500,
                "An internal error prevented this request from being handled",
            )
        }
    };
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(_) => {
            return message(
                500,
                "An internal error prevented this request from being handled",
            )
        }
    };
    let channel = external_channel(
        inner,
        format!(
            "UnicastRTP/{host}-0x{:012x}",
            inner.random_u64() & 0xFFFF_FFFF_FFFF
        ),
        "Up",
        params,
        &[
            ("UNICASTRTP_LOCAL_ADDRESS", local.ip().to_string()),
            ("UNICASTRTP_LOCAL_PORT", local.port().to_string()),
        ],
    );
    let mut st = inner.lock();
    if st.channels.contains_key(&channel.id) {
        return message(409, "Channel with given unique ID already exists");
    }
    // The externalMedia channel enters the app too (observed), with no args.
    if let Some(app) = params.get("app") {
        st.channel_apps.insert(channel.id.clone(), app.clone());
    }
    let mut announced = channel.clone();
    announced.channelvars = None;
    inner.emit(
        &mut st,
        json!({"type": "StasisStart", "args": [], "channel": announced}),
    );
    insert_external(
        &mut st,
        &channel,
        LegIo::Rtp { socket, target },
        codec,
        true,
    );
    reply(200, json!(channel))
}

/// An externalMedia channel named `name` in `state`, with the request's
/// `channelId` and the variables `vars`.
fn external_channel(
    inner: &Inner,
    name: String,
    state: &str,
    params: &Params,
    vars: &[(&str, String)],
) -> crate::model::Channel {
    let mut channel = inner.new_channel(name, state, "", "default", "aiagc");
    if let Some(id) = params.get("channelId") {
        channel.id = id.clone();
    }
    channel.channelvars = Inner::channelvars(vars);
    channel
}

/// Adds an externalMedia channel carried by `io`.
fn insert_external(
    st: &mut State,
    channel: &crate::model::Channel,
    io: LegIo,
    codec: Codec,
    in_stasis: bool,
) {
    st.channels.insert(
        channel.id.clone(),
        SimChannel {
            model: channel.clone(),
            in_stasis,
            bridge: None,
            external: Some(ExternalLeg {
                io,
                codec,
                records: Arc::new(Mutex::new(Vec::new())),
            }),
            script: None,
            companion: None,
        },
    );
}

fn answer(inner: &Inner, id: &str) -> Response {
    let mut st = inner.lock();
    let Some(ch) = st.channels.get_mut(id) else {
        return message(404, "Channel not found");
    };
    if !ch.in_stasis {
        return message(409, "Channel not in Stasis application");
    }
    if ch.model.state != "Up" {
        ch.model.state = "Up".into();
        let c = json!(ch.model);
        inner.emit(&mut st, json!({"type": "ChannelStateChange", "channel": c}));
    }
    reply(204, Value::Null)
}

fn continue_dialplan(inner: &Inner, id: &str, params: &Params) -> Response {
    let mut st = inner.lock();
    let Some(ch) = st.channels.get_mut(id) else {
        return message(404, "Channel not found");
    };
    if !ch.in_stasis {
        return message(409, "Channel not in Stasis application");
    }
    ch.in_stasis = false;
    if let Some(c) = params.get("context") {
        ch.model.dialplan.context = c.clone();
    }
    if let Some(e) = params.get("extension") {
        ch.model.dialplan.exten = e.clone();
    }
    ch.model.dialplan.app_name = String::new();
    let c = json!(ch.model);
    let bridge = ch.bridge.take();
    if let Some(b) = bridge.and_then(|b| st.bridges.get_mut(&b)) {
        b.channels.retain(|x| x != id);
        let bj = json!(b);
        inner.emit(
            &mut st,
            json!({"type": "ChannelLeftBridge", "bridge": bj, "channel": c}),
        );
    }
    inner.emit(&mut st, json!({"type": "StasisEnd", "channel": c}));
    reply(204, Value::Null)
}

fn play(inner: &Arc<Inner>, id: &str, params: &Params) -> Response {
    let Some(media) = params.get("media").cloned() else {
        return message(400, "media parameter required");
    };
    let mut st = inner.lock();
    if !st.channels.contains_key(id) {
        return message(404, "Channel not found");
    }
    let pb = Playback {
        id: inner.uuid(),
        media_uri: media,
        target_uri: format!("channel:{id}"),
        language: params.get("lang").cloned(),
        state: "playing".into(),
    };
    st.playbacks.insert(pb.id.clone(), id.to_owned());
    inner.emit(&mut st, json!({"type": "PlaybackStarted", "playback": pb}));
    let task_inner = inner.clone();
    let mut done = pb.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut st = task_inner.lock();
        if st.playbacks.remove(&done.id).is_some() {
            done.state = "done".into();
            task_inner.emit(
                &mut st,
                json!({"type": "PlaybackFinished", "playback": done}),
            );
        }
    });
    reply(201, json!(pb))
}

fn create_bridge(inner: &Inner, params: &Params) -> Response {
    let kind = params.get("type").map(String::as_str).unwrap_or("mixing");
    let bridge = Bridge {
        id: params
            .get("bridgeId")
            .cloned()
            .unwrap_or_else(|| inner.uuid()),
        technology: "simple_bridge".into(),
        bridge_type: kind.split(',').next().unwrap_or("mixing").into(),
        bridge_class: "stasis".into(),
        creator: "Stasis".into(),
        name: params.get("name").cloned().unwrap_or_default(),
        channels: Vec::new(),
        creationtime: super::state::now_text(),
        video_mode: Some("talker".into()),
    };
    let mut st = inner.lock();
    if st.bridges.contains_key(&bridge.id) {
        return message(409, "Bridge with given unique ID already exists");
    }
    st.bridges.insert(bridge.id.clone(), bridge.clone());
    reply(200, json!(bridge))
}

fn destroy_bridge(inner: &Inner, id: &str) -> Response {
    let mut st: std::sync::MutexGuard<'_, State> = inner.lock();
    let Some(bridge) = st.bridges.remove(id) else {
        return message(404, "Bridge not found");
    };
    for cid in &bridge.channels {
        if let Some(ch) = st.channels.get_mut(cid) {
            ch.bridge = None;
            let c = json!(ch.model);
            inner.emit(
                &mut st,
                json!({"type": "ChannelLeftBridge", "bridge": bridge, "channel": c}),
            );
        }
    }
    st.stop_bridge_media(id);
    let mut gone = bridge.clone();
    gone.channels.clear();
    inner.emit(&mut st, json!({"type": "BridgeDestroyed", "bridge": gone}));
    reply(204, Value::Null)
}

fn add_channel(inner: &Arc<Inner>, id: &str, params: &Params) -> Response {
    let Some(cid) = params.get("channel").cloned() else {
        return message(400, "channel parameter required");
    };
    let mut st = inner.lock();
    if !st.bridges.contains_key(id) {
        return message(404, "Bridge not found");
    }
    let Some(ch) = st.channels.get_mut(&cid) else {
        return message(400, "Channel not found");
    };
    if !ch.in_stasis {
        return message(422, "Channel not in Stasis application");
    }
    ch.bridge = Some(id.to_owned());
    let c = json!(ch.model);
    let Some(b) = st.bridges.get_mut(id) else {
        return message(404, "Bridge not found");
    };
    if !b.channels.contains(&cid) {
        b.channels.push(cid);
    }
    let bj = json!(b);
    inner.emit(
        &mut st,
        json!({"type": "ChannelEnteredBridge", "bridge": bj, "channel": c}),
    );
    inner.maybe_start_media(&mut st, id);
    reply(204, Value::Null)
}

fn remove_channel(inner: &Inner, id: &str, params: &Params) -> Response {
    let Some(cid) = params.get("channel").cloned() else {
        return message(400, "channel parameter required");
    };
    let mut st = inner.lock();
    let Some(b) = st.bridges.get_mut(id) else {
        return message(404, "Bridge not found");
    };
    if !b.channels.contains(&cid) {
        return message(422, "Channel not in this bridge");
    }
    b.channels.retain(|c| *c != cid);
    let bj = json!(b);
    let c = st.channels.get_mut(&cid).map(|ch| {
        ch.bridge = None;
        json!(ch.model)
    });
    inner.emit(
        &mut st,
        json!({"type": "ChannelLeftBridge", "bridge": bj, "channel": c}),
    );
    reply(204, Value::Null)
}

/// `transport=websocket&connection_type=server`: a `WebSocket/…` channel
/// that waits for the app under `/media/<connection id>`; it is answered
/// and enters the app only once connected (as on 22.10.1).
fn external_media_websocket(inner: &Arc<Inner>, params: &Params) -> Response {
    if params.get("connection_type").map(String::as_str) != Some("server") {
        // `client` needs a websocket_client.conf connection the simulator
        // has none of.
        return message(
            400,
            "connection_type 'client' needs a websocket_client.conf connection",
        );
    }
    let Some(codec) = params
        .get("format")
        .and_then(|f| Codec::from_asterisk_format(f).ok())
        .filter(|c| matches!(c, Codec::Slin16 | Codec::Ulaw | Codec::Alaw))
    else {
        return message(
            500,
            "An internal error prevented this request from being handled",
        );
    };
    let json = params
        .get("transport_data")
        .is_some_and(|d| d.contains("f(json)"));
    let r = inner.random_u64();
    let connection_id = format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        r >> 32,
        (r >> 16) & 0xFFFF,
        r & 0xFFF,
        (r >> 20) & 0xFFF,
        inner.random_u64() & 0xFFFF_FFFF_FFFF
    );
    let channel = external_channel(
        inner,
        format!("WebSocket/{connection_id}/0x{:012x}", r & 0xFFFF_FFFF_FFFF),
        "Down",
        params,
        &[
            (crate::media_ws::CONNECTION_ID_VAR, connection_id.clone()),
            (
                crate::media_ws::FRAME_SIZE_VAR,
                super::ws_media::frame_bytes(codec).to_string(),
            ),
        ],
    );
    let mut st = inner.lock();
    if st.channels.contains_key(&channel.id) {
        return message(409, "Channel with given unique ID already exists");
    }
    if let Some(app) = params.get("app") {
        st.channel_apps.insert(channel.id.clone(), app.clone());
    }
    let leg = WsLeg::new(connection_id, channel.id.clone(), json);
    insert_external(
        &mut st,
        &channel,
        LegIo::WebSocket(Arc::new(leg)),
        codec,
        false,
    );
    reply(200, json!(channel))
}

/// `/media/<connection id>`: the app's media connection (no credentials,
/// sub-protocol `media`; 404 for an unknown id, 409 for a second one).
async fn media_socket(
    ws: WebSocketUpgrade,
    axum::extract::Path(connection): axum::extract::Path<String>,
    AxState(inner): AxState<Arc<Inner>>,
) -> Response {
    let found = {
        let st = inner.lock();
        st.channels
            .values()
            .find_map(|c| match c.external.as_ref() {
                Some(ExternalLeg {
                    io: LegIo::WebSocket(w),
                    codec,
                    ..
                }) if w.connection_id == connection => {
                    Some((w.clone(), *codec, c.model.name.clone()))
                }
                _ => None,
            })
    };
    let Some((leg, codec, name)) = found else {
        return message(404, "Not found");
    };
    if leg
        .connected
        .swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        return message(409, "Conflict");
    }
    ws.protocols([crate::media_ws::SUBPROTOCOL])
        .on_upgrade(move |mut socket| async move {
            if socket
                .send(Message::Text(leg.media_start(&name, codec).into()))
                .await
                .is_err()
            {
                return;
            }
            leg.attach(socket);
            let mut st = inner.lock();
            let Some(ch) = st.channels.get_mut(&leg.channel_id) else {
                leg.hung_up();
                return;
            };
            ch.in_stasis = true;
            ch.model.state = "Up".into();
            let mut announced = ch.model.clone();
            announced.channelvars = None;
            inner.emit(
                &mut st,
                json!({"type": "StasisStart", "args": [], "channel": announced}),
            );
        })
}
