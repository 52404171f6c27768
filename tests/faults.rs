//! Faults at the runtime's edges, whole app against the simulator, with
//! speech-to-text on a loopback transcription server (so these tests need
//! no whisper and stay fast): a stranger's RTP stream, an RTP flood at one
//! call, an inference pool saturated by callers talking at once, and a
//! thousand calls with random hangups and setup failures that must leave
//! nothing behind.

mod common;
use common::*;

use aiagc::runtime::app::App;
use aiagc::runtime::media::{CallSummary, MediaConfig};
use aiagc::runtime::speech::SpeechPool;
use aiagc_ari::controller::ControllerConfig;
use aiagc_ari::ports::PortRange;
use aiagc_ari::sim::{Alive, CallerScript, Fault, SimConfig, Simulator};
use aiagc_models::stt::{SttBackend, SttConfig};
use aiagc_models::stt_remote::{RemoteStt, RemoteSttConfig};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A transcription server on loopback: every request is answered with
/// `text` after `delay`, one thread per connection.
fn stt_server(text: &'static str, delay: Duration) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || {
                stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                std::thread::sleep(delay);
                let answer = format!("{{\"text\":\"{text}\"}}");
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            });
        }
    });
    format!("http://{addr}/v1")
}

fn remote(url: &str) -> SttBackend {
    SttBackend::Remote(
        RemoteStt::new(RemoteSttConfig {
            base_url: url.into(),
            timeout: Duration::from_secs(5),
            ..RemoteSttConfig::default()
        })
        .unwrap(),
    )
}

struct Rig {
    sim: Simulator,
    app: App,
    summaries: crossbeam_channel::Receiver<CallSummary>,
}

async fn start(ports: std::ops::RangeInclusive<u16>, pool: SpeechPool) -> Rig {
    start_with(ports, pool, SimConfig::default()).await
}

