//! The controller against the simulator: whole calls, faults at every
//! setup step, WebSocket loss, and many calls with no leaks.

use aiagc_ari::client::{AriClient, AriError, ExternalMedia, Originate};
use aiagc_ari::controller::{Controller, ControllerConfig, MediaHost};
use aiagc_ari::ports::PortRange;
use aiagc_ari::schema::Schema;
use aiagc_ari::sim::{Alive, CallerScript, Fault, SimConfig, Simulator};
use aiagc_ari::stream;
use aiagc_engine::Codec;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// A media host that echoes RTP back to Asterisk's address, binding its
/// sockets in a configured port range as the runtime does.
struct EchoMedia {
    ports: PortRange,
    pending: Mutex<HashMap<String, std::net::UdpSocket>>,
    running: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    echoed: Arc<AtomicUsize>,
    dtmf: Mutex<Vec<String>>,
}

impl Default for EchoMedia {
    fn default() -> Self {
        Self {
            ports: PortRange::new("127.0.0.1".parse().unwrap(), 20000..=29999),
            pending: Mutex::default(),
            running: Mutex::default(),
            echoed: Arc::default(),
            dtmf: Mutex::default(),
        }
    }
}

impl EchoMedia {
    fn sockets(&self) -> usize {
        self.pending.lock().unwrap().len() + self.running.lock().unwrap().len()
    }
}

impl MediaHost for EchoMedia {
    fn open(&self, call: &str) -> Result<SocketAddr, String> {
        let s = self.ports.bind().map_err(|e| e.to_string())?;
        let addr = s.local_addr().map_err(|e| e.to_string())?;
        self.pending.lock().unwrap().insert(call.to_owned(), s);
        Ok(addr)
    }
    fn start(&self, call: &str, peer: SocketAddr, _codec: Codec) {
        let Some(s) = self.pending.lock().unwrap().remove(call) else {
            return;
        };
        let Ok(socket) = tokio::net::UdpSocket::from_std(s) else {
            return;
        };
        let echoed = self.echoed.clone();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                if from == peer && socket.send_to(&buf[..n], peer).await.is_ok() {
                    echoed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        self.running.lock().unwrap().insert(call.to_owned(), task);
    }
    fn close(&self, call: &str) {
        self.pending.lock().unwrap().remove(call);
        if let Some(t) = self.running.lock().unwrap().remove(call) {
            t.abort();
        }
    }
    fn dtmf(&self, _call: &str, digit: &str) {
        self.dtmf.lock().unwrap().push(digit.to_owned());
    }
}

struct Rig {
    sim: Simulator,
    controller: Controller<EchoMedia>,
    media: Arc<EchoMedia>,
    shutdown: watch::Sender<bool>,
}

async fn rig(config: SimConfig) -> Rig {
    rig_in(config, Codec::Ulaw).await
}

async fn rig_in(config: SimConfig, format: Codec) -> Rig {
    let sim = Simulator::start(config).await.unwrap();
    let mut client_config = sim.client_config("aiagc");
    client_config.timeout = Duration::from_secs(2);
    let client = AriClient::new(client_config.clone()).unwrap();
    let media = Arc::new(EchoMedia::default());
    let controller = Controller::new(
        client,
        media.clone(),
        ControllerConfig {
            format,
            ..ControllerConfig::default()
        },
    );
    let (tx, rx) = mpsc::channel(1024);
    let (shutdown, shutdown_rx) = watch::channel(false);
    tokio::spawn(stream::run(client_config, tx, shutdown_rx));
    tokio::spawn(controller.clone().run(rx));
    wait_for("app registered", Duration::from_secs(5), || {
        sim.connections() >= 1
    })
    .await;
    // Registration completes right after the upgrade.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Rig {
        sim,
        controller,
        media,
        shutdown,
    }
}

async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

impl Rig {
    /// An inbound call whose caller speaks a tone for `ms`.
    fn call(&self, ms: usize) -> String {
        self.sim
            .place_call(
                "aiagc",
                CallerScript {
                    audio: tone(ms),
                    ..Default::default()
                },
            )
            .unwrap()
    }

    async fn quiescent(&self) {
        let limit = Duration::from_secs(10);
        wait_for("everything torn down", limit, || {
            self.sim.alive() == Alive::default()
                && self.controller.active_calls() == 0
                && self.controller.tasks() == 0
                && self.media.sockets() == 0
        })
        .await;
    }
}

