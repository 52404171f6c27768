//! A deterministic network impairment model for tests, the simulator and
//! the benchmarks: seeded loss (independent or bursty, Gilbert–Elliott),
//! delay jitter, reordering and duplication.
//!
//! Datagrams go in with their send time and come out with their arrival
//! time; the same seed gives the same arrivals, so every timing bug found
//! with it can be replayed.

use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// What the network does to packets.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Impairment {
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra delay, uniform in `0..=jitter`, per packet.
    pub jitter: Duration,
    /// Independent loss probability (in the good state of a burst model).
    pub loss: f64,
    /// Burst loss: (probability to enter the bad state, probability to leave
    /// it); in the bad state every packet is lost.
    pub burst: Option<(f64, f64)>,
    /// Probability that a packet is held back by 1–3 frames (reordering).
    pub reorder: f64,
    /// Probability that a packet is delivered twice.
    pub duplicate: f64,
}

/// A seeded channel applying an [`Impairment`].
pub struct Network {
    impairment: Impairment,
    rng: rand::rngs::SmallRng,
    in_bad_state: bool,
    order: u64,
    in_flight: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    /// Packets dropped so far.
    pub dropped: u64,
    /// Packets delivered twice so far.
    pub duplicated: u64,
}

impl Network {
    /// A network with `impairment`, seeded with `seed`.
    pub fn new(impairment: Impairment, seed: u64) -> Self {
        Self {
            impairment,
            rng: rand::rngs::SmallRng::seed_from_u64(seed),
            in_bad_state: false,
            order: 0,
            in_flight: BinaryHeap::new(),
            dropped: 0,
            duplicated: 0,
        }
    }

    fn schedule(&mut self, at: Instant, datagram: Vec<u8>) {
        let imp = self.impairment;
        let mut delay = imp.delay;
        if !imp.jitter.is_zero() {
            delay += imp.jitter.mul_f64(self.rng.random::<f64>());
        }
        if imp.reorder > 0.0 && self.rng.random::<f64>() < imp.reorder {
            delay += Duration::from_millis(20 * self.rng.random_range(1..=3));
        }
        self.order += 1;
        self.in_flight
            .push(Reverse((at + delay, self.order, datagram)));
    }

    /// Sends `datagram` at `at`.
    pub fn send(&mut self, datagram: &[u8], at: Instant) {
        if let Some((enter, leave)) = self.impairment.burst {
            let flip = self.rng.random::<f64>();
            self.in_bad_state = if self.in_bad_state {
                flip >= leave
            } else {
                flip < enter
            };
        }
        let lost = self.in_bad_state
            || (self.impairment.loss > 0.0 && self.rng.random::<f64>() < self.impairment.loss);
        if lost {
            self.dropped += 1;
            return;
        }
        self.schedule(at, datagram.to_vec());
        if self.impairment.duplicate > 0.0 && self.rng.random::<f64>() < self.impairment.duplicate {
            self.duplicated += 1;
            self.schedule(at, datagram.to_vec());
        }
    }

    /// When the next datagram arrives.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.peek().map(|Reverse((t, _, _))| *t)
    }

    /// The next datagram that has arrived by `now`, with its arrival time.
    pub fn poll(&mut self, now: Instant) -> Option<(Instant, Vec<u8>)> {
        if self.next_arrival()? <= now {
            self.in_flight.pop().map(|Reverse((t, _, d))| (t, d))
        } else {
            None
        }
    }
}

/// The far end of a call for tests: turns PCM into 20 ms RTP packets the
/// way Asterisk does (random SSRC, continuous sequence and timestamp).
pub struct RtpSender {
    codec: crate::Codec,
    encoder: crate::codec::Encoder,
    payload_type: u8,
    /// Next sequence number.
    pub sequence: u16,
    /// Next timestamp (with [`Self::with_end_stamps`]: the last one sent).
    pub timestamp: u32,
    /// SSRC.
    pub ssrc: u32,
    /// The next packet starts a talk-spurt after silence that was not sent.
    marker_next: bool,
    /// A packet has been sent.
    sent: bool,
    /// Each packet carries the timestamp of its end, as Asterisk's do.
    end_stamps: bool,
}

impl RtpSender {
    /// A sender for `codec` with its Asterisk payload type.
    pub fn new(
        codec: crate::Codec,
        sequence: u16,
        timestamp: u32,
        ssrc: u32,
    ) -> Result<Self, crate::codec::CodecError> {
        Ok(Self {
            codec,
            encoder: crate::codec::Encoder::new(codec)?,
            payload_type: codec.default_payload_type(),
            sequence,
            timestamp,
            ssrc,
            marker_next: false,
            sent: false,
            end_stamps: false,
        })
    }

    /// Stamps each packet with the timestamp of its end instead of its
    /// start, as Asterisk 22.10.1 does (seen in the differential test): a
    /// stream that starts at 0 sends 160 first, and the short last packet
    /// of a playback carries the previous timestamp plus its own length.
    pub fn with_end_stamps(mut self) -> Self {
        self.end_stamps = true;
        self
    }

