//! The simulator against the real Asterisk: one scripted call, driven the
//! way aiagc's controller drives it (answer, mixing bridge, externalMedia,
//! both into the bridge, RTP both ways, the caller hangs up, we remove
//! what is ours), through `ari::sim` and through a private Asterisk
//! 22.10.1. The event sequences (types, order, the fields aiagc reads), the
//! application listing and the RTP facts (payload type, sizes, timestamps,
//! marker, gaps) must agree. Where they differ, the simulator is wrong.

mod common;
use common::asterisk::{Asterisk, Setup};

use aiagc_ari::client::{AriClient, AriConfig, ExternalMedia, Originate};
use aiagc_ari::event::Event;
use aiagc_ari::sim::{CallerScript, SimConfig, Simulator};
use aiagc_ari::stream::StreamEvent;
use std::time::{Duration, Instant};

/// One caller utterance, `pcm` at 16 kHz, and where it goes.
fn sound(name: &str) -> Vec<i16> {
    common::wav16(name)
}

/// What aiagc sees of a call, reduced to what must agree.
#[derive(Debug, Default)]
struct Facts {
    /// (role, event type) in order, for the events aiagc acts on.
    events: Vec<(String, String)>,
    /// StasisStart of the caller: args, state, the app in its dialplan.
    caller_start: Option<(Vec<String>, String, String)>,
    /// externalMedia's answer has the RTP address variables.
    em_has_rtp_vars: bool,
    /// The externalMedia channel's StasisStart: args, name prefix.
    em_start: Option<(Vec<String>, String)>,
    /// Channels `GET /applications/{app}` listed during the call, by role.
    listed: Vec<String>,
    /// After the caller left: the externalMedia channel and the bridge were
    /// still there until we removed them.
    left_behind_by_asterisk: (bool, bool),
    /// RTP from Asterisk.
    rtp: Vec<Packet>,
}

#[derive(Debug, Clone)]
struct Packet {
    at: Instant,
    sequence: u16,
    timestamp: u32,
    marker: bool,
    payload_type: u8,
    ssrc: u32,
    len: usize,
}

fn role(name: &str, id: &str, caller: &str) -> String {
    if id == caller {
        "caller".into()
    } else if name.starts_with("UnicastRTP/") {
        "externalMedia".into()
    } else if name.starts_with("Local/") && name.ends_with(";2") {
        "caller;2".into()
    } else {
        format!("other:{name}")
    }
}

