//! `Call` over [`Transport::Stream`] (Asterisk's WebSocket media channel):
//! slin16 little-endian frames in, heard as they arrive, whatever the
//! message boundaries; replies out ahead of the clock by the lead, in the
//! stream's byte order, silence on the clock, nothing dropped after a
//! stall.

mod common;

use aiagc_engine::{Call, CallConfig, CallEvent, Codec, Transport};
use common::*;
use std::time::{Duration, Instant};

const LEAD: Duration = Duration::from_millis(60);

fn stream_call(t0: Instant) -> Call {
    let mut c = CallConfig::new(Codec::Slin16, 7);
    c.transport = Transport::Stream { lead: LEAD };
    Call::new(c, t0).unwrap()
}

fn le(x: &[i16]) -> Vec<u8> {
    x.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// The German script, fed as 20 ms frames cut at `cut` bytes into each
/// message: the utterances found, and the frames heard.
fn utterances(cut: impl Fn(usize) -> usize) -> (Vec<(u64, u64)>, u64) {
    let (_, pcm) = read_wav(&fixtures().join("de/script_01_16k.wav"));
    let mut bytes = le(&pcm);
    // A second and a half of silence after it, as a line sends.
    bytes.extend(std::iter::repeat_n(0u8, 48_000));
    let t0 = Instant::now();
    let mut call = stream_call(t0);
    let mut found = Vec::new();
    let mut at = 0usize;
    let mut i = 0;
    while at < bytes.len() {
        let n = cut(i).clamp(1, bytes.len() - at);
        let now = t0 + Duration::from_millis((at / 32) as u64);
        call.receive_stream(&bytes[at..at + n], now);
        at += n;
        i += 1;
        while let Some(e) = call.poll_event() {
            if let CallEvent::SpeechEnded(u) = e {
                found.push((
                    u.start.elapsed.as_millis() as u64,
                    u.end.elapsed.as_millis() as u64,
                ));
            }
        }
    }
    (found, call.stats().frames_played)
}

#[test]
fn frames_are_heard_as_they_arrive_whatever_the_message_boundaries() {
    let truth = script_segments("script_01_16k.wav");
    // Whole frames, as Asterisk sends them.
    let (whole, frames) = utterances(|_| 640);
    assert_eq!(whole.len(), truth.len(), "{whole:?} vs {truth:?}");
    for ((s, e), (ts, te)) in whole.iter().zip(&truth) {
        assert!(
            s.abs_diff(*ts) <= 100 && e.abs_diff(*te) <= 300,
            "{whole:?} vs {truth:?}"
        );
    }
    // Odd pieces, several frames at once, single bytes: the same frames,
    // the same utterances.
    let (odd, odd_frames) = utterances(|i| [1, 639, 7, 1300, 333, 2][i % 6]);
    assert_eq!((odd, odd_frames), (whole.clone(), frames));
    let (big, big_frames) = utterances(|_| 640 * 50 + 3);
    assert_eq!((big, big_frames), (whole, frames));
}

#[test]
fn an_rtp_call_counts_stream_bytes_as_malformed() {
    let t0 = Instant::now();
    let mut call = Call::new(CallConfig::new(Codec::Slin16, 1), t0).unwrap();
    call.receive_stream(&[0u8; 640], t0);
    assert_eq!((call.stats().malformed, call.stats().frames_played), (1, 0));
    // And the stream of a codec without fixed frames is refused.
    let mut c = CallConfig::new(Codec::Opus, 1);
    c.transport = Transport::Stream { lead: LEAD };
    let mut opus = Call::new(c, t0).unwrap();
    opus.receive_stream(&[0u8; 80], t0);
    assert_eq!(opus.stats().payload_type_violations, 1);
}

#[test]
fn replies_go_out_ahead_by_the_lead_little_endian_silence_on_the_clock() {
    let t0 = Instant::now();
    let mut call = stream_call(t0);
    // Nothing to say: a frame of silence per slot, on the clock (Asterisk
    // would play nothing at all), and the next wake-up is the next slot.
    for ms in (0..200).step_by(20) {
        let now = t0 + Duration::from_millis(ms);
        let tx = call.poll_transmit(now).expect("a frame of silence");
        assert!(tx.data.len() == 640 && tx.data.iter().all(|&b| b == 0));
        assert!(call.poll_transmit(now).is_none());
        assert_eq!(call.poll_timeout(), now + Duration::from_millis(20));
    }
    // One second of a ramp, and the same through an RTP call for reference.
    let pcm: Vec<f32> = (0..16000)
        .map(|i| ((i % 400) as f32 - 200.0) / 400.0)
        .collect();
    let start = t0 + Duration::from_millis(200);
    call.speak(&pcm, 16000).unwrap();
    let mut rtp = Call::new(CallConfig::new(Codec::Slin16, 7), t0).unwrap();
    rtp.speak(&pcm, 16000).unwrap();
    let mut reference = Vec::new();
    let mut t = t0;
    let mut rtp_firsts = 0;
    while reference.len() < 50 && t < t0 + Duration::from_secs(3) {
        while let Some(tx) = rtp.poll_transmit(t) {
            rtp_firsts += tx.first_of_reply as usize;
            let v = aiagc_engine::packet::parse(tx.data).unwrap();
            // The marked packet is the one said to start the reply.
            assert_eq!(v.marker, tx.first_of_reply);
            if v.payload.iter().any(|&b| b != 0) || !reference.is_empty() {
                reference.push(v.payload.to_vec());
            }
        }
        t += Duration::from_millis(20);
    }
    assert_eq!(rtp_firsts, 1);
    // At the reply's start: its first slot and the lead's worth at once,
    // the first of them said to start the reply (the edge marks it).
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut firsts = Vec::new();
    while let Some(tx) = call.poll_transmit(start) {
        assert_eq!(tx.data.len(), 640);
        firsts.push(tx.first_of_reply);
        frames.push(tx.data.to_vec());
    }
    assert_eq!(firsts, [true, false, false, false]);
    assert_eq!(frames.len(), 1 + (LEAD.as_millis() / 20) as usize);
    assert!(matches!(
        call.poll_event(),
        Some(CallEvent::ReplyStarted { .. })
    ));
    // The next wake-up is the next slot less the lead.
    assert_eq!(
        call.poll_timeout(),
        start + Duration::from_millis(80) - LEAD
    );
    // Then one per 20 ms, and a stall of half a second drops nothing.
    let mut now = start;
    for _ in 0..10 {
        now += Duration::from_millis(20);
        let mut n = 0;
        while let Some(tx) = call.poll_transmit(now) {
            frames.push(tx.data.to_vec());
            n += 1;
        }
        assert_eq!(n, 1);
    }
    now += Duration::from_millis(500);
    for _ in 0..100 {
        while let Some(tx) = call.poll_transmit(now) {
            frames.push(tx.data.to_vec());
        }
        now += Duration::from_millis(20);
    }
    // Every frame of the second once, then silence.
    assert!(frames.len() >= 50, "{}", frames.len());
    assert!(frames[50..].iter().all(|f| f.iter().all(|&b| b == 0)));
    assert_eq!(call.stats().send_ticks_skipped, 0);
    // The same audio as over RTP, byte-swapped.
    for (i, (f, r)) in frames.iter().zip(&reference).enumerate() {
        let swapped: Vec<u8> = r.chunks_exact(2).flat_map(|b| [b[1], b[0]]).collect();
        assert_eq!(f, &swapped, "frame {i}");
    }
    // After it, silence again, one frame per slot.
    let later = now + Duration::from_secs(1);
    let tx = call.poll_transmit(later).expect("silence after the reply");
    assert!(tx.data.iter().all(|&b| b == 0));
    assert!(call.poll_transmit(later).is_none());
    assert_eq!(call.stats().sent_audio, 50);
    // The far end's word that the reply began to play is passed on.
    call.reply_heard(later);
    assert!(std::iter::from_fn(|| call.poll_event())
        .any(|e| matches!(e, CallEvent::ReplyHeard { at } if at == later)));
}

#[test]
fn a_far_end_that_sends_nothing_is_heard_as_silence_and_the_turn_ends() {
    let (_, pcm) = read_wav(&fixtures().join("de/script_01_16k.wav"));
    let truth = script_segments("script_01_16k.wav");
    // The first utterance and nothing after it (as Asterisk sends when the
    // caller's side stops writing).
    let end = (truth[0].1 as usize) * 16;
    let bytes = le(&pcm[..end]);
    let t0 = Instant::now();
    let mut call = stream_call(t0);
    let mut now = t0;
    for frame in bytes.chunks(640) {
        call.receive_stream(frame, now);
        while call.poll_transmit(now).is_some() {}
        now += Duration::from_millis(20);
    }
    let heard = call.stats().frames_played;
    let mut ended = None;
    let stop = now + Duration::from_secs(3);
    let mut wakes = 0;
    while now < stop && ended.is_none() {
        let wake = call.poll_timeout().min(stop);
        assert!(wake >= now);
        wakes += 1;
        assert!(wakes < 400, "busy wake-ups: {wakes} by {:?}", now - t0);
        now = wake;
        call.handle_timeout(now);
        while call.poll_transmit(now).is_some() {}
        while let Some(e) = call.poll_event() {
            if let CallEvent::SpeechEnded(u) = e {
                ended = Some((u.end.elapsed, now));
            }
        }
    }
    let (end_at, decided) = ended.expect("the turn ended on the clock's silence");
    assert!(call.stats().frames_played > heard);
    assert!(
        end_at.as_millis().abs_diff(truth[0].1 as u128) <= 300,
        "ends at {end_at:?}, truth {} ms",
        truth[0].1
    );
    eprintln!(
        "utterance ended at {} ms of media, decided {} ms after the last frame came",
        end_at.as_millis(),
        (decided - (t0 + Duration::from_millis(20 * (bytes.len() / 640) as u64))).as_millis()
    );
    assert_eq!(call.stats().underruns, 0, "silence is not an underrun");
}
