//! A caller whose first packet arrives in the middle of our reply, after
//! seconds without any RTP: what a real Asterisk does when the far end is
//! silent (a `Local/` channel in `Wait()`, a phone with silence
//! suppression). The echo canceller had never seen the line and judged the
//! caller against a 6 dB echo loss: on the real Asterisk the barge-in came
//! 1.8 s after the caller began (or never) and their first words were lost.
//! In simulated time, with and without the canceller, side by side.

mod common;
use common::*;

use aiagc_engine::{Call, CallConfig, CallEvent, Codec};
use std::time::{Duration, Instant};

struct Run {
    /// From the caller's first voiced packet to the barge-in.
    barge_in_after: Option<Duration>,
    /// Audio (s) of the caller's utterance before its first voiced sample
    /// is lost if this is negative.
    utterance_len: f64,
}

/// Drives `call` in simulated time from `t0` to `end`: each packet is
/// received at its arrival time, the call is ticked as the runtime would
/// (transmits drained), and each event goes to `on_event` with its time.
fn play(
    call: &mut Call,
    packets: &[(Instant, Vec<u8>)],
    t0: Instant,
    end: Instant,
    mut on_event: impl FnMut(CallEvent, Instant),
) {
    let mut now = t0;
    let mut next = 0;
    while now < end {
        while next < packets.len() && packets[next].0 <= now {
            call.receive(peer(), &packets[next].1, packets[next].0);
            next += 1;
        }
        call.handle_timeout(now);
        while call.poll_transmit(now).is_some() {}
        while let Some(e) = call.poll_event() {
            on_event(e, now);
        }
        let due = packets.get(next).map_or(end, |p| p.0);
        now = call
            .poll_timeout()
            .min(due)
            .max(now + Duration::from_micros(1));
    }
}

fn run(codec: Codec, echo: bool, packets_before: bool) -> Run {
    let fx = fixtures().join("de");
    let rate = codec.pcm_rate();
    let tag = if rate == 8000 { "8k" } else { "16k" };
    let (_, reply) = read_wav(&fx.join("hours_02_v1_r150_16k.wav"));
    let (_, reply2) = read_wav(&fx.join("book_07_v1_r150_16k.wav"));
    let (_, caller) = read_wav(&fx.join(format!("book_01_v0_r150_{tag}.wav")));
    let t0 = Instant::now();
    let mut config = CallConfig::new(codec, 3);
    config.peer = Some(peer());
    config.echo.enabled = echo;
    let mut call = Call::new(config, t0).unwrap();
    let reply: Vec<f32> = reply
        .iter()
        .chain(&reply2)
        .map(|&s| s as f32 / 32768.0)
        .collect();
    call.speak(&reply, 16000).unwrap();

    let starts = Duration::from_millis(2500);
    let n = codec.frame_samples();
    let mut sender = aiagc_engine::impair::RtpSender::new(codec, 9, 160, 0xFA4E).unwrap();
    let first_voiced = caller
        .iter()
        .position(|s| s.unsigned_abs() > 600)
        .unwrap_or(0);
    let voiced_at = t0 + starts + Duration::from_secs_f64(first_voiced as f64 / rate as f64);
    let frames_before = if packets_before {
        starts.as_millis() as u64 / 20
    } else {
        0
    };
    let silence = vec![0i16; n];
    let mut packets: Vec<(Instant, Vec<u8>)> = (0..frames_before)
        .map(|i| {
            (
                t0 + Duration::from_millis(20 * i + 10),
                sender.packet(&silence),
            )
        })
        .collect();
    packets.extend(caller.chunks(n).enumerate().map(|(i, c)| {
        (
            t0 + starts + Duration::from_millis(20 * i as u64 + 10),
            sender.packet(c),
        )
    }));
    let end = t0 + starts + Duration::from_secs(5);
    let mut out = Run {
        barge_in_after: None,
        utterance_len: 0.0,
    };
    play(&mut call, &packets, t0, end, |e, now| match e {
        CallEvent::BargeIn { .. } if out.barge_in_after.is_none() => {
            out.barge_in_after = Some(now.saturating_duration_since(voiced_at));
        }
        CallEvent::SpeechEnded(u) if u.barge_in => {
            out.utterance_len = u.samples.len() as f64 / 16000.0;
        }
        _ => {}
    });
    out
}

