//! Hot-path benchmarks of the per-call media graph (see BENCHMARKS.md).
//!
//! `media_graph/inbound/<codec>`: one 20 ms frame from datagram to VAD
//! decision (parse → jitter buffer → decode → resample to 16 kHz → energy
//! VAD → endpointer). `media_graph/outbound/<codec>`: one 20 ms reply frame
//! (resample → encode → packetize). `media_graph/duplex/<codec>`: both in
//! one call while a reply plays, the inbound frame being the reply's own
//! echo (120 ms later, 12 dB down, re-encoded) under −60 dBFS noise, so
//! the echo canceller and the gate do their work on every frame. Plus the
//! jitter buffer under loss and reordering, each resampler and each codec
//! alone.

use aiagc_engine::codec::{Decoder, Encoder};
use aiagc_engine::impair::{Impairment, Network, RtpSender};
use aiagc_engine::jitter::{JitterBuffer, JitterConfig};
use aiagc_engine::resample::Resampler;
use aiagc_engine::vad::{EnergyVad, Vad};
use aiagc_engine::BargeInPolicy;
use aiagc_engine::{packet, Call, CallConfig, Codec};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const FRAME: Duration = Duration::from_millis(20);

fn voiced(n: usize, offset: usize) -> Vec<i16> {
    (0..n)
        .map(|k| {
            let t = (offset + k) as f32;
            (6000.0 * (t * 0.05).sin() * (0.6 + 0.4 * (t * 0.0016).sin())) as i16
        })
        .collect()
}

/// Every format, in the order the figures are reported.
const CODECS: [Codec; 5] = [
    Codec::Ulaw,
    Codec::G722,
    Codec::Slin16,
    Codec::Alaw,
    Codec::Opus,
];

fn peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40000))
}

fn inbound(c: &mut Criterion) {
    let mut group = c.benchmark_group("media_graph/inbound");
    group.throughput(Throughput::Elements(1));
    for codec in CODECS {
        let n = codec.frame_samples();
        let mut sender = RtpSender::new(codec, 0, 0, 7).unwrap();
        let templates: Vec<Vec<u8>> = (0..50).map(|i| sender.packet(&voiced(n, i * n))).collect();
        group.bench_function(BenchmarkId::from_parameter(codec.asterisk_format()), |b| {
            let t0 = Instant::now();
            let mut config = CallConfig::new(codec, 1);
            config.peer = Some(peer());
            let mut call = Call::new(config, t0).unwrap();
            let mut i: u64 = 0;
            let mut packet = templates[0].clone();
            b.iter(|| {
                let now = t0 + FRAME * i as u32;
                packet.clone_from(&templates[(i % 50) as usize]);
                packet[2..4].copy_from_slice(&(i as u16).to_be_bytes());
                packet[4..8]
                    .copy_from_slice(&((i as u32).wrapping_mul(codec.ticks(n))).to_be_bytes());
                call.receive(peer(), black_box(&packet), now);
                call.handle_timeout(now);
                while call.poll_event().is_some() {}
                i += 1;
            });
        });
    }
    group.finish();
}

fn outbound(c: &mut Criterion) {
    let mut group = c.benchmark_group("media_graph/outbound");
    group.throughput(Throughput::Elements(1));
    for codec in CODECS {
        // TTS output at 22.05 kHz (a Piper voice), 10 s a batch.
        let reply: Vec<f32> = voiced(22050 * 10, 0)
            .iter()
            .map(|&s| s as f32 / 32768.0)
            .collect();
        group.bench_function(BenchmarkId::from_parameter(codec.asterisk_format()), |b| {
            b.iter_custom(|iters| {
                let t0 = Instant::now();
                let mut config = CallConfig::new(codec, 1);
                config.peer = Some(peer());
                let mut call = Call::new(config, t0).unwrap();
                let mut elapsed = Duration::ZERO;
                let mut done = 0u64;
                let mut tick = 0u32;
                while done < iters {
                    let start = Instant::now();
                    call.speak(&reply, 22050).unwrap();
                    let frames = (iters - done).min(500);
                    for _ in 0..frames {
                        let now = t0 + FRAME * tick;
                        if let Some(t) = call.poll_transmit(now) {
                            black_box(t.data);
                        }
                        tick += 1;
                    }
                    elapsed += start
                        .elapsed()
                        .mul_f64(frames as f64 / 500.0_f64.max(frames as f64));
                    call.stop_speaking();
                    done += frames;
                }
                elapsed
            });
        });
    }
    group.finish();
}

/// A call speaking `reply` for `frames` frames: its outbound packets.
fn played(codec: Codec, reply: &[f32], frames: u32, t0: Instant) -> Vec<Vec<u8>> {
    let mut call = Call::new(duplex_config(codec), t0).unwrap();
    call.speak(reply, 22050).unwrap();
    (0..frames)
        .map(|k| {
            call.poll_transmit(t0 + FRAME * k)
                .map(|t| t.data.to_vec())
                .unwrap_or_default()
        })
        .collect()
}

fn duplex_config(codec: Codec) -> CallConfig {
    let mut config = CallConfig::new(codec, 1);
    config.peer = Some(peer());
    // The reply plays on whatever the caller's side holds: the figure is
    // of the steady state with both directions busy.
    config.barge_in = BargeInPolicy::Continue;
    config
}