/// Drives the scripted call against `ari` (originating `Local/s@caller`).
async fn scripted_call(ari: AriConfig) -> Facts {
    let client = AriClient::new(ari.clone()).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(aiagc_ari::stream::run(ari.clone(), tx, stop_rx));
    let t = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(StreamEvent::Connected)) => break,
            Ok(Some(_)) => {}
            other => panic!("no events connection: {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(10));
    }
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let caller = client
        .originate(&Originate {
            endpoint: "Local/s@caller".into(),
            app: Some(ari.app.clone()),
            app_args: Some("inbound".into()),
            ..Originate::default()
        })
        .await
        .unwrap()
        .id;
    let mut facts = Facts::default();
    let mut names = std::collections::HashMap::new();
    let em_id = format!("{caller}-em");
    let mut bridge = None;
    let mut peer = None;
    let mut caller_gone = false;
    let mut em_gone = false;
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(25);
    while !(caller_gone && em_gone) {
        assert!(Instant::now() < deadline, "the call did not end: {facts:?}");
        tokio::select! {
            item = rx.recv() => {
                let Some(StreamEvent::Event(event)) = item else { continue };
                let (kind, ch) = match *event {
                    Event::StasisStart { args, channel, .. } => {
                        if channel.id == caller {
                            facts.caller_start = Some((args, channel.state.clone(), channel.dialplan.app_name.clone()));
                        } else if channel.is_external_media() {
                            let prefix = channel.name.split('/').next().unwrap_or_default().to_owned();
                            facts.em_start = Some((args, prefix));
                        }
                        ("StasisStart", channel)
                    }
                    Event::StasisEnd { channel } => ("StasisEnd", channel),
                    Event::ChannelHangupRequest { channel, .. } => ("ChannelHangupRequest", channel),
                    Event::ChannelDestroyed { channel, .. } => ("ChannelDestroyed", channel),
                    Event::ChannelDtmfReceived { channel, .. } => ("ChannelDtmfReceived", channel),
                    _ => continue,
                };
                names.insert(ch.id.clone(), ch.name.clone());
                let r = role(&ch.name, &ch.id, &caller);
                // Repeated hangup requests carry nothing new.
                if facts.events.last() != Some(&(r.clone(), kind.to_owned())) {
                    facts.events.push((r.clone(), kind.to_owned()));
                }
                if r == "caller" && kind == "StasisStart" {
                    if ch.state != "Up" {
                        client.answer(&caller).await.unwrap();
                    }
                    let b = client.create_bridge(Some("diff")).await.unwrap();
                    let em = client
                        .external_media(&ExternalMedia {
                            external_host: socket.local_addr().unwrap().to_string(),
                            format: "ulaw".into(),
                            channel_id: Some(em_id.clone()),
                        })
                        .await
                        .unwrap();
                    facts.em_has_rtp_vars = em.unicast_rtp_peer().is_some();
                    peer = em.unicast_rtp_peer();
                    client.add_channel(&b.id, &caller).await.unwrap();
                    client.add_channel(&b.id, &em.id).await.unwrap();
                    bridge = Some(b.id);
                    // Mid-call: what the app is said to hold.
                    let app = client.application().await.unwrap();
                    for id in &app.channel_ids {
                        let name = match client.channel(id).await {
                            Ok(c) => c.name,
                            Err(_) => String::new(),
                        };
                        facts.listed.push(role(&name, id, &caller));
                    }
                    facts.listed.sort();
                }
                if r == "caller" && kind == "StasisEnd" {
                    caller_gone = true;
                    // Asterisk leaves our side in place: see that, then clean up.
                    let em_there = client.channel(&em_id).await.is_ok();
                    let bridge_there = match &bridge {
                        Some(b) => client.bridges().await.unwrap().iter().any(|x| &x.id == b),
                        None => false,
                    };
                    facts.left_behind_by_asterisk = (em_there, bridge_there);
                    let _ = client.hangup(&em_id, "normal").await;
                    if let Some(b) = &bridge {
                        let _ = client.destroy_bridge(b).await;
                    }
                }
                if r == "externalMedia" && kind == "ChannelDestroyed" {
                    em_gone = true;
                }
            }
            r = socket.recv_from(&mut buf) => {
                let Ok((len, from)) = r else { continue };
                if Some(from) != peer {
                    continue;
                }
                if let Ok(v) = aiagc_engine::packet::parse(&buf[..len]) {
                    facts.rtp.push(Packet {
                        at: Instant::now(),
                        sequence: v.sequence,
                        timestamp: v.timestamp,
                        marker: v.marker,
                        payload_type: v.payload_type,
                        ssrc: v.ssrc,
                        len: v.payload.len(),
                    });
                }
            }
        }
    }
    let _ = stop.send(true);
    facts
}

/// Talk-spurts of a packet list: runs of packets less than 100 ms apart.
fn spurts(rtp: &[Packet]) -> Vec<&[Packet]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=rtp.len() {
        if i == rtp.len() || rtp[i].at.duration_since(rtp[i - 1].at) > Duration::from_millis(100) {
            if i > start {
                out.push(&rtp[start..i]);
            }
            start = i;
        }
    }
    out
}

