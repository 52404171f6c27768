//! Asterisk's WebSocket media channel against a real Asterisk 22.10.1:
//! what `externalMedia` with `transport=websocket` answers, what the
//! connection says, that 16 kHz audio goes both ways (the caller's
//! recording shows the spectrum above 4 kHz that an 8 kHz path cannot
//! carry), that marks come back as the audio before them plays, and what
//! `FLUSH_MEDIA` does to a long queued reply and the audio after it.
//!
//! The call: a `Local/` caller that plays a German sentence and then
//! records what it hears; we bridge it to a WebSocket media channel the way
//! a Stasis app would and speak through the connection.

mod common;
use common::asterisk::{read_wav, Asterisk, Setup};

use aiagc_ari::client::{AriClient, AriConfig, Originate};
use aiagc_ari::event::Event;
use aiagc_ari::media_ws::{Incoming, MediaCommand, MediaEvent, MediaSocket, Outflow};
use aiagc_ari::stream::StreamEvent;
use std::time::{Duration, Instant};

/// Power of `x` at `hz` relative to its total power (Goertzel).
fn tone_share(x: &[i16], hz: f64) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * hz / 16000.0;
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = v as f64 + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let p = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    let total: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
    // A pure tone puts N/2 × its energy into the Goertzel power.
    2.0 * p / (x.len() as f64 * total.max(1.0))
}

fn tone(hz: f64, ms: usize, amplitude: f64) -> Vec<i16> {
    (0..ms * 16)
        .map(|i| (amplitude * (2.0 * std::f64::consts::PI * hz * i as f64 / 16000.0).sin()) as i16)
        .collect()
}

fn le(x: &[i16]) -> Vec<u8> {
    x.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// Runs the events connection until it is up.
async fn events(
    ari: &AriConfig,
) -> (
    tokio::sync::mpsc::Receiver<StreamEvent>,
    tokio::sync::watch::Sender<bool>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(aiagc_ari::stream::run(ari.clone(), tx, stop_rx));
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(StreamEvent::Connected)) => return (rx, stop),
            Ok(Some(_)) => {}
            other => panic!("no events connection: {other:?}"),
        }
    }
}

