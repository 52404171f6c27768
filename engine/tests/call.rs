//! `Call` end to end in simulated time: fixture speech through RTP, the
//! jitter buffer, codecs, resampler, VAD and endpointer; replies out.

mod common;

use aiagc_engine::impair::Impairment;
use aiagc_engine::packet::parse;
use aiagc_engine::{Call, CallConfig, CallEvent, Codec, MediaPosition, Rejection, SourcePolicy};
use common::*;
use std::time::{Duration, Instant};

fn config(codec: Codec) -> CallConfig {
    let mut c = CallConfig::new(codec, 42);
    c.peer = Some(peer());
    c
}

fn speech_ranges(out: &Outcome) -> Vec<(u64, u64)> {
    out.events
        .iter()
        .filter_map(|(_, e)| match e {
            CallEvent::SpeechEnded(u) => Some((
                u.start.elapsed.as_millis() as u64,
                u.end.elapsed.as_millis() as u64,
            )),
            _ => None,
        })
        .collect()
}

/// The three utterances of a German caller script are found, each within
/// 100 ms of its true start and end (media timeline), for every codec.
#[test]
fn german_script_utterances_are_segmented_for_each_codec() {
    let truth = script_segments("script_01_16k.wav");
    for (codec, file) in [
        (Codec::Ulaw, "script_01_8k.wav"),
        (Codec::Alaw, "script_01_8k.wav"),
        (Codec::Slin16, "script_01_16k.wav"),
        (Codec::Opus, "script_01_16k.wav"),
    ] {
        let (_, pcm) = read_wav(&fixtures().join("de").join(file));
        let t0 = Instant::now();
        let mut call = Call::new(config(codec), t0).unwrap();
        let secs = pcm.len() as u64 * 1000 / codec.pcm_rate() as u64 + 1500;
        let out = drive(
            &mut call,
            &pcm,
            Impairment::default(),
            1,
            t0,
            Duration::from_millis(secs),
            |_, _, _| {},
        );
        let found = speech_ranges(&out);
        assert_eq!(
            found.len(),
            truth.len(),
            "{codec:?}: {found:?} vs {truth:?}"
        );
        for ((fs, fe), (ts, te)) in found.iter().zip(&truth) {
            assert!(fs.abs_diff(*ts) <= 100, "{codec:?} start {fs} vs {ts}");
            assert!(fe.abs_diff(*te) <= 100, "{codec:?} end {fe} vs {te}");
        }
        let stats = call.stats();
        assert_eq!(
            stats.lost + stats.late + stats.malformed + stats.decode_errors,
            0,
            "{codec:?} {stats:?}"
        );
        // Utterance audio is 16 kHz and holds the speech plus pre-roll and tail.
        for (_, e) in &out.events {
            if let CallEvent::SpeechEnded(u) = e {
                let dur_ms = u.samples.len() as u64 / 16;
                let speech_ms = (u.end.elapsed - u.start.elapsed).as_millis() as u64;
                assert!(
                    dur_ms >= speech_ms + 200 && dur_ms <= speech_ms + 320,
                    "{dur_ms} vs {speech_ms}"
                );
            }
        }
    }
}

/// With 10 % loss, 40 ms jitter and reordering the same utterances are
/// still found, every tick still plays one frame, and losses are concealed.
#[test]
fn impaired_network_still_segments_and_keeps_time() {
    let truth = script_segments("script_02_8k.wav");
    let (_, pcm) = read_wav(&fixtures().join("de/script_02_8k.wav"));
    let imp = Impairment {
        delay: Duration::from_millis(10),
        jitter: Duration::from_millis(40),
        loss: 0.1,
        reorder: 0.05,
        duplicate: 0.02,
        ..Default::default()
    };
    let t0 = Instant::now();
    let mut call = Call::new(config(Codec::Ulaw), t0).unwrap();
    let total = Duration::from_millis(pcm.len() as u64 / 8 + 1500);
    let out = drive(&mut call, &pcm, imp, 9, t0, total, |_, _, _| {});
    assert_eq!(
        speech_ranges(&out).len(),
        truth.len(),
        "{:?}",
        speech_ranges(&out)
    );
    let s = call.stats();
    assert!(s.lost > 0 && s.concealed_frames >= s.lost, "{s:?}");
    assert!(s.duplicate > 0 && s.reordered > 0, "{s:?}");
    assert!(s.jitter > Duration::from_millis(5), "{s:?}");
    // Frames played = time since the first frame / 20 ms.
    let playing_since = Duration::from_millis(10 + 40);
    let expected = ((total - playing_since).as_millis() / 20) as i64;
    assert!(
        (s.frames_played as i64 - expected).abs() <= 3,
        "{} vs {expected}",
        s.frames_played
    );
}

