//! The WebSocket media edge against a stand-in for Asterisk's media
//! channel on loopback that misbehaves on purpose: malformed, unknown and
//! over-long control messages and audio cut at odd places are counted and
//! never end the call; replies go out with marks; a barge-in flushes
//! Asterisk's queue; `MEDIA_XOFF` holds what is sent until `MEDIA_XON`; a
//! closed connection leaves the call to the controller.

use aiagc::runtime::edge::Edge;
use aiagc_ari::media_ws::MediaSocket;
use aiagc_engine::{Call, CallConfig, Codec, Transport};
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// What the stand-in received from us.
#[derive(Debug, Default)]
struct Got {
    audio_bytes: usize,
    commands: Vec<String>,
}

/// A loopback server that speaks first (`script`), then records what
/// arrives and answers marks, until `stop`.
async fn stand_in(
    script: Vec<Message>,
) -> (
    String,
    tokio::sync::mpsc::UnboundedSender<Message>,
    tokio::sync::oneshot::Receiver<Got>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/media/abc-123", listener.local_addr().unwrap());
    let (more_tx, mut more) = tokio::sync::mpsc::unbounded_channel::<Message>();
    let (done_tx, done) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        // The handshake's callback type is tungstenite's own.
        #[allow(clippy::result_large_err)]
        let callback =
            |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
             mut resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
                // Asterisk answers only the `media` sub-protocol.
                assert_eq!(
                    req.headers()
                        .get("sec-websocket-protocol")
                        .and_then(|v| v.to_str().ok()),
                    Some("media")
                );
                resp.headers_mut()
                    .insert("sec-websocket-protocol", "media".parse().unwrap());
                Ok(resp)
            };
        let mut ws = tokio_tungstenite::accept_hdr_async(tcp, callback)
            .await
            .unwrap();
        for m in script {
            ws.send(m).await.unwrap();
        }
        let mut got = Got::default();
        let until = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            tokio::select! {
                m = more.recv() => match m {
                    Some(Message::Close(_)) | None => {
                        let _ = ws.close(None).await;
                        break;
                    }
                    Some(m) => ws.send(m).await.unwrap(),
                },
                m = ws.next() => match m {
                    Some(Ok(Message::Binary(b))) => got.audio_bytes += b.len(),
                    Some(Ok(Message::Text(t))) => {
                        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                        if v["command"] == "MARK_MEDIA" {
                            let back = serde_json::json!({
                                "event": "MEDIA_MARK_PROCESSED",
                                "channel_id": "1.1",
                                "correlation_id": v["correlation_id"],
                            });
                            ws.send(Message::text(back.to_string())).await.unwrap();
                        }
                        got.commands.push(v["command"].as_str().unwrap_or("?").to_owned());
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                },
                _ = tokio::time::sleep_until(until) => break,
            }
        }
        let _ = done_tx.send(got);
    });
    (url, more_tx, done)
}

fn call(t0: Instant) -> Call {
    let mut c = CallConfig::new(Codec::Slin16, 3);
    c.transport = Transport::Stream {
        lead: Duration::from_millis(60),
    };
    Call::new(c, t0).unwrap()
}