/// The RTP facts that must agree, as text for a readable diff.
fn rtp_facts(rtp: &[Packet]) -> Vec<String> {
    let mut out = Vec::new();
    let s = spurts(rtp);
    out.push(format!("talk-spurts: {}", s.len()));
    out.push(format!(
        "first timestamp: {:?}",
        rtp.first().map(|p| p.timestamp)
    ));
    let pts: std::collections::BTreeSet<u8> = rtp.iter().map(|p| p.payload_type).collect();
    out.push(format!("payload types: {pts:?}"));
    let ssrcs: std::collections::BTreeSet<u32> = rtp.iter().map(|p| p.ssrc).collect();
    out.push(format!("one SSRC: {}", ssrcs.len() == 1));
    out.push(format!("all but the last of each spurt 160 bytes: {}", {
        s.iter()
            .all(|sp| sp[..sp.len() - 1].iter().all(|p| p.len == 160))
    }));
    let steady = rtp
        .windows(2)
        .all(|w| w[1].sequence == w[0].sequence.wrapping_add(1));
    out.push(format!("sequence +1 throughout (also over gaps): {steady}"));
    for (i, sp) in s.iter().enumerate() {
        // µ-law: one timestamp tick per payload byte (sample), between
        // full packets.
        let ts_step = sp
            .windows(2)
            .filter(|w| w[0].len == 160 && w[1].len == 160)
            .all(|w| w[1].timestamp.wrapping_sub(w[0].timestamp) == 160);
        out.push(format!(
            "spurt {i}: timestamps +160 between full packets: {ts_step}"
        ));
        // A file's last frame is what is left of it, and Asterisk stamps
        // each packet with its end: a short one by its own length.
        let last = &sp[sp.len() - 1];
        out.push(format!("spurt {i}: last packet short: {}", last.len < 160));
        if sp.len() > 1 && last.len < 160 {
            let step = last.timestamp.wrapping_sub(sp[sp.len() - 2].timestamp);
            out.push(format!(
                "spurt {i}: short packet stamped by its own length: {}",
                step == last.len as u32
            ));
        }
        out.push(format!(
            "spurt {i}: marker on first packet: {}",
            sp[0].marker
        ));
        out.push(format!(
            "spurt {i}: marker elsewhere: {}",
            sp[1..].iter().any(|p| p.marker)
        ));
    }
    for (i, w) in s.windows(2).enumerate() {
        let (a, b) = (w[0].last().unwrap(), &w[1][0]);
        let wall = b.at.duration_since(a.at).as_secs_f64();
        let ticks = b.timestamp.wrapping_sub(a.timestamp) as f64 / 8000.0;
        // The timestamp follows the wall clock over a gap (within 60 ms),
        // or it does not (it continues as if there were no gap).
        out.push(format!(
            "gap {i}: timestamp follows the wall clock: {}",
            (ticks - wall).abs() < 0.06
        ));
    }
    out
}