async fn start_with(
    ports: std::ops::RangeInclusive<u16>,
    pool: SpeechPool,
    config: SimConfig,
) -> Rig {
    let sim = Simulator::start(config).await.unwrap();
    let (tx, summaries) = crossbeam_channel::unbounded();
    let app = App::start(
        sim.client_config("aiagc"),
        PortRange::new("127.0.0.1".parse().unwrap(), ports),
        MediaConfig::default(),
        ControllerConfig::default(),
        pool,
        praxis(),
        Some(tx),
    )
    .unwrap();
    let t = Instant::now();
    while sim.connections() == 0 {
        assert!(t.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    Rig {
        sim,
        app,
        summaries,
    }
}

/// Our media address for `caller` (where the simulator's RTP comes from).
async fn media_port(sim: &Simulator, caller: &str) -> SocketAddr {
    let t = Instant::now();
    loop {
        if let Some(r) = sim.received_for_caller(caller).first() {
            return r.from;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no media for {caller}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A valid-looking slin16 RTP packet of a stranger.
fn foreign_packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 118];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(seq as u32 * 320).to_be_bytes());
    p.extend_from_slice(&0x0bad_cafe_u32.to_be_bytes());
    p.extend(std::iter::repeat_n(0x40, 640));
    p
}

/// Gaps between consecutive packets we sent to `caller` in `window`, less
/// the 20 ms grid: the pacing jitter the caller hears.
fn pacing_jitter(sim: &Simulator, caller: &str, from: Instant, to: Instant) -> Vec<f64> {
    let r: Vec<Instant> = sim
        .received_for_caller(caller)
        .into_iter()
        .map(|r| r.at)
        .filter(|at| *at >= from && *at <= to)
        .collect();
    let mut j: Vec<f64> = r
        .windows(2)
        .map(|w| (w[1].duration_since(w[0]).as_secs_f64() * 1000.0 - 20.0).abs())
        .collect();
    j.sort_by(f64::total_cmp);
    j
}

fn p99(sorted: &[f64]) -> f64 {
    sorted[((sorted.len() - 1) as f64 * 0.99).round() as usize]
}

/// CPU seconds this process has used (user + system).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Bytes the allocator has handed out and not got back (glibc's
/// `mallinfo2`): live heap, without the fragmentation RSS also counts.
fn heap_bytes() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    unsafe { libc::mallinfo2() }.uordblks as u64
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// A second stream from another address is dropped and counted; the
/// caller's own speech is still heard and answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_rtp_is_ignored_and_counted() {
    let url = stt_server(
        "Ich möchte einen Termin vereinbaren.",
        Duration::from_millis(50),
    );
    let rig = start(
        36100..=36199,
        SpeechPool::start(remote(&url), 2, 8, SttConfig::default()).unwrap(),
    )
    .await;
    let audio = [vec![0; 16000 * 3], wav16("book_01_v1_r150_16k.wav")].concat();
    let caller = rig
        .sim
        .place_call(
            "aiagc",
            CallerScript {
                audio,
                ..Default::default()
            },
        )
        .unwrap();
    let ours = media_port(&rig.sim, &caller).await;
    // 300 packets from another port of the same host (what strict pinning
    // must refuse), at twice the call's own rate.
    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for seq in 0..300u16 {
        stranger.send_to(&foreign_packet(seq), ours).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Jumbo datagrams are read into the bounded buffer (truncated) and
    // refused like the rest.
    for _ in 0..5 {
        stranger.send_to(&[0x80; 9000], ours).await.unwrap();
    }
    // The caller's turn was answered despite the stranger.
    let t = Instant::now();
    let answered = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if t.elapsed() > Duration::from_secs(8) {
            break false;
        }
        if rig.sim.received_for_caller(&caller).len() > 400 {
            break true;
        }
    };
    assert!(answered);
    tokio::time::sleep(Duration::from_secs(2)).await;
    rig.sim.hangup(&caller);
    let s = summary_of(&rig.summaries, &mut Vec::new(), &caller).await;
    assert_eq!(s.rtp.source_violations, 305, "{:?}", s.rtp);
    assert!(s.rtp.received > 100, "the caller's own stream was taken");
    let speech = s
        .turns
        .iter()
        .find(|t| t.input == "speech")
        .expect("the caller's turn");
    assert_eq!(speech.transcript, "Ich möchte einen Termin vereinbaren.");
    assert!(speech.reply.contains("Tag"), "{:?}", speech.reply);
    rig.app.drain(Duration::from_secs(1)).await;
}

/// 10 000 packets a second at one call's port: that call goes on, the
/// other call's pacing holds, and the process's CPU stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtp_flood_at_one_call_leaves_the_others_paced() {
    let url = stt_server("Ja.", Duration::from_millis(20));
    let rig = start(
        36200..=36299,
        SpeechPool::start(remote(&url), 1, 8, SttConfig::default()).unwrap(),
    )
    .await;
    let flooded = rig
        .sim
        .place_call("aiagc", CallerScript::default())
        .unwrap();
    let other = rig
        .sim
        .place_call("aiagc", CallerScript::default())
        .unwrap();
    let target = media_port(&rig.sim, &flooded).await;
    media_port(&rig.sim, &other).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let flood = tokio::spawn(async move {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut sent = 0u32;
        let start = Instant::now();
        // 10,000 packets a second for 3 s, paced by the clock.
        while start.elapsed() < Duration::from_secs(3) {
            let due = (start.elapsed().as_secs_f64() * 10_000.0) as u32;
            while sent < due {
                let _ = s.send_to(&foreign_packet(sent as u16), target).await;
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        sent
    });
    let sent = flood.await.unwrap();
    let t1 = Instant::now();
    let cores = (cpu_seconds() - cpu0) / t1.duration_since(t0).as_secs_f64();
    let rate = sent as f64 / t1.duration_since(t0).as_secs_f64();
    assert!(rate > 9500.0, "the flood reached {rate:.0} packets/s");
    let jitter = pacing_jitter(&rig.sim, &other, t0 + Duration::from_millis(100), t1);
    assert!(jitter.len() > 100, "the other call kept sending");
    assert!(
        p99(&jitter) <= 5.0,
        "the other call's pacing jitter p99 {:.1} ms under the flood",
        p99(&jitter)
    );
    // Sender and receiver together, in a debug build: well under the two
    // cores (the receiver drops a stranger's packet at the source check).
    assert!(cores < 1.2, "{cores:.2} cores during the flood");
    for c in [&flooded, &other] {
        rig.sim.hangup(c);
    }
    let s = summary_of(&rig.summaries, &mut Vec::new(), &flooded).await;
    assert!(
        s.rtp.source_violations as f64 > sent as f64 * 0.5,
        "{} of {sent} counted",
        s.rtp.source_violations
    );
    assert_eq!(
        s.ended_by, "caller",
        "the flooded call was not dropped by us"
    );
    eprintln!(
        "flood: {rate:.0} packets/s, {cores:.2} cores, other call's jitter p99 {:.2} ms",
        p99(&jitter)
    );
    rig.app.drain(Duration::from_secs(1)).await;
}

/// More callers talking at once than the pool can take: the queue's
/// policy applies (jobs rejected and counted, nothing blocks), and every
/// call's outbound audio keeps its 20 ms grid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_pool_rejects_jobs_and_no_call_stalls() {
    let url = stt_server(
        "Ich möchte einen Termin vereinbaren.",
        Duration::from_millis(400),
    );
    let pool = SpeechPool::start(remote(&url), 1, 2, SttConfig::default()).unwrap();
    let stats = pool.stats.clone();
    let rig = start(36300..=36399, pool).await;
    let speech = [vec![0; 16000 * 4], wav16("book_01_v1_r150_16k.wav")].concat();
    let mut callers = Vec::new();
    for _ in 0..8 {
        callers.push(
            rig.sim
                .place_call(
                    "aiagc",
                    CallerScript {
                        audio: speech.clone(),
                        ..Default::default()
                    },
                )
                .unwrap(),
        );
    }
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(9)).await;
    let t1 = Instant::now();
    assert!(
        stats.rejected.load(Ordering::Relaxed) > 0,
        "the bounded queue turned jobs away"
    );
    for c in &callers {
        let gaps = pacing_jitter(&rig.sim, c, t0 + Duration::from_millis(500), t1);
        assert!(gaps.len() > 300, "{c}: {} packets", gaps.len());
        let worst = gaps.last().copied().unwrap_or(0.0);
        assert!(
            worst < 60.0,
            "{c} stalled: a {worst:.0} ms gap beyond the grid"
        );
        rig.sim.hangup(c);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!(
        "after hangups: {} calls, {} sockets, {:?}",
        rig.app.controller.active_calls(),
        rig.app.media.sockets(),
        rig.sim.alive()
    );
    let mut got = Vec::new();
    while let Ok(s) = rig.summaries.try_recv() {
        got.push(s.call);
    }
    eprintln!("summaries for {got:?} of {callers:?}");
    for c in &callers {
        assert!(got.contains(c), "no summary for {c}");
    }
    rig.app.drain(Duration::from_secs(1)).await;
}

/// Waits until nothing of any call is left, here or in the simulator.
async fn settle(sim: &Simulator, app: &App) {
    let t = Instant::now();
    while !(sim.alive() == Alive::default()
        && app.controller.active_calls() == 0
        && app.media.sockets() == 0
        && app.controller.tasks() == 0)
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "leftovers: {:?}, {} calls, {} sockets, {} tasks",
            sim.alive(),
            app.controller.active_calls(),
            app.media.sockets(),
            app.controller.tasks()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A reply that is late (the transcription server takes 2.5 s) is
/// bridged by the filler: the caller hears something within 1.5 s of the
/// end of their speech, then the reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reply_is_bridged_by_the_filler() {
    let url = stt_server(
        "Ich möchte einen Termin vereinbaren.",
        Duration::from_millis(2500),
    );
    let rig = start(
        36000..=36099,
        SpeechPool::start(remote(&url), 2, 8, SttConfig::default()).unwrap(),
    )
    .await;
    let caller = rig
        .sim
        .place_call("aiagc", CallerScript::default())
        .unwrap();
    agent_spoke(&rig.sim, &caller, Instant::now()).await;
    let speech = wav16("book_01_v1_r150_16k.wav");
    let voiced = speech.iter().rposition(|s| s.unsigned_abs() > 600).unwrap();
    assert!(rig.sim.say(&caller, &speech));
    let said = loop {
        if let Some(t) = rig.sim.spoken(&caller).last() {
            break *t;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let speech_end = said + Duration::from_secs_f64(voiced as f64 / 16000.0);
    let heard = agent_spoke(&rig.sim, &caller, speech_end).await;
    let wait = heard.saturating_duration_since(speech_end);
    assert!(
        wait < Duration::from_millis(1700),
        "{wait:?} of silence before the filler"
    );
    // Then the reply itself.
    agent_spoke(&rig.sim, &caller, heard + Duration::from_millis(1200)).await;
    rig.sim.hangup(&caller);
    let s = summary_of(&rig.summaries, &mut Vec::new(), &caller).await;
    assert_eq!(s.fillers, 1);
    let turn = s.turns.iter().find(|t| t.input == "speech").unwrap();
    assert!(turn.reply.contains("Tag"), "{}", turn.reply);
    eprintln!("filler after {wait:?} of silence");
    rig.app.drain(Duration::from_secs(1)).await;
}

/// A thousand calls, 25 at a time, each hung up after a random 0–400 ms
/// (some during setup), with setup requests failing now and then and the
/// events WebSocket closed once: nothing is left in Asterisk or here, and
/// memory stays flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_calls_with_faults_leave_nothing_behind() {
    let url = stt_server("Ja.", Duration::from_millis(10));
    let rig = start_with(
        36400..=36999,
        SpeechPool::start(remote(&url), 2, 32, SttConfig::default()).unwrap(),
        SimConfig {
            retain_history: false,
            ..SimConfig::default()
        },
    )
    .await;
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut run = |n: usize| {
        let plan: Vec<(u64, u64)> = (0..n).map(|_| (next() % 400, next() % 10)).collect();
        plan
    };
    let batch = |plan: Vec<(u64, u64)>| {
        let sim = &rig.sim;
        async move {
            for chunk in plan.chunks(25) {
                let mut placed = Vec::new();
                for &(after, fault) in chunk {
                    match fault {
                        0 => sim.inject(Fault::Fail {
                            method: "POST".into(),
                            path_contains: "/bridges".into(),
                            status: 500,
                            body: "{\"message\":\"Internal Server Error\"}".into(),
                            times: 1,
                        }),
                        1 => sim.inject(Fault::Fail {
                            method: "POST".into(),
                            path_contains: "externalMedia".into(),
                            status: 500,
                            body: "{\"message\":\"Internal Server Error\"}".into(),
                            times: 1,
                        }),
                        _ => {}
                    }
                    if let Ok(id) = sim.place_call("aiagc", CallerScript::default()) {
                        placed.push((id, after));
                    }
                }
                let start = Instant::now();
                placed.sort_by_key(|(_, after)| *after);
                for (id, after) in placed {
                    let at = start + Duration::from_millis(after);
                    tokio::time::sleep_until(at.into()).await;
                    sim.hangup(&id);
                }
            }
        }
    };
    // Warm-up until the allocator's pools have settled (memory after 100
    // calls still grows ~20 MB over the next 500), then the measured run.
    batch(run(500)).await;
    settle(&rig.sim, &rig.app).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss0, heap0, tasks0) = (rss_kb(), heap_bytes(), tasks());
    let plan = run(1000);
    let (first, second) = plan.split_at(500);
    batch(first.to_vec()).await;
    eprintln!("after 500: RSS {} kB", rss_kb());
    rig.sim.close_websockets();
    batch(second.to_vec()).await;
    settle(&rig.sim, &rig.app).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    while rig.summaries.try_recv().is_ok() {}
    let (rss1, heap1, tasks1) = (rss_kb(), heap_bytes(), tasks());
    assert_eq!(
        rig.sim.alive(),
        Alive::default(),
        "channels, bridges, media, sockets"
    );
    assert_eq!(rig.app.media.sockets(), 0);
    assert_eq!(rig.app.controller.tasks(), 0);
    assert!(tasks1 <= tasks0, "tokio tasks {tasks0} → {tasks1}");
    let growth_mb = rss1.saturating_sub(rss0) as f64 / 1024.0;
    let heap_kb = (heap1 as f64 - heap0 as f64) / 1024.0;
    eprintln!(
        "1000 calls: RSS {rss0} kB → {rss1} kB (+{growth_mb:.1} MB), live heap {heap_kb:+.0} kB, tasks {tasks0} → {tasks1}"
    );
    assert!(
        growth_mb < 32.0,
        "RSS grew {growth_mb:.1} MB over 1000 calls"
    );
    // What is still allocated: 4 kB per call left behind would show (the
    // simulator's bounded event history alone moves it by ~2 MB).
    assert!(
        heap_kb < 4096.0,
        "live heap grew {heap_kb:.0} kB over 1000 calls"
    );
    rig.app.drain(Duration::from_secs(1)).await;
}