    /// `samples` of silence that are not sent, as Asterisk does while the
    /// far end makes no sound: the timestamp moves on with the clock and the
    /// next packet carries the marker bit (observed on 22.10.1: a gap of
    /// 1.52 s advanced the µ-law timestamp by 12 168 and set the marker).
    pub fn skip(&mut self, samples: usize) {
        // Before its first packet a stream has no clock yet (Asterisk's
        // first timestamp is the first packet's, however long it waited),
        // and that packet carries no marker.
        if !self.sent {
            return;
        }
        self.timestamp = self.timestamp.wrapping_add(self.codec.ticks(samples));
        self.marker_next = true;
    }

    /// Encodes one frame of PCM at the codec's rate (20 ms, or shorter for
    /// a last packet) as an RTP packet.
    pub fn packet(&mut self, pcm: &[i16]) -> Vec<u8> {
        // Opus only encodes whole frame sizes: pad a short last frame.
        let mut padded = [0i16; 320];
        let pcm = if self.codec == crate::Codec::Opus && pcm.len() < 320 {
            padded[..pcm.len()].copy_from_slice(pcm);
            &padded[..]
        } else {
            pcm
        };
        let ticks = self.codec.ticks(pcm.len());
        if self.end_stamps {
            self.timestamp = self.timestamp.wrapping_add(ticks);
        }
        let mut buf = vec![0u8; crate::packet::MAX_PAYLOAD + 12];
        let encoder = &mut self.encoder;
        let len = crate::packet::write(
            &mut buf,
            self.payload_type,
            self.sequence,
            self.timestamp,
            self.ssrc,
            std::mem::take(&mut self.marker_next),
            |p| encoder.encode(pcm, p).unwrap_or(0),
        )
        .unwrap_or(0);
        buf.truncate(len);
        self.sent = true;
        self.sequence = self.sequence.wrapping_add(1);
        if !self.end_stamps {
            self.timestamp = self.timestamp.wrapping_add(ticks);
        }
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(imp: Impairment, seed: u64) -> Vec<(Duration, Vec<u8>)> {
        let t0 = Instant::now();
        let mut net = Network::new(imp, seed);
        for i in 0..500u32 {
            net.send(&i.to_be_bytes(), t0 + Duration::from_millis(20) * i);
        }
        let mut out = Vec::new();
        while let Some((t, d)) = net.poll(t0 + Duration::from_secs(100)) {
            out.push((t - t0, d));
        }
        out
    }

    #[test]
    fn same_seed_same_arrivals() {
        let imp = Impairment {
            jitter: Duration::from_millis(40),
            loss: 0.1,
            reorder: 0.1,
            duplicate: 0.05,
            ..Default::default()
        };
        assert_eq!(run(imp, 7), run(imp, 7));
        assert_ne!(run(imp, 7), run(imp, 8));
    }

    #[test]
    fn loss_rates_are_roughly_as_configured() {
        let lossy = run(
            Impairment {
                loss: 0.2,
                ..Default::default()
            },
            1,
        );
        assert!((350..450).contains(&lossy.len()), "{}", lossy.len());
        let bursty = run(
            Impairment {
                burst: Some((0.05, 0.3)),
                ..Default::default()
            },
            1,
        );
        // Stationary bad-state share 0.05/(0.05+0.3) ≈ 14 %.
        assert!((380..470).contains(&bursty.len()), "{}", bursty.len());
        let clean = run(Impairment::default(), 1);
        assert_eq!(clean.len(), 500);
        assert!(clean.windows(2).all(|w| w[0].1 < w[1].1));
    }

    #[test]
    fn reordering_and_duplication_happen() {
        let out = run(
            Impairment {
                reorder: 0.2,
                duplicate: 0.1,
                ..Default::default()
            },
            3,
        );
        assert!(out.len() > 500);
        assert!(out.windows(2).any(|w| w[0].1 > w[1].1));
    }

    /// Asterisk's stamps: the end of each packet, a short one by its own
    /// length; a skipped gap moves the clock on either way.
    #[test]
    fn end_stamps_mark_the_end_of_each_packet() {
        let ts = |p: &[u8]| u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        let frame = [100i16; 160];
        let mut start = RtpSender::new(crate::Codec::Ulaw, 1, 160, 7).unwrap();
        let mut end = RtpSender::new(crate::Codec::Ulaw, 1, 0, 7)
            .unwrap()
            .with_end_stamps();
        let a: Vec<u32> = [&frame[..], &frame[..], &frame[..106]]
            .iter()
            .map(|f| ts(&start.packet(f)))
            .collect();
        let b: Vec<u32> = [&frame[..], &frame[..], &frame[..106]]
            .iter()
            .map(|f| ts(&end.packet(f)))
            .collect();
        assert_eq!(a, [160, 320, 480]);
        assert_eq!(b, [160, 320, 426]);
        end.skip(54 + 160);
        assert_eq!(ts(&end.packet(&frame)), 800);
        let mut g722 = RtpSender::new(crate::Codec::G722, 1, 0, 7)
            .unwrap()
            .with_end_stamps();
        assert_eq!(ts(&g722.packet(&[0i16; 320])), 160);
    }
}