fn tone(ms: usize) -> Vec<i16> {
    (0..16 * ms)
        .map(|i| (8000.0 * (i as f32 * 0.1).sin()) as i16)
        .collect()
}

fn schema() -> Schema {
    Schema::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/ari/api-docs"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_call_media_both_ways_then_nothing_left() {
    let r = rig(SimConfig::default()).await;
    let caller = r
        .sim
        .place_call(
            "aiagc",
            CallerScript {
                args: vec!["inbound".into()],
                number: "+4930123".into(),
                audio: tone(1000),
                hangup_after: None,
            },
        )
        .unwrap();
    wait_for("RTP echoed back", Duration::from_secs(5), || {
        r.sim.received_for_caller(&caller).len() >= 25
    })
    .await;
    assert_eq!(
        r.controller.active_calls(),
        1,
        "the externalMedia StasisStart is not a second call"
    );
    assert!(r.media.echoed.load(Ordering::Relaxed) >= 25);
    // Everything Asterisk answers is in the api-docs' shapes.
    let s = schema();
    let http = reqwest::Client::new();
    let base = format!("http://{}/ari", r.sim.addr());
    for (path, model) in [
        ("/asterisk/info", "AsteriskInfo"),
        ("/applications/aiagc", "Application"),
        ("/channels", "Channel"),
        ("/bridges", "Bridge"),
    ] {
        let v: serde_json::Value = http
            .get(format!("{base}{path}"))
            .basic_auth("aiagc", Some("aiagc-secret"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = if let Some(a) = v.as_array() {
            a.clone()
        } else {
            vec![v]
        };
        assert!(!items.is_empty(), "{path}");
        for item in items {
            s.validate(model, &item)
                .unwrap_or_else(|e| panic!("{path}: {e:?}"));
        }
    }
    // Received RTP is the echo of the caller's stream: continuous sequence.
    let rec = r.sim.received_for_caller(&caller);
    assert!(
        rec.windows(2)
            .filter(|w| w[1].sequence == w[0].sequence.wrapping_add(1))
            .count()
            >= rec.len() * 9 / 10
    );
    assert!(r.sim.hangup(&caller));
    r.quiescent().await;
    for e in r.sim.events() {
        let kind = e["type"].as_str().unwrap().to_owned();
        s.validate(&kind, &e)
            .unwrap_or_else(|errs| panic!("{kind}: {errs:?}"));
    }
    let _ = r.shutdown.send(true);
}

/// What a real Asterisk does with the formats it cannot play back over
/// externalMedia RTP (observed on 22.10.1): slin16 is sent to us, but what
/// we send back (dynamic payload type 118) is dropped; Opus has no
/// transcoder, so nothing flows either way. And RTP flows only while the
/// caller makes a sound: a caller silent after its script sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formats_asterisk_does_not_play_back_are_dropped_like_asterisk() {
    // A phone with silence suppression: no RTP after its tone.
    let vad = SimConfig {
        silence_suppression: true,
        ..SimConfig::default()
    };
    let r = rig_in(vad, Codec::Slin16).await;
    let caller = r.call(1000);
    wait_for(
        "slin16 echoed back to the simulator",
        Duration::from_secs(5),
        || r.media.echoed.load(Ordering::Relaxed) >= 25,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        r.sim.received_for_caller(&caller).is_empty(),
        "slin16 toward Asterisk never reaches the caller"
    );
    // The 1 s tone was sent; the silence after it is not.
    let echoed = r.media.echoed.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        r.media.echoed.load(Ordering::Relaxed),
        echoed,
        "no RTP while silent"
    );
    assert!(
        (45..=55).contains(&echoed),
        "one packet per 20 ms of tone: {echoed}"
    );
    assert!(r.sim.hangup(&caller));
    r.quiescent().await;
    let _ = r.shutdown.send(true);

    let r = rig_in(SimConfig::default(), Codec::Opus).await;
    let caller = r.call(1000);
    wait_for("call set up", Duration::from_secs(5), || {
        r.controller.stats().calls_started.load(Ordering::Relaxed) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        r.media.echoed.load(Ordering::Relaxed),
        0,
        "Opus: Asterisk sends nothing"
    );
    assert!(r.sim.hangup(&caller));
    r.quiescent().await;
    let _ = r.shutdown.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_reaches_the_call_and_bad_frames_are_skipped() {
    let r = rig(SimConfig::default()).await;
    let caller = r.call(200);
    wait_for("call up", Duration::from_secs(5), || {
        r.controller.stats().calls_started.load(Ordering::Relaxed) == 1
    })
    .await;
    r.sim.send_raw_frame("this is not json");
    r.sim
        .send_raw_frame(r#"{"type":"StasisStart","channel":{"name":"no id"}}"#);
    r.sim
        .send_raw_frame(r#"{"type":"ChannelTalkingStarted","channel":{"id":"x"}}"#);
    for d in ['1', '2', '#'] {
        assert!(r.sim.send_dtmf(&caller, d));
    }
    wait_for("digits", Duration::from_secs(5), || {
        r.media.dtmf.lock().unwrap().len() == 3
    })
    .await;
    assert_eq!(r.media.dtmf.lock().unwrap().join(""), "12#");
    assert_eq!(
        r.sim.connections(),
        1,
        "bad frames do not drop the connection"
    );
    r.sim.hangup(&caller);
    r.quiescent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_call_runs_the_same_lifecycle_when_answered() {
    let r = rig(SimConfig::default()).await;
    let client = AriClient::new(r.sim.client_config("aiagc")).unwrap();
    let into_app = client
        .originate(&Originate {
            endpoint: "PJSIP/+4930555@trunk".into(),
            app: Some("aiagc".into()),
            app_args: Some("outbound".into()),
            caller_id: Some("+4930111".into()),
            timeout: Some(30),
            ..Default::default()
        })
        .await
        .unwrap();
    let into_context = client
        .originate(&Originate {
            endpoint: "PJSIP/+4930666@trunk".into(),
            context: Some("outbound-calls-ari".into()),
            extension: Some("s".into()),
            priority: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(into_app.state, "Down");
    wait_for("both answered and set up", Duration::from_secs(5), || {
        r.sim.alive().media_streams == 2
    })
    .await;
    let mut ids = r.controller.call_ids();
    ids.sort();
    let mut want = vec![into_app.id.clone(), into_context.id.clone()];
    want.sort();
    assert_eq!(ids, want);
    let bogus = client
        .originate(&Originate {
            endpoint: "Bogus/thing".into(),
            app: Some("aiagc".into()),
            ..Default::default()
        })
        .await;
    assert_eq!(
        bogus.unwrap_err(),
        AriError::Server {
            status: 500,
            message: "Allocation failed".into()
        }
    );
    r.controller.shutdown().await;
    r.quiescent().await;
}

/// Every REST call the product uses, against the simulator, with the
/// answers a real Asterisk gives (and their shapes per api-docs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rest_call_works_against_the_simulator() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let client = AriClient::new(sim.client_config("aiagc")).unwrap();
    let s = schema();
    assert_eq!(
        client.info().await.unwrap().system.unwrap().version,
        "22.10.1"
    );
    assert!(
        matches!(client.application().await, Err(AriError::NotFound(_))),
        "not registered before the WebSocket"
    );
    let (tx, mut rx) = mpsc::channel(64);
    let (_stop, stop_rx) = watch::channel(false);
    tokio::spawn(stream::run(sim.client_config("aiagc"), tx, stop_rx));
    assert!(matches!(
        rx.recv().await,
        Some(stream::StreamEvent::Connected)
    ));
    assert_eq!(client.application().await.unwrap().name, "aiagc");

    let caller = sim.place_call("aiagc", CallerScript::default()).unwrap();
    client.answer(&caller).await.unwrap();
    assert_eq!(client.channel(&caller).await.unwrap().state, "Up");
    let bridge = client.create_bridge(Some("t")).await.unwrap();
    s.validate("Bridge", &serde_json::to_value(&bridge).unwrap())
        .unwrap();
    let em = client
        .external_media(&ExternalMedia {
            external_host: "127.0.0.1:40000".into(),
            format: "slin16".into(),
            channel_id: None,
        })
        .await
        .unwrap();
    assert!(em.is_external_media());
    assert!(em.unicast_rtp_peer().is_some());
    s.validate("Channel", &serde_json::to_value(&em).unwrap())
        .unwrap();
    client.add_channel(&bridge.id, &caller).await.unwrap();
    client.add_channel(&bridge.id, &em.id).await.unwrap();
    assert_eq!(client.bridges().await.unwrap()[0].channels.len(), 2);
    assert_eq!(client.channels().await.unwrap().len(), 2);
    assert!(
        matches!(client.add_channel(&bridge.id, "nope").await, Err(AriError::BadRequest(m)) if m == "Channel not found")
    );
    client.remove_channel(&bridge.id, &em.id).await.unwrap();
    let pb = client
        .play(&caller, "sound:hello-world", Some("de"))
        .await
        .unwrap();
    s.validate("Playback", &serde_json::to_value(&pb).unwrap())
        .unwrap();
    client.stop_playback(&pb.id).await.unwrap();
    assert!(matches!(
        client.stop_playback(&pb.id).await,
        Err(AriError::NotFound(_))
    ));
    client
        .set_variable(&caller, "CALLER_NAME", "Anna")
        .await
        .unwrap();
    assert_eq!(
        client.get_variable(&caller, "CALLER_NAME").await.unwrap(),
        "Anna"
    );
    client
        .continue_in_dialplan(&caller, "agents", "s", 1)
        .await
        .unwrap();
    assert!(
        matches!(client.answer(&caller).await, Err(AriError::Conflict(_))),
        "left Stasis"
    );
    client.redirect(&caller, "PJSIP/agent1").await.unwrap();
    client.hangup(&em.id, "normal").await.unwrap();
    client.destroy_bridge(&bridge.id).await.unwrap();
    assert!(
        matches!(client.destroy_bridge(&bridge.id).await, Err(AriError::NotFound(m)) if m == "Bridge not found")
    );
    assert!(
        matches!(client.hangup("nope", "normal").await, Err(AriError::NotFound(m)) if m == "Channel not found")
    );
    let no_host = client
        .external_media(&ExternalMedia {
            external_host: String::new(),
            format: "bogus".into(),
            channel_id: None,
        })
        .await;
    assert!(matches!(no_host, Err(AriError::Server { status: 500, .. })));
    assert_eq!(sim.alive(), Alive::default());

    // Wrong credentials: REST says so, and the WebSocket is refused.
    let mut bad = sim.client_config("aiagc");
    bad.password = "wrong".into();
    assert_eq!(
        AriClient::new(bad.clone())
            .unwrap()
            .info()
            .await
            .unwrap_err(),
        AriError::Unauthorized
    );
    let (tx, mut rx) = mpsc::channel(4);
    let (_stop2, stop_rx) = watch::channel(false);
    tokio::spawn(stream::run(bad, tx, stop_rx));
    assert!(
        matches!(rx.recv().await, Some(stream::StreamEvent::Disconnected(reason)) if reason.contains("401"))
    );
    // Nothing listening: a transport error, not a hang.
    let mut gone = sim.client_config("aiagc");
    gone.base_url = "http://127.0.0.1:9/ari".into();
    assert!(matches!(
        AriClient::new(gone).unwrap().info().await,
        Err(AriError::Transport(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_drop_mid_call_media_continues_and_calls_reconcile() {
    let r = rig(SimConfig::default()).await;
    let stays = r.call(5000);
    let leaves = r.call(5000);
    wait_for("both calls up", Duration::from_secs(5), || {
        r.controller.stats().calls_started.load(Ordering::Relaxed) == 2
    })
    .await;
    wait_for("media flowing", Duration::from_secs(5), || {
        r.sim.received_for_caller(&stays).len() > 5
    })
    .await;
    r.sim.close_websockets();
    // While we are disconnected one caller hangs up: its events are lost.
    r.sim.hangup(&leaves);
    let before = r.sim.received_for_caller(&stays).len();
    let t = Instant::now();
    wait_for("reconnect", Duration::from_secs(1), || {
        r.sim.connections() >= 2
    })
    .await;
    let reconnect = t.elapsed();
    assert!(reconnect <= Duration::from_secs(1), "{reconnect:?}");
    wait_for("media continued", Duration::from_secs(3), || {
        r.sim.received_for_caller(&stays).len() > before + 10
    })
    .await;
    wait_for("reconciled", Duration::from_secs(5), || {
        r.controller.active_calls() == 1 && r.sim.alive().bridges == 1
    })
    .await;
    assert_eq!(r.controller.call_ids(), vec![stays.clone()]);
    assert!(r.controller.stats().reconciliations.load(Ordering::Relaxed) >= 2);
    r.sim.hangup(&stays);
    r.quiescent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_setup_steps_are_undone() {
    let r = rig(SimConfig::default()).await;
    let faults = [
        ("POST", "/answer", 404, r#"{"message":"Channel not found"}"#),
        (
            "POST",
            "/bridges",
            500,
            r#"{"message":"An internal error prevented this request from being handled"}"#,
        ),
        (
            "POST",
            "/externalMedia",
            500,
            r#"{"message":"An internal error prevented this request from being handled"}"#,
        ),
        (
            "POST",
            "/addChannel",
            400,
            r#"{"message":"Channel not found"}"#,
        ),
    ];
    for (i, (method, path, status, body)) in faults.iter().enumerate() {
        r.sim.inject(Fault::Fail {
            method: (*method).into(),
            path_contains: (*path).into(),
            status: *status,
            body: (*body).into(),
            times: 1,
        });
        r.call(200);
        wait_for(path, Duration::from_secs(5), || {
            r.controller.stats().setups_failed.load(Ordering::Relaxed) == i as u64 + 1
        })
        .await;
        // The caller is hung up (nothing else would answer it), and all we made is gone.
        r.quiescent().await;
    }
    // A good call afterwards works.
    let ok = r.call(200);
    wait_for("call up", Duration::from_secs(5), || {
        r.sim.alive().media_streams == 1
    })
    .await;
    r.sim.hangup(&ok);
    r.quiescent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_asterisk_times_out_and_is_undone() {
    let r = rig(SimConfig::default()).await;
    r.sim.inject(Fault::Delay {
        method: "POST".into(),
        path_contains: "/addChannel".into(),
        delay: Duration::from_secs(3),
        times: 1,
    });
    r.call(200);
    wait_for("timeout", Duration::from_secs(6), || {
        r.controller.stats().setups_failed.load(Ordering::Relaxed) == 1
    })
    .await;
    r.quiescent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_hangs_up_at_every_setup_step() {
    let r = rig(SimConfig::default()).await;
    for (i, path) in ["/answer", "/bridges", "/externalMedia", "/addChannel"]
        .iter()
        .enumerate()
    {
        r.sim.inject(Fault::HangupCallerOn {
            method: "POST".into(),
            path_contains: (*path).into(),
        });
        r.call(200);
        wait_for(path, Duration::from_secs(5), || {
            r.controller.stats().calls_ended.load(Ordering::Relaxed) > i as u64
        })
        .await;
        r.quiescent().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_restart_tears_down_and_reconnects() {
    let r = rig(SimConfig::default()).await;
    let caller = r.call(3000);
    wait_for("call up", Duration::from_secs(5), || {
        r.sim.received_for_caller(&caller).len() > 3
    })
    .await;
    r.sim.restart();
    wait_for("reconnected", Duration::from_secs(3), || {
        r.sim.connections() >= 2
    })
    .await;
    r.quiescent().await;
    // Calls work again after the restart.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let again = r.call(200);
    wait_for("call up again", Duration::from_secs(5), || {
        r.sim.alive().media_streams == 1
    })
    .await;
    r.sim.hangup(&again);
    r.quiescent().await;
}

fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sequential_and_fifty_concurrent_calls_leave_nothing() {
    let r = rig(SimConfig {
        answer_delay: Duration::from_millis(10),
        ..SimConfig::default()
    })
    .await;
    let mut seed = 42u64;
    for i in 0..1000u64 {
        let caller = r.call(100);
        match lcg(&mut seed) % 3 {
            0 => {}
            1 => tokio::time::sleep(Duration::from_millis(lcg(&mut seed) % 5)).await,
            _ => {
                wait_for("set up", Duration::from_secs(5), || {
                    r.controller.stats().calls_started.load(Ordering::Relaxed)
                        + r.controller.stats().setups_failed.load(Ordering::Relaxed)
                        > i / 2
                })
                .await
            }
        }
        r.sim.hangup(&caller);
        if i % 100 == 99 {
            r.quiescent().await;
        }
    }
    // The simulator can be empty before the controller has read the last
    // call's events: wait for every call to have been ended by us.
    wait_for("1000 calls ended", Duration::from_secs(10), || {
        r.controller.stats().calls_ended.load(Ordering::Relaxed) == 1000
    })
    .await;
    r.quiescent().await;

    let mut callers = Vec::new();
    for _ in 0..50 {
        callers.push(r.call(2000));
    }
    wait_for("50 calls with media", Duration::from_secs(10), || {
        r.sim.alive().media_streams
            + r.controller.stats().setups_failed.load(Ordering::Relaxed) as usize
            >= 50
    })
    .await;
    for c in &callers {
        tokio::time::sleep(Duration::from_millis(lcg(&mut seed) % 10)).await;
        r.sim.hangup(c);
    }
    wait_for("1050 calls ended", Duration::from_secs(10), || {
        r.controller.stats().calls_ended.load(Ordering::Relaxed) == 1050
    })
    .await;
    r.quiescent().await;
    assert_eq!(r.sim.alive(), Alive::default());
}
