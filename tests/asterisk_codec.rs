//! The engine's G.722 against the G.722 of the peer it talks to: a real
//! Asterisk 22.10.1's `codec_g722`, driven by `file convert`. The ITU-T
//! G.722 test sequences are not in any registry these machines reach, so
//! the reference is the implementation every externalMedia call meets:
//! bit for bit, both directions, on tones in both sub-bands, a chirp,
//! seeded noise, clipping-level square waves and German speech.

mod common;
use common::asterisk::{Asterisk, Setup};

use aiagc_engine::codec::{Decoder, Encoder};
use aiagc_engine::Codec;

fn signals() -> Vec<(&'static str, Vec<i16>)> {
    let n = 16000 * 2;
    let sine = |hz: f64, amp: f64| -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (2.0 * std::f64::consts::PI * hz * i as f64 / 16000.0).sin()) as i16)
            .collect()
    };
    let chirp: Vec<i16> = (0..n)
        .map(|i| {
            let t = i as f64 / 16000.0;
            (12000.0 * (2.0 * std::f64::consts::PI * (50.0 * t + 1900.0 * t * t)).sin()) as i16
        })
        .collect();
    let mut state = 0x1234_5678u32;
    let noise: Vec<i16> = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 16) as u16 as i16
        })
        .collect();
    let square: Vec<i16> = (0..n)
        .map(|i| {
            if (i / 23) % 2 == 0 {
                i16::MAX
            } else {
                i16::MIN
            }
        })
        .collect();
    let speech = common::wav16("greet_02_v0_r150_16k.wav");
    vec![
        ("low", sine(440.0, 9000.0)),
        ("high", sine(5300.0, 7000.0)),
        ("chirp", chirp),
        ("noise", noise),
        ("square", square),
        ("speech", speech),
    ]
}

fn le_bytes(x: &[i16]) -> Vec<u8> {
    x.iter().flat_map(|s| s.to_le_bytes()).collect()
}

#[test]
fn g722_is_bit_exact_with_asterisk_both_ways() {
    let ast = Asterisk::start(Setup::default());
    assert!(
        ast.cli("module show like codec_g722")
            .contains("codec_g722.so"),
        "codec_g722 loaded"
    );
    let dir = ast.dir.join("rec");
    for (name, pcm) in signals() {
        // Asterisk converts in whole 20 ms frames: compare whole frames.
        let pcm = &pcm[..pcm.len() / 320 * 320];
        let src = dir.join(format!("{name}.sln16"));
        std::fs::write(&src, le_bytes(pcm)).unwrap();
        let theirs_g722 = dir.join(format!("{name}.g722"));
        let out = ast.cli(&format!(
            "file convert {} {}",
            src.display(),
            theirs_g722.display()
        ));
        let theirs = std::fs::read(&theirs_g722).unwrap_or_else(|e| panic!("{out}: {e}"));

        let mut enc = Encoder::new(Codec::G722).unwrap();
        let mut ours = Vec::new();
        for frame in pcm.chunks(320) {
            let mut payload = [0u8; 160];
            let k = enc.encode(frame, &mut payload).unwrap();
            ours.extend_from_slice(&payload[..k]);
        }
        assert_eq!(ours.len(), theirs.len(), "{name}: encoded length");
        let first = ours.iter().zip(&theirs).position(|(a, b)| a != b);
        assert_eq!(
            first,
            None,
            "{name}: encoders differ from byte {first:?}: ours {:02x?} theirs {:02x?}",
            &ours[..24],
            &theirs[..24]
        );

        // Decoding: Asterisk's bytes through both decoders.
        let back = dir.join(format!("{name}.back.sln16"));
        ast.cli(&format!(
            "file convert {} {}",
            theirs_g722.display(),
            back.display()
        ));
        let theirs_pcm: Vec<i16> = std::fs::read(&back)
            .unwrap()
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        let mut dec = Decoder::new(Codec::G722).unwrap();
        let mut ours_pcm = Vec::new();
        for payload in theirs.chunks(160) {
            let mut out = [0i16; 320];
            let k = dec.decode(payload, &mut out).unwrap();
            ours_pcm.extend_from_slice(&out[..k]);
        }
        assert_eq!(ours_pcm.len(), theirs_pcm.len(), "{name}: decoded length");
        // Asterisk's decoder wraps a QMF output beyond 16 bits around
        // (a full-scale click of the opposite sign); ours saturates. That
        // is the one difference allowed: ours at the rail, theirs wrapped.
        let mut wrapped = 0;
        for (i, (&a, &b)) in ours_pcm.iter().zip(&theirs_pcm).enumerate() {
            if a == b {
                continue;
            }
            let saturated = a == i16::MAX || a == i16::MIN;
            assert!(
                saturated && (a < 0) != (b < 0),
                "{name}: decoders differ at sample {i}: ours {:?}, theirs {:?}",
                &ours_pcm[i..(i + 4).min(ours_pcm.len())],
                &theirs_pcm[i..(i + 4).min(theirs_pcm.len())],
            );
            wrapped += 1;
        }
        eprintln!(
            "{name}: {} bytes and {} samples bit-exact with Asterisk's codec_g722 \
             ({wrapped} overloaded samples saturated where Asterisk wraps)",
            ours.len(),
            ours_pcm.len() - wrapped
        );
        if name != "noise" && name != "square" {
            assert_eq!(
                wrapped, 0,
                "{name}: no overload in a signal below full scale"
            );
        }
    }
}
