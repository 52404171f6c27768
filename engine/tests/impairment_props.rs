//! Property tests: whatever the network does, `Call` never panics, plays
//! exactly one 20 ms frame per tick, and its output stays bounded PCM.

mod common;

use aiagc_engine::impair::Impairment;
use aiagc_engine::{Call, CallConfig, Codec};
use common::*;
use proptest::prelude::*;
use std::time::{Duration, Instant};

fn impairment() -> impl Strategy<Value = Impairment> {
    (
        0u64..80,
        0u64..120,
        0.0f64..0.4,
        proptest::option::of((0.0f64..0.2, 0.1f64..0.9)),
        0.0f64..0.3,
        0.0f64..0.2,
    )
        .prop_map(
            |(delay, jitter, loss, burst, reorder, duplicate)| Impairment {
                delay: Duration::from_millis(delay),
                jitter: Duration::from_millis(jitter),
                loss,
                burst,
                reorder,
                duplicate,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_impairment_keeps_the_frame_grid(imp in impairment(), seed in any::<u64>(), codec_idx in 0usize..4) {
        let codec = [Codec::Ulaw, Codec::Alaw, Codec::Slin16, Codec::G722][codec_idx];
        let rate = codec.pcm_rate() as usize;
        // 2 s of a tone with a pause, as the far end.
        let pcm: Vec<i16> = (0..rate * 2)
            .map(|i| if (rate / 2..rate).contains(&i) { 0 } else { (6000.0 * (i as f32 * 0.07).sin()) as i16 })
            .collect();
        let t0 = Instant::now();
        let mut config = CallConfig::new(codec, seed);
        config.peer = Some(peer());
        let mut call = Call::new(config, t0).unwrap();
        let total = Duration::from_millis(2600);
        let out = drive(&mut call, &pcm, imp, seed, t0, total, |_, _, _| {});
        let s = call.stats();
        // The first frame plays at the first arrival + initial delay (40 ms).
        let frames = out.frames.len() as u64 / 320;
        prop_assert_eq!(frames, s.frames_played);
        if s.received > 0 {
            let max_frames = (total.as_millis() as u64 - imp.delay.as_millis() as u64 - 40) / 20 + 1;
            prop_assert!(frames <= max_frames, "{} > {}", frames, max_frames);
            prop_assert!(frames + 1 + (imp.jitter.as_millis() as u64 + 60) / 20 + 20 >= max_frames, "{} frames of {}", frames, max_frames);
        }
        prop_assert!(out.frames.iter().all(|x| x.is_finite() && x.abs() <= 1.0));
        // Outbound never stops: one packet per 20 ms.
        prop_assert!((out.sent.len() as i64 - 130).abs() <= 1, "{} sent", out.sent.len());
    }

    #[test]
    fn arbitrary_datagrams_never_panic(datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..200), pt in any::<u8>()) {
        let t0 = Instant::now();
        let mut call = Call::new(CallConfig::new(Codec::Ulaw, 1), t0).unwrap();
        for (i, mut d) in datagrams.into_iter().enumerate() {
            if d.len() >= 2 && i % 2 == 0 {
                d[0] = 0x80 | (d[0] & 0x3F);
                d[1] = pt & 0x7F;
            }
            let now = t0 + Duration::from_millis(7 * i as u64);
            call.receive(peer(), &d, now);
            call.handle_timeout(now);
            while call.poll_transmit(now).is_some() {}
            while call.poll_event().is_some() {}
        }
        let s = call.stats();
        prop_assert_eq!(s.datagrams, s.received + s.malformed + s.payload_type_violations + s.duplicate + s.late + s.foreign_ssrc + s.source_violations);
    }
}