/// Caller speech over a reply raises BargeIn, and the very next packet is
/// the fade-out: the reply stops within one frame.
#[test]
fn barge_in_stops_the_reply_within_one_frame() {
    let (_, speech) = read_wav(&fixtures().join("de/book_01_v0_r150_8k.wav"));
    // 1.5 s of silence, then the caller speaks over our reply.
    let mut pcm = vec![0i16; 12_000];
    pcm.extend_from_slice(&speech);
    let reply: Vec<f32> = (0..16000 * 5)
        .map(|i| 0.3 * (i as f32 * 0.05).sin())
        .collect();
    let t0 = Instant::now();
    let mut call = Call::new(config(Codec::Ulaw), t0).unwrap();
    call.speak(&reply, 16000).unwrap();
    let out = drive(
        &mut call,
        &pcm,
        Impairment::default(),
        1,
        t0,
        Duration::from_secs(5),
        |_, _, _| {},
    );
    let (barge_at, at) = out
        .events
        .iter()
        .find_map(|(t, e)| match e {
            CallEvent::BargeIn { at } => Some((*t, *at)),
            _ => None,
        })
        .expect("barge-in raised");
    // Detected within 300 ms of the caller's speech start (1.5 s on the media timeline).
    assert!(
        at.elapsed >= Duration::from_millis(1400) && at.elapsed <= Duration::from_millis(1800),
        "{at:?}"
    );
    let audio_after: Vec<_> = out
        .sent
        .iter()
        .filter(|(t, p)| {
            *t > barge_at
                && parse(p)
                    .unwrap()
                    .payload
                    .iter()
                    .any(|&b| b != 0xFF && b != 0x7F)
        })
        .collect();
    assert!(
        audio_after.len() <= 1,
        "{} audio packets after barge-in",
        audio_after.len()
    );
    assert_eq!(call.stats().replies_interrupted, 1);
    assert!(out
        .events
        .iter()
        .any(|(_, e)| matches!(e, CallEvent::PlayoutFinished)));
}

/// Outbound: one packet per 20 ms, continuous sequence and timestamp, the
/// reply's first packet marked, even when the driver wakes up late.
#[test]
fn outbound_is_paced_and_continuous() {
    let t0 = Instant::now();
    let mut call = Call::new(config(Codec::Slin16), t0).unwrap();
    call.speak(&vec![0.2f32; 8000], 16000).unwrap(); // 500 ms
    let mut sent = Vec::new();
    let mut now = t0;
    for step in 0..100u64 {
        // A driver that is up to 15 ms late, never early.
        now = t0 + Duration::from_millis(20 * step + (step * 7) % 15);
        while let Some(t) = call.poll_transmit(now) {
            let v = parse(t.data).unwrap();
            sent.push((v.sequence, v.timestamp, v.marker, v.payload.len()));
            assert_eq!(t.destination, Some(peer()));
        }
    }
    assert_eq!(sent.len(), 100);
    for w in sent.windows(2) {
        assert_eq!(w[1].0, w[0].0.wrapping_add(1));
        assert_eq!(w[1].1, w[0].1.wrapping_add(320));
    }
    assert!(sent.iter().all(|s| s.3 == 640));
    assert_eq!(sent.iter().filter(|s| s.2).count(), 1);
    assert!(sent[0].2);
    // A 200 ms stall: overdue slots are skipped, not burst.
    let stalled = now + Duration::from_millis(200);
    let mut burst = 0;
    while call.poll_transmit(stalled).is_some() {
        burst += 1;
    }
    assert!(burst <= 3, "burst of {burst}");
    assert!(call.stats().send_ticks_skipped >= 7);
}

/// A driver that wakes up too late for a reply's first slot: that slot is
/// skipped, and the first packet actually sent carries the marker instead,
/// so the far end still sees where the reply starts.
#[test]
fn marker_survives_a_skipped_first_slot() {
    let t0 = Instant::now();
    let mut call = Call::new(config(Codec::Ulaw), t0).unwrap();
    // 200 ms of silence packets, in time.
    let mut now = t0;
    for step in 0..10u64 {
        now = t0 + Duration::from_millis(20 * step);
        while call.poll_transmit(now).is_some() {}
    }
    call.speak(&vec![0.2f32; 8000], 8000).unwrap(); // 1 s
                                                    // The next wake-up is 150 ms late: the reply's first slots go unsent.
    now += Duration::from_millis(170);
    let mut marked = Vec::new();
    for step in 0..30u64 {
        let at = now + Duration::from_millis(20 * step);
        while let Some(t) = call.poll_transmit(at) {
            let v = parse(t.data).unwrap();
            marked.push(v.marker);
        }
    }
    assert!(call.stats().send_ticks_skipped >= 5);
    assert!(marked[0], "the first packet sent after the stall is marked");
    assert_eq!(marked.iter().filter(|m| **m).count(), 1);
}