#[test]
fn caller_after_a_silent_gap_barges_in_at_once() {
    let caller_len = {
        let (_, c) = read_wav(&fixtures().join("de/book_01_v0_r150_8k.wav"));
        c.len() as f64 / 8000.0
    };
    for codec in [Codec::Ulaw, Codec::G722] {
        let gap = run(codec, true, false);
        let without = run(codec, false, false);
        let continuous = run(codec, true, true);
        eprintln!(
            "{codec:?}: barge-in after the caller's first word: canceller {:?}, no canceller {:?}, \
             continuous stream {:?}; utterance {:.2} s / {:.2} s / {:.2} s of {caller_len:.2} s",
            gap.barge_in_after,
            without.barge_in_after,
            continuous.barge_in_after,
            gap.utterance_len,
            without.utterance_len,
            continuous.utterance_len
        );
        let after = gap.barge_in_after.expect("a barge-in");
        assert!(
            after < Duration::from_millis(400),
            "{codec:?}: barge-in {after:?} after the caller began"
        );
        assert!(
            gap.utterance_len >= caller_len - 0.3,
            "{codec:?}: the whole sentence: {:.2} s of {caller_len:.2} s",
            gap.utterance_len
        );
    }
}

/// Two utterances with seconds of no RTP between them (the sender's
/// timestamps move on over the gap and the marker is set, as Asterisk
/// does): the second is heard as whole as the first, and the pause is no
/// underrun.
#[test]
fn an_utterance_after_a_pause_in_the_stream_is_heard_whole() {
    for codec in [Codec::Ulaw, Codec::G722] {
        let fx = fixtures().join("de");
        let tag = if codec.pcm_rate() == 8000 {
            "8k"
        } else {
            "16k"
        };
        let (_, a) = read_wav(&fx.join(format!("book_01_v0_r150_{tag}.wav")));
        let (_, b) = read_wav(&fx.join(format!("book_10_v0_r150_{tag}.wav")));
        let t0 = Instant::now();
        let mut config = CallConfig::new(codec, 5);
        config.peer = Some(peer());
        let mut call = Call::new(config, t0).unwrap();
        let n = codec.frame_samples();
        let mut sender = aiagc_engine::impair::RtpSender::new(codec, 9, 160, 0xBEEF).unwrap();
        let mut packets = Vec::new();
        let mut at = t0 + Duration::from_millis(500);
        for c in a.chunks(n) {
            packets.push((at, sender.packet(c)));
            at += Duration::from_millis(20);
        }
        // Four seconds without a packet.
        sender.skip(n * 200);
        at += Duration::from_secs(4);
        for c in b.chunks(n) {
            packets.push((at, sender.packet(c)));
            at += Duration::from_millis(20);
        }
        let end = at + Duration::from_secs(2);
        let mut lens = Vec::new();
        play(&mut call, &packets, t0, end, |e, _| {
            if let CallEvent::SpeechEnded(u) = e {
                lens.push(u.samples.len() as f64 / 16000.0);
            }
        });
        let stats = call.stats();
        let rate = codec.pcm_rate() as f64;
        let (la, lb) = (a.len() as f64 / rate, b.len() as f64 / rate);
        assert_eq!(lens.len(), 2, "{codec:?}: two utterances: {lens:?}");
        assert!(
            lens[0] >= la - 0.4 && lens[1] >= lb - 0.4,
            "{codec:?}: {lens:?} of {la:.2}/{lb:.2}"
        );
        assert_eq!(stats.underruns, 0, "a pause of the far end is no underrun");
        assert_eq!(stats.lost + stats.late, 0);
    }
}