/// What we learnt from one call.
#[derive(Default)]
struct Seen {
    start: Option<aiagc_ari::media_ws::MediaStart>,
    /// Sizes of the binary messages Asterisk sent.
    sizes: Vec<usize>,
    /// The caller's audio as Asterisk sent it.
    inbound: Vec<i16>,
    /// (frames sent before the mark, when it came back).
    marks: Vec<(u64, Instant)>,
    /// Text messages that did not parse.
    rejected: Vec<String>,
    /// When each audio message came.
    arrivals: Vec<Instant>,
    /// MEDIA_XOFF / MEDIA_XON in order.
    flow_events: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_media_is_wideband_both_ways_and_marks_tell_the_playout() {
    let ast = Asterisk::start(Setup::default());
    // A German sentence and half a second of 5 kHz, which no 8 kHz leg
    // on the way could carry.
    let mut sentence = common::wav16("book_01_v0_r150_16k.wav");
    sentence.extend(tone(5000.0, 500, 8000.0));
    let said = ast.add_sound("said", &sentence);
    ast.set_dialplan(&format!(
        "[caller]\n\
         exten => s,1,Answer()\n\
         same => n,Playback({said})\n\
         same => n,Record({{dir}}/rec/heard.wav16,0,9,qkx)\n\
         same => n,Hangup()\n"
    ));
    let ari = ast.ari("wsmedia");
    let client = AriClient::new(ari.clone()).unwrap();
    let (mut rx, stop) = events(&ari).await;
    let caller = client
        .originate(&Originate {
            endpoint: "Local/s@caller".into(),
            app: Some(ari.app.clone()),
            ..Originate::default()
        })
        .await
        .unwrap()
        .id;
    // The caller enters the app: answer it, bridge it to a WebSocket
    // media channel that Asterisk listens for.
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
    let bridge = client.create_bridge(Some("ws")).await.unwrap();
    let em = client
        .external_media_websocket("slin16", Some(&format!("{caller}-em")))
        .await
        .unwrap();
    assert!(em.name.starts_with("WebSocket/"), "{}", em.name);
    assert!(em.is_external_media());
    let id = em
        .media_connection_id()
        .unwrap_or_else(|| panic!("no connection id in {:?}", em.channelvars))
        .to_owned();
    assert_eq!(
        em.channelvars
            .as_ref()
            .and_then(|v| v.get(aiagc_ari::media_ws::FRAME_SIZE_VAR))
            .map(String::as_str),
        Some("640"),
        "20 ms of slin16"
    );
    // A connection id nobody was given is refused (404), and nothing else
    // than a WebSocket upgrade is taken there.
    let wrong = MediaSocket::connect(
        &ari.media_url("00000000-0000-0000-0000-000000000000"),
        true,
        Duration::from_secs(5),
        None,
    )
    .await;
    assert!(
        matches!(&wrong, Err(e) if e.to_string().contains("404")),
        "{:?}",
        wrong.err()
    );
    let mut ws = MediaSocket::connect(&ari.media_url(&id), true, Duration::from_secs(5), None)
        .await
        .unwrap();
    client.add_channel(&bridge.id, &caller).await.unwrap();
    client.add_channel(&bridge.id, &em.id).await.unwrap();
    // A second connection for the same id is refused (409).
    let again = MediaSocket::connect(&ari.media_url(&id), true, Duration::from_secs(5), None).await;
    assert!(
        matches!(&again, Err(e) if e.to_string().contains("409")),
        "{:?}",
        again.err()
    );

    // What we say: 1 s of a 6 kHz tone, 1 s of 1 kHz, then a 22 s reply
    // queued at once and flushed after 0.5 s, then 1 s of 2.5 kHz.
    let high = tone(6000.0, 1000, 8000.0);
    let low = tone(1000.0, 1000, 8000.0);
    // 22 s: past the 900 frames at which Asterisk says MEDIA_XOFF and the
    // 1000 after which it drops what comes.
    let long = tone(440.0, 22_000, 8000.0);
    let after = tone(2500.0, 1000, 8000.0);
    let mut seen = Seen::default();
    let mut flow = Outflow::new(15, 5);
    let mut reply = [high.clone(), low.clone()].concat();
    let mut pos = 0usize;
    let mut loud = 0usize;
    let mut last_loud: Option<Instant> = None;
    let (mut spoke_at, mut hung_up_at) = (None, None);
    let mut speaking = false;
    let mut phase = 0;
    let mut flush_at = None;
    let t0 = Instant::now();
    loop {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the call did not end: start {:?}, {} messages in, marks {:?}, rejected {:?}",
            seen.start,
            seen.sizes.len(),
            seen.marks,
            seen.rejected
        );
        // Speak once the caller's sentence is over (it records then).
        if !speaking
            && loud > 25
            && last_loud.is_some_and(|q| q.elapsed() > Duration::from_millis(400))
        {
            speaking = true;
            spoke_at = Some(Instant::now());
        }
        if speaking {
            loop {
                let frames = (flow.room() as usize).min((reply.len() - pos) / 320);
                if frames == 0 {
                    break;
                }
                ws.send_audio(&le(&reply[pos..pos + frames * 320]))
                    .await
                    .unwrap();
                pos += frames * 320;
                let mut mark = flow.sent(frames as u64);
                // A reply ends with a mark, so its end is known too.
                if pos == reply.len() && mark.is_none() {
                    mark = Some(flow.mark());
                }
                if let Some(mark) = mark {
                    ws.send(&mark).await.unwrap();
                }
            }
            if pos == reply.len() && flow.in_flight() == 0 {
                match phase {
                    0 => {
                        // The long reply: all of it at once, past the window.
                        ws.send_audio(&le(&long)).await.unwrap();
                        let _ = flow.sent(long.len() as u64 / 320);
                        flush_at = Some(Instant::now() + Duration::from_millis(500));
                        phase = 1;
                    }
                    2 => {
                        // Everything played: leave the caller a moment, hang up.
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        client.hangup(&caller, "normal").await.unwrap();
                        hung_up_at = Some(Instant::now());
                        // The media channel is ours to end (Asterisk keeps it).
                        client.hangup(&em.id, "normal").await.unwrap();
                        phase = 3;
                    }
                    _ => {}
                }
            }
            if phase == 1 && flush_at.is_some_and(|t| Instant::now() >= t) {
                ws.send(&MediaCommand::Flush).await.unwrap();
                flow.flushed();
                reply = after.clone();
                pos = 0;
                phase = 2;
            }
        }
        let got = tokio::time::timeout(Duration::from_millis(20), ws.recv()).await;
        let Ok(got) = got else { continue };
        match got {
            Incoming::Audio(bytes) => {
                seen.sizes.push(bytes.len());
                seen.arrivals.push(Instant::now());
                let pcm: Vec<i16> = bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                let rms = common::asterisk::rms(&pcm);
                if rms > 0.01 {
                    loud += 1;
                    last_loud = Some(Instant::now());
                }
                seen.inbound.extend_from_slice(&pcm);
            }
            Incoming::Event(MediaEvent::Start(s)) => seen.start = Some(s),
            Incoming::Event(e @ MediaEvent::MarkProcessed(_)) => {
                flow.event(&e);
                seen.marks.push((flow.frames_played(), Instant::now()));
            }
            Incoming::Event(e) => {
                if matches!(e, MediaEvent::Xoff | MediaEvent::Xon) {
                    seen.flow_events.push(format!("{e:?}"));
                }
                flow.event(&e)
            }
            Incoming::Rejected(e) => seen.rejected.push(e.to_string()),
            Incoming::Closed(why) => {
                eprintln!("media connection ended: {why}");
                break;
            }
        }
    }
    let _ = client.destroy_bridge(&bridge.id).await;
    let _ = stop.send(true);