/// The caller's side of `sent`: each frame's audio 6 frames (120 ms)
/// later, 12 dB down, over −60 dBFS noise, encoded by the caller's sender.
fn echoes(codec: Codec, sent: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let n = codec.frame_samples();
    let mut decoder = Decoder::new(codec).unwrap();
    let mut sender = RtpSender::new(codec, 0, 0, 7).unwrap();
    let mut seed = 0x2545_f491u32;
    let mut pcm = vec![0i16; 2 * n];
    let decoded: Vec<Vec<i16>> = sent
        .iter()
        .map(|p| match packet::parse(p) {
            Ok(rtp) => {
                let k = decoder.decode(rtp.payload, &mut pcm).unwrap_or(0);
                pcm[..k.min(n)].to_vec()
            }
            Err(_) => vec![0; n],
        })
        .collect();
    (0..sent.len())
        .map(|k| {
            let frame: Vec<i16> = (0..n)
                .map(|i| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    let noise = (seed % 65) as i32 - 32; // about −60 dBFS
                    let echo = k
                        .checked_sub(6)
                        .and_then(|j| decoded[j].get(i))
                        .map_or(0, |&s| i32::from(s) / 4);
                    (echo + noise).clamp(-32768, 32767) as i16
                })
                .collect();
            sender.packet(&frame)
        })
        .collect()
}

fn duplex(c: &mut Criterion) {
    let mut group = c.benchmark_group("media_graph/duplex");
    group.throughput(Throughput::Elements(1));
    // 10 s of reply: 500 frames each way per round.
    let reply: Vec<f32> = voiced(22050 * 10, 0)
        .iter()
        .map(|&s| s as f32 / 32768.0)
        .collect();
    for codec in [Codec::Ulaw, Codec::G722, Codec::Slin16] {
        let t0 = Instant::now();
        let inbound = echoes(codec, &played(codec, &reply, 500, t0));
        group.bench_function(BenchmarkId::from_parameter(codec.asterisk_format()), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut done = 0u64;
                let mut round = 0u32;
                while done < iters {
                    // One call per round of 500 frames, as `played` made
                    // them: what it sends is what the echoes were made of.
                    let base = t0 + FRAME * (500 * round);
                    let mut call = Call::new(duplex_config(codec), base).unwrap();
                    call.speak(&reply, 22050).unwrap();
                    let frames = (iters - done).min(500) as u32;
                    let start = Instant::now();
                    for k in 0..frames {
                        let now = base + FRAME * k;
                        if let Some(t) = call.poll_transmit(now) {
                            black_box(t.data);
                        }
                        call.receive(peer(), black_box(&inbound[k as usize]), now);
                        call.handle_timeout(now);
                        while call.poll_event().is_some() {}
                    }
                    elapsed += start.elapsed();
                    done += u64::from(frames);
                    round += 1;
                }
                elapsed
            });
        });
    }
    group.finish();
}

fn jitter_buffer(c: &mut Criterion) {
    let mut sender = RtpSender::new(Codec::Ulaw, 0, 0, 7).unwrap();
    let t0 = Instant::now();
    let mut net = Network::new(
        Impairment {
            loss: 0.1,
            reorder: 0.1,
            jitter: Duration::from_millis(30),
            ..Default::default()
        },
        5,
    );
    for i in 0..2000u32 {
        net.send(&sender.packet(&[0; 160]), t0 + FRAME * i);
    }
    let mut arrivals = Vec::new();
    while let Some(a) = net.poll(t0 + Duration::from_secs(3600)) {
        arrivals.push(a);
    }
    c.bench_function("jitter_buffer/loss10_reorder10", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let mut jb = JitterBuffer::new(JitterConfig::default(), 8000);
                let start = Instant::now();
                for (at, d) in &arrivals {
                    let v = packet::parse(d).unwrap();
                    black_box(jb.push(&v, *at));
                    black_box(jb.pop());
                }
                elapsed += start.elapsed();
                done += arrivals.len() as u64;
            }
            elapsed.mul_f64(iters as f64 / done as f64)
        });
    });
}

fn resamplers(c: &mut Criterion) {
    let mut group = c.benchmark_group("resample");
    for (from, to) in [
        (8000, 16000),
        (16000, 8000),
        (22050, 8000),
        (22050, 16000),
        (24000, 16000),
        (48000, 16000),
    ] {
        let mut r = Resampler::new(from, to).unwrap();
        let input: Vec<f32> = voiced(r.input_chunk(), 0)
            .iter()
            .map(|&s| s as f32 / 32768.0)
            .collect();
        let mut out = vec![0.0; r.output_chunk()];
        group.bench_function(format!("{from}_to_{to}"), |b| {
            b.iter(|| r.process_chunk(black_box(&input), &mut out).unwrap())
        });
    }
    group.finish();
}

fn codecs(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    for codec in [
        Codec::Ulaw,
        Codec::Alaw,
        Codec::G722,
        Codec::Slin16,
        Codec::Opus,
    ] {
        let pcm = voiced(codec.frame_samples(), 0);
        let mut enc = Encoder::new(codec).unwrap();
        let mut dec = Decoder::new(codec).unwrap();
        let mut payload = vec![0u8; 1500];
        let len = enc.encode(&pcm, &mut payload).unwrap();
        let mut out = vec![0i16; 1920];
        group.bench_function(format!("encode/{}", codec.asterisk_format()), |b| {
            b.iter(|| enc.encode(black_box(&pcm), &mut payload).unwrap())
        });
        let encoded = payload[..len].to_vec();
        group.bench_function(format!("decode/{}", codec.asterisk_format()), |b| {
            b.iter(|| dec.decode(black_box(&encoded), &mut out).unwrap())
        });
    }
    let frame: Vec<f32> = voiced(320, 0).iter().map(|&s| s as f32 / 32768.0).collect();
    let mut vad = EnergyVad::default();
    group.bench_function("vad/energy", |b| {
        b.iter(|| vad.speech_probability(black_box(&frame)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = inbound, outbound, duplex, jitter_buffer, resamplers, codecs
}
criterion_main!(benches);