/// Bad input of every kind is counted and reported, never fatal.
#[test]
fn malformed_and_foreign_input_is_counted_not_fatal() {
    let t0 = Instant::now();
    let mut call = Call::new(config(Codec::Ulaw), t0).unwrap();
    let good = {
        let mut s = aiagc_engine::impair::RtpSender::new(Codec::Ulaw, 1, 160, 9).unwrap();
        s.packet(&[0; 160])
    };
    let stranger = "127.0.0.1:40001".parse().unwrap();
    call.receive(stranger, &good, t0);
    call.receive(peer(), &[], t0);
    call.receive(peer(), &[0x80; 11], t0);
    call.receive(peer(), &vec![0x55; 65_536], t0);
    let mut wrong_pt = good.clone();
    wrong_pt[1] = 18;
    call.receive(peer(), &wrong_pt, t0);
    call.receive(peer(), &good, t0);
    let s = call.stats();
    assert_eq!(
        (
            s.source_violations,
            s.malformed,
            s.payload_type_violations,
            s.received
        ),
        (1, 3, 1, 1)
    );
    let kinds: Vec<_> = std::iter::from_fn(|| call.poll_event())
        .filter_map(|e| match e {
            CallEvent::InputRejected { kind, .. } => Some(kind),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            Rejection::Source,
            Rejection::Malformed,
            Rejection::Malformed,
            Rejection::PayloadType
        ]
    );

    // NAT mode accepts another port of the same address.
    let mut cfg = config(Codec::Ulaw);
    cfg.source_policy = SourcePolicy::AddressOnly;
    let mut nat = Call::new(cfg, t0).unwrap();
    nat.receive(stranger, &good, t0);
    assert_eq!(nat.stats().received, 1);

    // Latching takes the first sender, wherever it is, and then only it.
    let mut cfg = config(Codec::Ulaw);
    cfg.source_policy = "latch".parse().unwrap();
    let mut latched = Call::new(cfg, t0).unwrap();
    let elsewhere = "10.1.2.3:5000".parse().unwrap();
    latched.receive(elsewhere, &good, t0);
    latched.receive(peer(), &good, t0);
    assert_eq!(latched.peer(), Some(elsewhere));
    assert_eq!(
        (latched.stats().received, latched.stats().source_violations),
        (1, 1)
    );
    for (name, policy) in [
        ("strict", SourcePolicy::Strict),
        ("address", SourcePolicy::AddressOnly),
        ("latch", SourcePolicy::Latch),
    ] {
        assert_eq!(name.parse::<SourcePolicy>(), Ok(policy));
    }
    assert!("any".parse::<SourcePolicy>().unwrap_err().contains("latch"));
}

/// A short last packet (Asterisk ends a playback with one) and an SSRC
/// change keep the frame grid intact.
#[test]
fn short_packets_and_ssrc_change_keep_the_grid() {
    let t0 = Instant::now();
    let mut call = Call::new(config(Codec::Ulaw), t0).unwrap();
    let mut a = aiagc_engine::impair::RtpSender::new(Codec::Ulaw, 500, 0, 1).unwrap();
    let mut b = aiagc_engine::impair::RtpSender::new(Codec::Ulaw, 9000, 777_000, 2).unwrap();
    for i in 0..100u32 {
        let now = t0 + Duration::from_millis(20 * i as u64);
        let p = if i < 40 {
            a.packet(&[1000; 160])
        } else if i == 40 {
            a.packet(&[1000; 106])
        } else {
            b.packet(&[-1000; 160])
        };
        call.receive(peer(), &p, now);
        call.handle_timeout(now);
    }
    let s = call.stats();
    assert_eq!(s.resyncs, 1, "{s:?}");
    assert_eq!(s.frames_played, 98, "{s:?}");
    assert!(s.foreign_ssrc <= 2);
}