    // The connection.
    let start = seen.start.clone().expect("MEDIA_START");
    assert_eq!(
        (
            start.format.as_str(),
            start.optimal_frame_size,
            start.ptime_ms
        ),
        ("slin16", 640, 20),
        "{start:?}"
    );
    assert_eq!(start.connection_id, id);
    assert!(seen.rejected.is_empty(), "{:?}", seen.rejected);
    // The caller's audio: 20 ms messages of 16 kHz audio with its highs.
    let full = seen.sizes.iter().filter(|&&n| n == 640).count();
    assert!(
        full * 100 >= seen.sizes.len() * 95,
        "message sizes: {:?}",
        &seen.sizes[..seen.sizes.len().min(40)]
    );
    let span = seen.arrivals[seen.arrivals.len() - 1].duration_since(seen.arrivals[0]);
    // Asterisk sends the caller's audio as it plays, one frame per 20 ms.
    let per_frame = span.as_secs_f64() * 1000.0 / (seen.arrivals.len() - 1) as f64;
    assert!(
        (19.0..=21.0).contains(&per_frame),
        "{per_frame:.2} ms between the caller's frames"
    );
    let source_high = common::share_above_4k(&sentence);
    let inbound_high = common::share_above_4k(&seen.inbound);
    eprintln!(
        "inbound: {} messages, {:.2} s; energy above 4 kHz: sent by the caller {:.3}, received {:.3}",
        seen.sizes.len(),
        seen.inbound.len() as f64 / 16000.0,
        source_high,
        inbound_high
    );
    assert!(
        source_high > 0.1 && inbound_high > 0.7 * source_high,
        "the caller's highs did not arrive: {inbound_high:.4} of {source_high:.4}"
    );
    // The marks: each came back as the audio before it played, 50 frames
    // a second.
    let (first, last) = (
        seen.marks.first().unwrap(),
        seen.marks[seen.marks.len() - 1],
    );
    let before_flush: Vec<_> = seen.marks.iter().filter(|(f, _)| *f <= 100).collect();
    assert!(before_flush.len() >= 15, "marks: {:?}", seen.marks.len());
    let (a, b) = (before_flush[0], before_flush[before_flush.len() - 1]);
    let rate = (b.0 - a.0) as f64 / b.1.duration_since(a.1).as_secs_f64();
    eprintln!(
        "marks: {} back, frames played per second between the first and last of the first reply: {rate:.1}; last at frame {} after {:.2} s",
        seen.marks.len(),
        last.0,
        last.1.duration_since(first.1).as_secs_f64()
    );
    // 50 a second: no gap while the window refills (one mark per window
    // read 46.9, a 20 ms gap every 300 ms).
    assert!(
        (48.5..=51.5).contains(&rate),
        "playout rate by marks {rate:.1}/s"
    );