/// Runs the edge and the call together for `for_ms`, as the call's task
/// does (receive, clock, transmit).
async fn drive(edge: &mut Edge, call: &mut Call, id: &str, for_ms: u64) {
    let mut buf = vec![0u8; 2048];
    let until = Instant::now() + Duration::from_millis(for_ms);
    let mut wakes = 0u64;
    while Instant::now() < until {
        let mut deadline = call.poll_timeout();
        if edge.holding() {
            deadline = deadline.max(Instant::now() + aiagc_engine::FRAME);
        }
        wakes += 1;
        let deadline = deadline.min(until);
        tokio::select! {
            input = edge.recv(&mut buf) => edge.take(input, &buf, call, id, Instant::now()),
            _ = tokio::time::sleep_until(deadline.into()) => call.handle_timeout(Instant::now()),
        }
        edge.transmit(call, Instant::now(), id, |_| {}).await;
        while call.poll_event().is_some() {}
    }
    // A wake-up per frame or message at most, not a spin.
    assert!(wakes <= for_ms / 5 + 50, "{wakes} wake-ups in {for_ms} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_control_messages_are_counted_and_the_call_goes_on() {
    let frame = |v: i16| Message::binary(v.to_le_bytes().repeat(320));
    let start = serde_json::json!({
        "event": "MEDIA_START", "connection_id": "abc-123", "channel": "WebSocket/abc-123/0x1",
        "channel_id": "1.1", "format": "slin16", "optimal_frame_size": 640, "ptime": 20,
    });
    let mut script = vec![
        Message::text(start.to_string()),
        Message::text("{not json"),
        Message::text(r#"{"event":"MEDIA_FROM_THE_FUTURE"}"#),
        Message::text(r#"{"event":"DTMF_END","digit":"77"}"#),
        Message::text("x".repeat(5000)),
        Message::text(""),
        Message::Ping(vec![1, 2, 3].into()),
    ];
    // Ten frames of audio, cut at odd places, and one message of an odd
    // length (half a sample left over, completed by the next).
    let mut audio: Vec<u8> = (0..10)
        .flat_map(|_| 1000i16.to_le_bytes().repeat(320))
        .collect();
    audio.push(0);
    let cuts = [1usize, 639, 7, 1300, 333, 2, 1000];
    let mut at = 0;
    for c in cuts.iter().cycle() {
        if at >= audio.len() {
            break;
        }
        let end = (at + c).min(audio.len());
        script.push(Message::binary(audio[at..end].to_vec()));
        at = end;
    }
    script.push(Message::binary(vec![0u8; 639]));
    script.push(frame(0));
    let (url, more, done) = stand_in(script).await;
    let socket = MediaSocket::connect(&url, true, Duration::from_secs(5), None)
        .await
        .unwrap();
    let mut edge = Edge::stream(socket);
    let t0 = Instant::now();
    let mut call = call(t0);
    drive(&mut edge, &mut call, "c1", 400).await;
    let counts = edge.stream_counts().unwrap().clone();
    assert_eq!(counts.rejected, 5, "{counts:?}");
    assert_eq!(call.stats().received, 12, "every whole frame heard once");
    assert_eq!(call.stats().malformed, 0);

    // A reply: frames go out with marks, which come back.
    let reply: Vec<f32> = (0..16000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
    call.speak(&reply, 16000).unwrap();
    drive(&mut edge, &mut call, "c1", 500).await;
    // Barge-in: the call pauses the reply, the edge flushes Asterisk's
    // queue, and what the flush dropped unplayed (the frames since the last
    // mark back) is held again with the rest.
    call.pause_speaking();
    let held_at_pause = call.held_audio();
    drive(&mut edge, &mut call, "c1", 100).await;
    let unheard = edge.stream_counts().unwrap().unheard_ms;
    assert_eq!(
        (call.held_audio() - held_at_pause).as_millis() as u64,
        unheard,
        "held again: what the edge counted"
    );
    assert!(unheard <= 100 && unheard.is_multiple_of(20), "{unheard} ms");
    // The caller's turn: the held reply is dropped (a second flush).
    call.stop_speaking();
    drive(&mut edge, &mut call, "c1", 100).await;
    // XOFF: nothing more is sent until XON.
    more.send(Message::text(
        r#"{"event":"MEDIA_XOFF","channel_id":"1.1"}"#,
    ))
    .unwrap();
    drive(&mut edge, &mut call, "c1", 100).await;
    let before = call.stats().sent;
    call.speak(&reply, 16000).unwrap();
    drive(&mut edge, &mut call, "c1", 200).await;
    let held = call.stats().sent - before;
    more.send(Message::text(r#"{"event":"MEDIA_XON","channel_id":"1.1"}"#))
        .unwrap();
    drive(&mut edge, &mut call, "c1", 300).await;
    let after_xon = call.stats().sent - before - held;
    // Asterisk goes away: the edge stops, the call is left to the
    // controller (no panic, no busy loop).
    more.send(Message::Close(None)).unwrap();
    drive(&mut edge, &mut call, "c1", 200).await;
    let got = done.await.unwrap();
    let counts = edge.stream_counts().unwrap().clone();
    eprintln!(
        "sent {} audio bytes, commands {:?}; counts {counts:?}; during XOFF {held} frames, after XON {after_xon}",
        got.audio_bytes,
        got.commands.iter().take(12).collect::<Vec<_>>()
    );
    assert!(got.commands.iter().filter(|c| *c == "MARK_MEDIA").count() >= 5);
    assert!(counts.marks >= 5, "marks came back: {counts:?}");
    assert_eq!(
        got.commands.iter().filter(|c| *c == "FLUSH_MEDIA").count(),
        2,
        "one flush at the pause, one when the held reply was dropped"
    );
    assert_eq!(counts.flushes, 2);
    assert_eq!(counts.xoff, 1);
    assert_eq!(held, 0, "nothing sent during XOFF");
    assert!(after_xon >= 10, "sending resumed after XON: {after_xon}");
    assert_eq!(got.audio_bytes % 640, 0, "whole frames only");
}