/// Turn-taking in simulated time: the caller's pause is offered 120 ms
/// after the last voiced frame; a driver that judges the words complete
/// ends the turn there (the utterance is the pause's audio), one that does
/// not waits for the 500 ms hangover.
#[test]
fn ending_the_turn_at_a_pause_saves_the_rest_of_the_hangover() {
    let (_, speech) = read_wav(&fixtures().join("de/book_10_v0_r150_8k.wav"));
    let mut pcm = vec![0i16; 4000];
    pcm.extend_from_slice(&speech);
    pcm.extend(vec![0i16; 16000]);
    let run = |end_early: bool| {
        let t0 = Instant::now();
        let mut call = Call::new(config(Codec::Ulaw), t0).unwrap();
        let out = drive(
            &mut call,
            &pcm,
            Impairment::default(),
            1,
            t0,
            Duration::from_secs(4),
            |call, e, _| {
                if let (CallEvent::SpeechPaused(p), true) = (e, end_early) {
                    call.end_turn(p.id);
                }
            },
        );
        let paused = out.events.iter().find_map(|(t, e)| match e {
            CallEvent::SpeechPaused(p) => Some((*t - t0, p.clone())),
            _ => None,
        });
        let ended = out.events.iter().find_map(|(t, e)| match e {
            CallEvent::SpeechEnded(u) => Some((*t - t0, u.clone())),
            _ => None,
        });
        (paused.expect("pause offered"), ended.expect("turn ended"))
    };
    let ((p_at, pause), (e_at, utterance)) = run(true);
    assert_eq!(e_at, p_at, "ended in the same wake-up as the pause");
    assert_eq!(utterance.pause, Some(pause.id));
    assert_eq!(utterance.samples, pause.samples);
    let ((p_at2, _), (e_at2, late)) = run(false);
    assert_eq!(p_at2, p_at);
    let waited = e_at2 - p_at2;
    assert!(
        waited >= Duration::from_millis(360) && waited <= Duration::from_millis(400),
        "{waited:?}"
    );
    assert_eq!(
        late.samples, pause.samples,
        "no speech after the pause: same audio"
    );
}

/// Model-gated turn ends in simulated time: "Ich hätte gern einen Termin
/// am" + 700 ms + "Dienstag um halb drei." A driver whose turn model
/// answers "incomplete" at pauses inside the first part's silence extends
/// the wait to a 1.5 s ceiling and is asked again as the pause grows; after
/// the second part it answers "complete" and the turn ends at the first
/// pause. The fixed 500 ms hangover cuts the same turn in two.
#[test]
fn a_turn_model_keeps_a_mid_sentence_pause_and_ends_the_turn_at_once() {
    let (_, a) = read_wav(&fixtures().join("de/part_01_v0_r150_8k.wav"));
    let (_, b) = read_wav(&fixtures().join("de/part_02_v0_r150_8k.wav"));
    let mut pcm = vec![0i16; 4000];
    pcm.extend_from_slice(&a);
    let second_starts = Duration::from_millis(pcm.len() as u64 / 8 + 700);
    pcm.extend(vec![0i16; 8 * 700]);
    pcm.extend_from_slice(&b);
    pcm.extend(vec![0i16; 16000]);
    let run = |gated: bool| {
        let t0 = Instant::now();
        let mut cfg = config(Codec::Ulaw);
        if !gated {
            cfg.endpoint.pause = None;
        }
        let mut call = Call::new(cfg, t0).unwrap();
        let mut asked = Vec::new();
        let out = drive(
            &mut call,
            &pcm,
            Impairment::default(),
            1,
            t0,
            Duration::from_secs(6),
            |call, e, now| {
                if let CallEvent::SpeechPaused(p) = e {
                    // The stand-in model: complete once the second part was heard.
                    let complete = p.end.elapsed > second_starts;
                    asked.push((now - t0, p.id, complete));
                    if complete {
                        call.end_turn(p.id);
                    } else {
                        call.extend_turn(p.id, Duration::from_millis(1000));
                    }
                }
            },
        );
        let ends: Vec<(Duration, MediaPosition)> = out
            .events
            .iter()
            .filter_map(|(t, e)| match e {
                CallEvent::SpeechEnded(u) => Some((*t - t0, u.end)),
                _ => None,
            })
            .collect();
        (ends, asked)
    };
    let (ends, asked) = run(true);
    assert_eq!(ends.len(), 1, "one turn: {ends:?}");
    assert!(
        ends[0].1.elapsed > second_starts,
        "ended after the second part"
    );
    let incomplete = asked.iter().filter(|(_, _, c)| !c).count();
    assert!(incomplete >= 3, "asked again as the pause grew: {asked:?}");
    let (at, _, _) = asked.iter().find(|(_, _, c)| *c).unwrap();
    assert_eq!(*at, ends[0].0, "ended at the pause that said complete");
    let (fixed, _) = run(false);
    assert_eq!(
        fixed.len(),
        2,
        "the fixed hangover splits the turn: {fixed:?}"
    );
}