    // What the caller heard.
    let (heard, rate) = read_wav(&ast.dir.join("rec/heard.wav16"));
    assert_eq!(rate, 16000);
    // Asterisk plays nothing, not even silence, while its queue is empty
    // (waiting for marks, after the flush): the recording holds less than
    // the time it ran. Hence aiagc sends silence between replies.
    let recorded = heard.len() as f64 / 16000.0;
    let ran = hung_up_at
        .zip(spoke_at)
        .map(|(h, s): (Instant, Instant)| h.duration_since(s).as_secs_f64())
        .unwrap_or_default();
    eprintln!("recorded {recorded:.2} s of a Record() that ran {ran:.2} s while we spoke");
    assert!(recorded < ran, "{recorded} vs {ran}");
    // Each tone's share in the 0.6 s window where it is strongest.
    let share = |hz: f64| -> f64 {
        heard
            .windows(9600)
            .step_by(800)
            .map(|w| tone_share(w, hz))
            .fold(0.0, f64::max)
    };
    let six = share(6000.0);
    let one = share(1000.0);
    let two_half = share(2500.0);
    let flushed = share(440.0);
    let high_share = common::share_above_4k(&heard);
    eprintln!(
        "heard {:.2} s: tone shares 6 kHz {six:.2}, 1 kHz {one:.2}, 440 Hz (flushed after 0.5 s) {flushed:.2}, \
         2.5 kHz (after the flush) {two_half:.2}; energy above 4 kHz {high_share:.3}",
        heard.len() as f64 / 16000.0
    );
    assert!(six > 0.8, "the 6 kHz tone reached the caller: {six:.2}");
    assert!(one > 0.8, "the 1 kHz tone reached the caller: {one:.2}");
    assert!(
        high_share > 0.2,
        "a 16 kHz reply has its highs at the caller: {high_share:.3}"
    );
    assert!(
        two_half > 0.8,
        "audio sent after FLUSH_MEDIA of a long queued reply reached the caller: {two_half:.2}"
    );
    // Flushed half a second in: at most ~0.6 s of the 6 s of 440 Hz played.
    let played_440 = heard
        .chunks(320)
        .filter(|c| c.len() == 320 && tone_share(c, 440.0) > 0.5)
        .count();
    eprintln!(
        "440 Hz heard for {} ms of 22000; flow control said {:?}",
        played_440 * 20,
        seen.flow_events
    );
    assert_eq!(
        seen.flow_events.first().map(String::as_str),
        Some("Xoff"),
        "a queue of 22 s closes the window"
    );
    assert!(
        played_440 * 20 <= 1000,
        "the flush stopped the long reply: {} ms",
        played_440 * 20
    );
}