fn compare(real: &Facts, sim: &Facts) {
    let mut diffs = Vec::new();
    let mut check = |what: &str, a: String, b: String| {
        if a != b {
            diffs.push(format!("{what}:\n  real: {a}\n  sim:  {b}"));
        }
    };
    let facts = |f: &Facts| {
        [
            ("events", format!("{:?}", f.events)),
            ("caller StasisStart", format!("{:?}", f.caller_start)),
            ("externalMedia StasisStart", format!("{:?}", f.em_start)),
            (
                "externalMedia RTP variables",
                format!("{}", f.em_has_rtp_vars),
            ),
            ("application listing", format!("{:?}", f.listed)),
            (
                "left behind when the caller hangs up (externalMedia, bridge)",
                format!("{:?}", f.left_behind_by_asterisk),
            ),
        ]
    };
    for ((what, a), (_, b)) in facts(real).into_iter().zip(facts(sim)) {
        check(what, a, b);
    }
    let (r, s) = (rtp_facts(&real.rtp), rtp_facts(&sim.rtp));
    for i in 0..r.len().max(s.len()) {
        check(
            "rtp",
            r.get(i).cloned().unwrap_or_default(),
            s.get(i).cloned().unwrap_or_default(),
        );
    }
    // Gap lengths agree within 150 ms (scheduling on both sides).
    let gaps = |f: &Facts| -> Vec<f64> {
        spurts(&f.rtp)
            .windows(2)
            .map(|w| {
                w[1][0]
                    .at
                    .duration_since(w[0].last().unwrap().at)
                    .as_secs_f64()
            })
            .collect()
    };
    let (gr, gs) = (gaps(real), gaps(sim));
    if gr.len() != gs.len() || gr.iter().zip(&gs).any(|(a, b)| (a - b).abs() > 0.15) {
        diffs.push(format!("gaps (s):\n  real: {gr:.2?}\n  sim:  {gs:.2?}"));
    }
    eprintln!(
        "real: {:?}\nreal rtp: {r:#?}\nreal gaps {gr:.2?}",
        real.events
    );
    if std::env::var("DIFF_DUMP").is_ok() {
        for f in [real, sim] {
            let d: Vec<(usize, u32, usize, usize, bool)> = f
                .rtp
                .windows(2)
                .enumerate()
                .map(|(i, w)| {
                    (
                        i,
                        w[1].timestamp.wrapping_sub(w[0].timestamp),
                        w[0].len,
                        w[1].len,
                        w[1].marker,
                    )
                })
                .filter(|x| x.1 != x.2 as u32 || x.4)
                .collect();
            eprintln!(
                "first ts {:?} deltas {d:?}",
                f.rtp.first().map(|p| p.timestamp)
            );
        }
    }
    assert!(
        diffs.is_empty(),
        "the simulator differs from Asterisk:\n{}",
        diffs.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_matches_the_real_asterisk() {
    let a = sound("book_01_v0_r150_16k.wav");
    let b = sound("yes_02_v0_r150_16k.wav");
    // The real one: a Local caller whose other half plays two sentences
    // with a pause between them, then hangs up.
    let ast = Asterisk::start(Setup::default());
    let pa = ast.add_sound("a", &a);
    let pb = ast.add_sound("b", &b);
    ast.set_dialplan(&format!(
        "[caller]\n\
         exten => s,1,Answer()\n\
         same => n,Wait(1)\n\
         same => n,Playback({pa})\n\
         same => n,Wait(1.5)\n\
         same => n,Playback({pb})\n\
         same => n,Wait(1)\n\
         same => n,Hangup()\n"
    ));
    let real = scripted_call(ast.ari("diff")).await;

    // The simulator with the same dialplan.
    let mut audio = vec![0i16; 16000];
    audio.extend_from_slice(&a);
    audio.extend(std::iter::repeat_n(0, 24000));
    audio.extend_from_slice(&b);
    let mut config = SimConfig::default();
    config.dialplan.insert(
        "s@caller".into(),
        CallerScript {
            audio,
            hangup_after: Some(Duration::from_secs(1)),
            ..CallerScript::default()
        },
    );
    let sim = Simulator::start(config).await.unwrap();
    let simulated = scripted_call(sim.client_config("diff")).await;
    compare(&real, &simulated);
}

/// What the app sees of the WebSocket media channel, reduced to what
/// must agree between the simulator and the real Asterisk.
#[derive(Debug, Default)]
struct WsFacts {
    /// The channel's name up to its first `/`.
    em_prefix: String,
    /// `MEDIA_WEBSOCKET_OPTIMAL_FRAME_SIZE`, and whether a connection id came.
    frame_size_var: Option<String>,
    has_connection_id: bool,
    /// The channel was in the app before the connection was made.
    listed_before_connect: bool,
    /// An unknown connection id, then a second connection: the refusals.
    unknown_id: String,
    second_connection: String,
    /// MEDIA_START: format, frame size, ptime, ids those of the channel.
    start: Option<(String, usize, u32, bool)>,
    /// The channel's StasisStart came only after the connection.
    em_start_after_connect: bool,
    /// The caller's audio: message sizes seen, mean spacing in ms.
    inbound_sizes: std::collections::BTreeSet<usize>,
    inbound_spacing_ms: f64,
    /// 10 frames then a mark: frames (of 20 ms) until it came back.
    mark_frames: f64,
    /// Marks back after: 100 frames, mark "m2", flush, 5 frames, mark "m3".
    marks_after_flush: Vec<String>,
    m3_frames: f64,
    /// 950 frames at once, then a flush: the flow-control messages.
    flow: Vec<String>,
    /// STATUS after that flush: queue length.
    status_queue: Option<u64>,
    /// Left in place when the caller hung up; the connection closed when
    /// we hung the channel up.
    em_left_behind: bool,
    closed_on_hangup: bool,
}

/// What came in on the way.
#[derive(Default)]
struct Log {
    /// When each audio message came.
    arrivals: Vec<Instant>,
    /// Control messages, when they came.
    seen: Vec<(aiagc_ari::media_ws::MediaEvent, Instant)>,
    /// ARI events: (channel id, type).
    ari_events: Vec<(String, String)>,
}

/// Reads media and events until `until` or `done`; audio is counted.
async fn pump(
    ws: &mut aiagc_ari::media_ws::MediaSocket,
    rx: &mut tokio::sync::mpsc::Receiver<StreamEvent>,
    facts: &mut WsFacts,
    log: &mut Log,
    until: Instant,
    mut done: impl FnMut(&[(aiagc_ari::media_ws::MediaEvent, Instant)], &[(String, String)]) -> bool,
) -> bool {
    use aiagc_ari::media_ws::Incoming;
    loop {
        if done(&log.seen, &log.ari_events) {
            return true;
        }
        tokio::select! {
            m = ws.recv() => match m {
                Incoming::Audio(b) => {
                    facts.inbound_sizes.insert(b.len());
                    log.arrivals.push(Instant::now());
                }
                Incoming::Event(e) => log.seen.push((e, Instant::now())),
                Incoming::Rejected(e) => panic!("a control message did not parse: {e}"),
                Incoming::Closed(_) => {
                    facts.closed_on_hangup = true;
                    return done(&log.seen, &log.ari_events);
                }
            },
            e = rx.recv() => {
                if let Some(StreamEvent::Event(e)) = e {
                    let (kind, ch) = match *e {
                        Event::StasisStart { channel, .. } => ("StasisStart", channel),
                        Event::StasisEnd { channel } => ("StasisEnd", channel),
                        Event::ChannelDestroyed { channel, .. } => ("ChannelDestroyed", channel),
                        _ => continue,
                    };
                    log.ari_events.push((ch.id.clone(), kind.to_owned()));
                }
            }
            _ = tokio::time::sleep_until(until.into()) => return done(&log.seen, &log.ari_events),
        }
    }
}

fn tone_le(hz: f64, frames: usize) -> Vec<u8> {
    (0..frames * 320)
        .flat_map(|i| {
            let x = (2.0 * std::f64::consts::PI * hz * i as f64 / 16000.0).sin() * 6000.0;
            (x as i16).to_le_bytes()
        })
        .collect()
}

/// The controller's WebSocket setup and the protocol aiagc relies on,
/// step by step.
async fn scripted_ws_call(ari: AriConfig) -> WsFacts {
    use aiagc_ari::media_ws::{MediaCommand, MediaEvent, MediaSocket};
    let client = AriClient::new(ari.clone()).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(aiagc_ari::stream::run(ari.clone(), tx, stop_rx));
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(StreamEvent::Connected)) => break,
            Ok(Some(_)) => {}
            other => panic!("no events connection: {other:?}"),
        }
    }
    let caller = client
        .originate(&Originate {
            endpoint: "Local/s@caller".into(),
            app: Some(ari.app.clone()),
            ..Originate::default()
        })
        .await
        .unwrap()
        .id;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let item = tokio::time::timeout_at(deadline.into(), rx.recv())
            .await
            .expect("the caller's StasisStart");
        if let Some(StreamEvent::Event(e)) = item {
            if matches!(&*e, Event::StasisStart { channel, .. } if channel.id == caller) {
                break;
            }
        }
    }
    client.answer(&caller).await.unwrap();
    let bridge = client.create_bridge(Some("wsdiff")).await.unwrap();
    let em = client
        .external_media_websocket("slin16", Some(&format!("{caller}-em")))
        .await
        .unwrap();
    let mut facts = WsFacts {
        em_prefix: em.name.split('/').next().unwrap_or_default().to_owned(),
        frame_size_var: em
            .channelvars
            .as_ref()
            .and_then(|v| v.get(aiagc_ari::media_ws::FRAME_SIZE_VAR))
            .cloned(),
        has_connection_id: em.media_connection_id().is_some(),
        ..WsFacts::default()
    };
    facts.listed_before_connect = client
        .application()
        .await
        .unwrap()
        .channel_ids
        .contains(&em.id);
    let refusal = |r: Result<MediaSocket, aiagc_ari::media_ws::MediaSocketError>| match r {
        Ok(_) => "accepted".to_owned(),
        Err(e) => ["404", "409"]
            .into_iter()
            .find(|c| e.to_string().contains(c))
            .map_or_else(|| e.to_string(), str::to_owned),
    };
    facts.unknown_id = refusal(
        MediaSocket::connect(
            &ari.media_url("00000000-0000-0000-0000-000000000000"),
            true,
            Duration::from_secs(5),
            None,
        )
        .await,
    );
    let id = em.media_connection_id().unwrap_or_default().to_owned();
    // Whether the channel enters the app before anyone connects.
    let mut early = Vec::new();
    let wait = Instant::now() + Duration::from_millis(300);
    while let Ok(Some(item)) = tokio::time::timeout_at(wait.into(), rx.recv()).await {
        if let StreamEvent::Event(e) = item {
            if let Event::StasisStart { channel, .. } = &*e {
                early.push(channel.id.clone());
            }
        }
    }
    facts.em_start_after_connect = !early.contains(&em.id);
    let mut ws = MediaSocket::connect(&ari.media_url(&id), true, Duration::from_secs(5), None)
        .await
        .unwrap();
    facts.second_connection = refusal(
        MediaSocket::connect(&ari.media_url(&id), true, Duration::from_secs(5), None).await,
    );
    let mut log = Log::default();
    let em_id = em.id.clone();
    let started = pump(
        &mut ws,
        &mut rx,
        &mut facts,
        &mut log,
        Instant::now() + Duration::from_secs(5),
        |s, a| {
            s.iter().any(|(e, _)| matches!(e, MediaEvent::Start(_)))
                && (early.contains(&em_id)
                    || a.iter().any(|(c, k)| *c == em_id && k == "StasisStart"))
        },
    )
    .await;
    assert!(
        started,
        "MEDIA_START and the channel's StasisStart: {:?} {:?}",
        log.seen, log.ari_events
    );
    facts.start = log.seen.iter().find_map(|(e, _)| match e {
        MediaEvent::Start(s) => Some((
            s.format.clone(),
            s.optimal_frame_size,
            s.ptime_ms,
            s.channel_id == em.id && s.connection_id == id,
        )),
        _ => None,
    });
    client.add_channel(&bridge.id, &caller).await.unwrap();
    client.add_channel(&bridge.id, &em.id).await.unwrap();
    // Let the caller's audio flow a second.
    pump(
        &mut ws,
        &mut rx,
        &mut facts,
        &mut log,
        Instant::now() + Duration::from_secs(1),
        |_, _| false,
    )
    .await;
    let until_mark = |name: &'static str| {
        move |s: &[(MediaEvent, Instant)], _: &[(String, String)]| {
            s.iter()
                .any(|(e, _)| matches!(e, MediaEvent::MarkProcessed(m) if m == name))
        }
    };
    let mark_time = |seen: &[(MediaEvent, Instant)], name: &str| {
        seen.iter().find_map(|(e, at)| match e {
            MediaEvent::MarkProcessed(m) if m == name => Some(*at),
            _ => None,
        })
    };
    // 10 frames and a mark.
    let sent = Instant::now();
    ws.send_audio(&tone_le(1000.0, 10)).await.unwrap();
    ws.send(&MediaCommand::Mark("m1".into())).await.unwrap();
    pump(
        &mut ws,
        &mut rx,
        &mut facts,
        &mut log,
        Instant::now() + Duration::from_secs(3),
        until_mark("m1"),
    )
    .await;
    facts.mark_frames = mark_time(&log.seen, "m1")
        .map_or(-1.0, |at| (at - sent).as_secs_f64() / 0.02)
        .round();
    // 100 frames, a mark, flushed after 200 ms; 5 frames, a mark.
    ws.send_audio(&tone_le(1000.0, 100)).await.unwrap();
    ws.send(&MediaCommand::Mark("m2".into())).await.unwrap();
    pump(
        &mut ws,
        &mut rx,
        &mut facts,
        &mut log,
        Instant::now() + Duration::from_millis(200),
        |_, _| false,
    )
    .await;
    ws.send(&MediaCommand::Flush).await.unwrap();
    let resent = Instant::now();
    ws.send_audio(&tone_le(2000.0, 5)).await.unwrap();
    ws.send(&MediaCommand::Mark("m3".into())).await.unwrap();
    pump(
        &mut ws,
        &mut rx,
        &mut facts,
        &mut log,
        Instant::now() + Duration::from_secs(3),
        until_mark("m3"),
    )
    .await;
    // m2, had it survived the flush, would come 100 frames in: wait past that.
    pump(
        &mut ws,
        &mut rx,
        &mut facts,
        &mut log,
        resent + Duration::from_millis(2400),
        |_, _| false,
    )
    .await;
    facts.m3_frames = mark_time(&log.seen, "m3")
        .map_or(-1.0, |at| (at - resent).as_secs_f64() / 0.02)
        .round();
    facts.marks_after_flush = log
        .seen
        .iter()
        .filter_map(|(e, _)| match e {
            MediaEvent::MarkProcessed(m) if m != "m1" => Some(m.clone()),
            _ => None,
        })
        .collect();
    // 950 frames at once, flushed.
    ws.send_audio(&tone_le(500.0, 950)).await.unwrap();
    pump(
        &mut ws,
        &mut rx,
        &mut facts,
        &mut log,
        Instant::now() + Duration::from_secs(2),
        |s, _| s.iter().any(|(e, _)| *e == MediaEvent::Xoff),
    )
    .await;
    ws.send(&MediaCommand::Flush).await.unwrap();
    pump(
        &mut ws,
        &mut rx,
        &mut facts,
        &mut log,
        Instant::now() + Duration::from_secs(2),
        |s, _| s.iter().any(|(e, _)| *e == MediaEvent::Xon),
    )
    .await;
    ws.send(&MediaCommand::GetStatus).await.unwrap();
    pump(
        &mut ws,
        &mut rx,
        &mut facts,
        &mut log,
        Instant::now() + Duration::from_secs(2),
        |s, _| s.iter().any(|(e, _)| matches!(e, MediaEvent::Status(_))),
    )
    .await;
    facts.flow = log
        .seen
        .iter()
        .filter_map(|(e, _)| match e {
            MediaEvent::Xoff => Some("MEDIA_XOFF".to_owned()),
            MediaEvent::Xon => Some("MEDIA_XON".to_owned()),
            _ => None,
        })
        .collect();
    facts.status_queue = log.seen.iter().find_map(|(e, _)| match e {
        MediaEvent::Status(s) => Some(s.queue_length),
        _ => None,
    });
    // The caller's dialplan hangs up; our channel stays until we remove it.
    let caller_gone = caller.clone();
    pump(
        &mut ws,
        &mut rx,
        &mut facts,
        &mut log,
        Instant::now() + Duration::from_secs(10),
        |_, a| a.iter().any(|(c, k)| *c == caller_gone && k == "StasisEnd"),
    )
    .await;
    facts.em_left_behind = client.channel(&em.id).await.is_ok();
    let _ = client.hangup(&em.id, "normal").await;
    pump(
        &mut ws,
        &mut rx,
        &mut facts,
        &mut log,
        Instant::now() + Duration::from_secs(3),
        |_, _| false,
    )
    .await;
    let _ = client.destroy_bridge(&bridge.id).await;
    let spacing: Vec<f64> = log
        .arrivals
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64() * 1000.0)
        .filter(|ms| *ms < 100.0)
        .collect();
    facts.inbound_spacing_ms = if spacing.is_empty() {
        0.0
    } else {
        (spacing.iter().sum::<f64>() / spacing.len() as f64).round()
    };
    let _ = stop.send(true);
    facts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_media_of_the_simulator_matches_the_real_asterisk() {
    let a = sound("book_01_v0_r150_16k.wav");
    let ast = Asterisk::start(Setup::default());
    let pa = ast.add_sound("a", &a);
    // The caller says one sentence and stays past the protocol steps
    // (about 6 s), then hangs up.
    ast.set_dialplan(&format!(
        "[caller]\n\
         exten => s,1,Answer()\n\
         same => n,Playback({pa})\n\
         same => n,Wait(9)\n\
         same => n,Hangup()\n"
    ));
    let real = scripted_ws_call(ast.ari("wsdiff")).await;

    let mut config = SimConfig::default();
    config.dialplan.insert(
        "s@caller".into(),
        CallerScript {
            audio: a,
            hangup_after: Some(Duration::from_secs(9)),
            ..CallerScript::default()
        },
    );
    let sim = Simulator::start(config).await.unwrap();
    let simulated = scripted_ws_call(sim.client_config("wsdiff")).await;
    eprintln!("real:      {real:?}\nsimulated: {simulated:?}");
    let mut diffs = Vec::new();
    let exact = |what: &str, a: String, b: String, diffs: &mut Vec<String>| {
        if a != b {
            diffs.push(format!("{what}:\n  real: {a}\n  sim:  {b}"));
        }
    };
    let close = |what: &str, a: f64, b: f64, within: f64, diffs: &mut Vec<String>| {
        if (a - b).abs() > within {
            diffs.push(format!("{what}: real {a}, sim {b} (within {within})"));
        }
    };
    for (what, f) in [
        (
            "channel name prefix",
            (|f: &WsFacts| f.em_prefix.clone()) as fn(&WsFacts) -> String,
        ),
        ("frame size variable", |f| format!("{:?}", f.frame_size_var)),
        ("connection id variable", |f| {
            f.has_connection_id.to_string()
        }),
        ("in the app before the connection", |f| {
            f.listed_before_connect.to_string()
        }),
        ("unknown connection id", |f| f.unknown_id.clone()),
        ("second connection", |f| f.second_connection.clone()),
        ("MEDIA_START", |f| format!("{:?}", f.start)),
        ("StasisStart only once connected", |f| {
            f.em_start_after_connect.to_string()
        }),
        ("caller's message sizes", |f| {
            format!("{:?}", f.inbound_sizes)
        }),
        ("marks back after a flush", |f| {
            format!("{:?}", f.marks_after_flush)
        }),
        ("flow control", |f| format!("{:?}", f.flow)),
        ("queue after the flush", |f| format!("{:?}", f.status_queue)),
        ("left behind by the caller's hangup", |f| {
            f.em_left_behind.to_string()
        }),
        ("connection closed by the hangup", |f| {
            f.closed_on_hangup.to_string()
        }),
    ] {
        exact(what, f(&real), f(&simulated), &mut diffs);
    }
    close(
        "caller's message spacing (ms)",
        real.inbound_spacing_ms,
        simulated.inbound_spacing_ms,
        2.0,
        &mut diffs,
    );
    close(
        "frames until the mark after 10",
        real.mark_frames,
        simulated.mark_frames,
        3.0,
        &mut diffs,
    );
    close(
        "frames until the mark after 5 post-flush",
        real.m3_frames,
        simulated.m3_frames,
        3.0,
        &mut diffs,
    );
    assert!(
        diffs.is_empty(),
        "the simulator's WebSocket media differs from Asterisk:\n{}",
        diffs.join("\n")
    );
}
