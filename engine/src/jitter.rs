//! Adaptive jitter buffer for one inbound RTP stream.
//!
//! Packets are stored by extended sequence number in a fixed ring of
//! preallocated slots (no allocation after construction). The caller pops
//! one packet per playout tick; the buffer answers with the next packet in
//! sequence, a loss (a later packet is already here, so the missing one is
//! given up), or an underrun (nothing to play yet: the caller conceals and
//! the playout delay grows by one frame).
//!
//! Delay adaptation: the RFC 3550 interarrival jitter sets a target depth
//! (`2·J + 1 frame`, clamped to `[min_delay, max_delay]`); when the buffer
//! has held more than the target plus one frame for 10 ticks in a row, one
//! packet is dropped to shrink the delay again. Underruns grow it.
//!
//! Talk-spurts: a far end that sends nothing while it is silent (a real
//! Asterisk does not send RTP while a `Local/` channel waits, nor a phone
//! with silence suppression) leaves the buffer empty for seconds. The first
//! packet after such a pause is held for the target delay before it plays,
//! as the very first packet is, so the spurt gets the same protection
//! against jitter as a continuous stream ([`JitterBuffer::pop_at`]).
//!
//! Streams: sequence numbers wrap (extended to 64 bits); a jump of more than
//! [`RESYNC_DISTANCE`] packets either way restarts the stream; a new SSRC is
//! adopted when the old one has been quiet for 100 ms or after
//! [`SSRC_SWITCH_PACKETS`] packets in a row from the new one (a stray
//! packet from a second stream never resets the call).

use crate::packet::{RtpView, MAX_PAYLOAD};
use std::time::{Duration, Instant};

/// Sequence distance beyond which a packet restarts the stream.
pub const RESYNC_DISTANCE: u64 = 3000;
/// Consecutive packets of a new SSRC that make it the stream.
pub const SSRC_SWITCH_PACKETS: u32 = 3;
const FRAME: Duration = Duration::from_millis(20);

/// Bounds of the playout delay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterConfig {
    /// Smallest target delay.
    pub min_delay: Duration,
    /// Largest target delay.
    pub max_delay: Duration,
    /// Delay before the first packet is played.
    pub initial_delay: Duration,
    /// Number of packet slots (the reorder window).
    pub slots: usize,
}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(120),
            initial_delay: Duration::from_millis(40),
            slots: 32,
        }
    }
}

/// What happened to a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Stored in order.
    Stored,
    /// Stored, but after a packet with a higher sequence number.
    Reordered,
    /// Already stored or already played.
    Duplicate,
    /// Its playout time has passed (it was concealed as lost).
    Late,
    /// A packet of an SSRC that is not (yet) the stream's.
    ForeignSsrc,
    /// The stream restarted with this packet (SSRC change or sequence jump).
    Resynced,
    /// The payload does not fit a slot.
    TooLarge,
}

/// What the next playout tick gets.
#[derive(Debug, PartialEq, Eq)]
pub enum Pop<'a> {
    /// The next packet in sequence.
    Packet {
        /// Payload bytes.
        payload: &'a [u8],
        /// Its RTP timestamp.
        timestamp: u32,
        /// Its extended sequence number.
        sequence: u64,
    },
    /// The next packet is missing while later ones are here: conceal it.
    /// `next` is the packet after it, when present (Opus FEC).
    Lost {
        /// Payload of the following packet, if buffered.
        next: Option<&'a [u8]>,
    },
    /// Nothing to play yet: conceal without advancing.
    Underrun,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Empty,
    Buffered,
    Played,
}

#[derive(Clone, Copy)]
struct Slot {
    state: SlotState,
    seq: u64,
    timestamp: u32,
    len: u16,
}

/// The adaptive jitter buffer (see the module documentation).
pub struct JitterBuffer {
    config: JitterConfig,
    slots: Vec<Slot>,
    storage: Vec<u8>,
    /// Next extended sequence number to play; `None` before the first packet.
    next: Option<u64>,
    highest: u64,
    ssrc: Option<u32>,
    last_arrival: Option<Instant>,
    candidate: Option<(u32, u32)>,
    epoch: Option<Instant>,
    clock_rate: f64,
    last_transit: Option<f64>,
    jitter: f64,
    over_target_ticks: u32,
    dropped_for_delay: u64,
    resyncs: u64,
    /// Pops in a row that found nothing to play.
    empty_run: u32,
    /// A new talk-spurt's first packet plays no earlier than this.
    hold_until: Option<Instant>,
}

/// Empty pops in a row after which the far end is taken to have paused
/// (60 ms: longer than any packet is late on a working line).
const PAUSE_TICKS: u32 = 3;

impl JitterBuffer {
    /// A buffer for a stream with the given RTP clock rate.
    pub fn new(config: JitterConfig, clock_rate: u32) -> Self {
        let slots = config.slots.max(4);
        Self {
            config,
            slots: vec![
                Slot {
                    state: SlotState::Empty,
                    seq: 0,
                    timestamp: 0,
                    len: 0
                };
                slots
            ],
            storage: vec![0; slots * MAX_PAYLOAD],
            next: None,
            highest: 0,
            ssrc: None,
            last_arrival: None,
            candidate: None,
            epoch: None,
            clock_rate: clock_rate as f64,
            last_transit: None,
            jitter: 0.0,
            over_target_ticks: 0,
            dropped_for_delay: 0,
            resyncs: 0,
            empty_run: 0,
            hold_until: None,
        }
    }

    /// [`JitterBuffer::pop`] on the playout tick at `now`, holding the
    /// first packet of a talk-spurt until the target delay has passed.
    pub fn pop_at(&mut self, now: Instant) -> Pop<'_> {
        if let Some(h) = self.hold_until {
            if now < h {
                self.empty_run = self.empty_run.saturating_add(1);
                return Pop::Underrun;
            }
            self.hold_until = None;
        }
        self.pop()
    }

    /// RFC 3550 interarrival jitter.
    pub fn jitter(&self) -> Duration {
        Duration::from_secs_f64(self.jitter / self.clock_rate)
    }

    /// The delay the buffer aims to hold.
    pub fn target_delay(&self) -> Duration {
        (self.jitter() * 2 + FRAME).clamp(self.config.min_delay, self.config.max_delay)
    }

    /// Delay before the first packet is played.
    pub fn initial_delay(&self) -> Duration {
        self.config.initial_delay
    }

    /// Packets buffered ahead of the playout point.
    pub fn depth(&self) -> usize {
        match self.next {
            Some(next) if self.highest >= next => (next..=self.highest)
                .filter(|&s| {
                    let slot = &self.slots[self.index(s)];
                    slot.state == SlotState::Buffered && slot.seq == s
                })
                .count(),
            _ => 0,
        }
    }

    /// Packets dropped to bring the delay back to target.
    pub fn dropped_for_delay(&self) -> u64 {
        self.dropped_for_delay
    }

    /// Stream restarts (SSRC changes and sequence jumps).
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// Whether any packet has been accepted yet.
    pub fn started(&self) -> bool {
        self.next.is_some()
    }

    fn index(&self, seq: u64) -> usize {
        (seq % self.slots.len() as u64) as usize
    }

    /// Extends a 16-bit sequence number to the one nearest `highest`.
    fn extend(&self, seq: u16) -> u64 {
        let base = self.highest & !0xFFFF;
        let candidates = [base.wrapping_sub(0x1_0000), base, base + 0x1_0000];
        candidates
            .into_iter()
            .map(|b| b.wrapping_add(seq as u64))
            .filter(|&c| c < u64::MAX / 2)
            .min_by_key(|&c| c.abs_diff(self.highest))
            .unwrap_or(seq as u64)
    }

    fn restart(&mut self, ssrc: u32, ext: u64) {
        for slot in &mut self.slots {
            slot.state = SlotState::Empty;
        }
        self.ssrc = Some(ssrc);
        self.candidate = None;
        self.next = Some(ext);
        self.highest = ext;
        self.last_transit = None;
        self.over_target_ticks = 0;
    }

    fn update_jitter(&mut self, timestamp: u32, arrival: Instant) {
        let epoch = *self.epoch.get_or_insert(arrival);
        let arrival_units =
            arrival.saturating_duration_since(epoch).as_secs_f64() * self.clock_rate;
        let transit = arrival_units - timestamp as f64;
        if let Some(last) = self.last_transit {
            let mut d = (transit - last).abs();
            // A timestamp jump is a resync, not jitter.
            if d > self.clock_rate {
                d = self.jitter;
            }
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    /// Stores one packet that arrived at `arrival`.
    pub fn push(&mut self, packet: &RtpView<'_>, arrival: Instant) -> Push {
        if packet.payload.len() > MAX_PAYLOAD {
            return Push::TooLarge;
        }
        let mut outcome = Push::Stored;
        match self.ssrc {
            None => {
                self.restart(packet.ssrc, packet.sequence as u64 + 0x1_0000);
            }
            Some(current) if current != packet.ssrc => {
                let quiet = self.last_arrival.is_none_or(|t| {
                    arrival.saturating_duration_since(t) > Duration::from_millis(100)
                });
                let count = match self.candidate {
                    Some((s, n)) if s == packet.ssrc => n + 1,
                    _ => 1,
                };
                self.candidate = Some((packet.ssrc, count));
                if !quiet && count < SSRC_SWITCH_PACKETS {
                    return Push::ForeignSsrc;
                }
                self.resyncs += 1;
                self.restart(packet.ssrc, packet.sequence as u64 + 0x1_0000);
                outcome = Push::Resynced;
            }
            Some(_) => self.candidate = None,
        }
        let mut ext = self.extend(packet.sequence);
        if ext.abs_diff(self.highest) > RESYNC_DISTANCE {
            self.resyncs += 1;
            self.restart(packet.ssrc, packet.sequence as u64 + 0x1_0000);
            ext = packet.sequence as u64 + 0x1_0000;
            outcome = Push::Resynced;
        }
        self.last_arrival = Some(arrival);
        let next = self.next.unwrap_or(ext);
        let idx = self.index(ext);
        if ext < next {
            let slot = &self.slots[idx];
            return if slot.seq == ext && slot.state == SlotState::Played {
                Push::Duplicate
            } else {
                Push::Late
            };
        }
        if self.slots[idx].seq == ext && self.slots[idx].state == SlotState::Buffered {
            return Push::Duplicate;
        }
        // Too far ahead for the ring: give up the oldest packets.
        let window = self.slots.len() as u64;
        if ext >= next + window {
            self.next = Some(ext + 1 - window);
        }
        self.update_jitter(packet.timestamp, arrival);
        if self.empty_run >= PAUSE_TICKS && self.depth() == 0 && self.hold_until.is_none() {
            self.hold_until = Some(arrival + self.target_delay());
        }
        let slot = &mut self.slots[idx];
        slot.state = SlotState::Buffered;
        slot.seq = ext;
        slot.timestamp = packet.timestamp;
        slot.len = packet.payload.len() as u16;
        let start = idx * MAX_PAYLOAD;
        self.storage[start..start + packet.payload.len()].copy_from_slice(packet.payload);
        if ext < self.highest && outcome == Push::Stored {
            outcome = Push::Reordered;
        }
        self.highest = self.highest.max(ext);
        outcome
    }

    fn buffered(&self, seq: u64) -> bool {
        let slot = &self.slots[self.index(seq)];
        slot.state == SlotState::Buffered && slot.seq == seq
    }

    /// Takes what the next playout tick plays (see [`Pop`]).
    pub fn pop(&mut self) -> Pop<'_> {
        let Some(mut next) = self.next else {
            self.empty_run = self.empty_run.saturating_add(1);
            return Pop::Underrun;
        };
        // Shrink the delay when the buffer has run deep for a while.
        let target_packets = (self.target_delay().as_millis() / FRAME.as_millis()) as usize;
        if self.depth() > target_packets + 1 {
            self.over_target_ticks += 1;
            if self.over_target_ticks >= 10 && self.buffered(next) && self.buffered(next + 1) {
                let idx = self.index(next);
                self.slots[idx].state = SlotState::Played;
                next += 1;
                self.dropped_for_delay += 1;
                self.over_target_ticks = 0;
            }
        } else {
            self.over_target_ticks = 0;
        }
        if self.buffered(next) {
            self.empty_run = 0;
            self.next = Some(next + 1);
            let idx = self.index(next);
            let slot = &mut self.slots[idx];
            slot.state = SlotState::Played;
            let start = idx * MAX_PAYLOAD;
            return Pop::Packet {
                payload: &self.storage[start..start + slot.len as usize],
                timestamp: slot.timestamp,
                sequence: next,
            };
        }
        if self.highest > next {
            // The packet is missing and a later one is here: give it up.
            let idx = self.index(next);
            if self.slots[idx].seq != next {
                self.slots[idx].seq = next;
                self.slots[idx].state = SlotState::Empty;
            }
            self.next = Some(next + 1);
            let after = next + 1;
            let aidx = self.index(after);
            let next_payload = if self.buffered(after) {
                let start = aidx * MAX_PAYLOAD;
                Some(&self.storage[start..start + self.slots[aidx].len as usize])
            } else {
                None
            };
            self.empty_run = 0;
            return Pop::Lost { next: next_payload };
        }
        self.next = Some(next);
        self.empty_run = self.empty_run.saturating_add(1);
        Pop::Underrun
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> RtpView<'_> {
        RtpView {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: ts,
            ssrc,
            payload,
        }
    }

    fn seq_of(p: Pop<'_>) -> Option<u64> {
        match p {
            Pop::Packet { sequence, .. } => Some(sequence & 0xFFFF),
            _ => None,
        }
    }

    #[test]
    fn reorders_and_drops_duplicates() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default(), 8000);
        assert_eq!(jb.push(&view(10, 0, 1, &[1]), t0), Push::Stored);
        assert_eq!(jb.push(&view(12, 320, 1, &[3]), t0), Push::Stored);
        assert_eq!(jb.push(&view(11, 160, 1, &[2]), t0), Push::Reordered);
        assert_eq!(jb.push(&view(11, 160, 1, &[2]), t0), Push::Duplicate);
        assert_eq!(seq_of(jb.pop()), Some(10));
        assert_eq!(seq_of(jb.pop()), Some(11));
        assert_eq!(jb.push(&view(11, 160, 1, &[2]), t0), Push::Duplicate);
        assert_eq!(seq_of(jb.pop()), Some(12));
        assert_eq!(jb.pop(), Pop::Underrun);
    }

    #[test]
    fn declares_loss_only_when_a_later_packet_is_here() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default(), 8000);
        jb.push(&view(1, 0, 1, &[1]), t0);
        assert_eq!(seq_of(jb.pop()), Some(1));
        assert_eq!(jb.pop(), Pop::Underrun);
        jb.push(&view(3, 320, 1, &[3]), t0);
        assert_eq!(
            jb.pop(),
            Pop::Lost {
                next: Some(&[3][..])
            }
        );
        // The lost packet arriving now is late.
        assert_eq!(jb.push(&view(2, 160, 1, &[2]), t0), Push::Late);
        assert_eq!(seq_of(jb.pop()), Some(3));
    }

    #[test]
    fn sequence_wraps_around() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default(), 8000);
        for (i, seq) in [65534u16, 65535, 0, 1].into_iter().enumerate() {
            assert_ne!(
                jb.push(&view(seq, i as u32 * 160, 7, &[0]), t0),
                Push::Resynced
            );
        }
        let got: Vec<_> = (0..4).map(|_| seq_of(jb.pop())).collect();
        assert_eq!(got, vec![Some(65534), Some(65535), Some(0), Some(1)]);
    }

    #[test]
    fn stray_ssrc_is_ignored_but_a_real_change_resyncs() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default(), 8000);
        jb.push(&view(100, 0, 1, &[1]), t0);
        assert_eq!(jb.push(&view(5000, 0, 2, &[9]), t0), Push::ForeignSsrc);
        assert_eq!(jb.push(&view(101, 160, 1, &[1]), t0), Push::Stored);
        // Three in a row from the new SSRC: it becomes the stream.
        assert_eq!(jb.push(&view(7, 0, 3, &[9]), t0), Push::ForeignSsrc);
        assert_eq!(jb.push(&view(8, 160, 3, &[9]), t0), Push::ForeignSsrc);
        assert_eq!(jb.push(&view(9, 320, 3, &[9]), t0), Push::Resynced);
        assert_eq!(jb.resyncs(), 1);
        assert_eq!(seq_of(jb.pop()), Some(9));
        // After 100 ms of quiet a new SSRC takes over at once.
        let later = t0 + Duration::from_millis(300);
        assert_eq!(jb.push(&view(1, 0, 4, &[9]), later), Push::Resynced);
    }

    #[test]
    fn sequence_jump_restarts_the_stream() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default(), 8000);
        jb.push(&view(100, 0, 1, &[1]), t0);
        assert_eq!(jb.push(&view(40000, 0, 1, &[2]), t0), Push::Resynced);
        assert_eq!(seq_of(jb.pop()), Some(40000));
    }

    #[test]
    fn jitter_estimate_follows_arrival_spread_and_sets_the_target() {
        let t0 = Instant::now();
        let mut steady = JitterBuffer::new(JitterConfig::default(), 8000);
        let mut jumpy = JitterBuffer::new(JitterConfig::default(), 8000);
        for i in 0..200u32 {
            let ts = i * 160;
            steady.push(&view(i as u16, ts, 1, &[0]), t0 + FRAME * i);
            let wobble = Duration::from_millis(if i % 2 == 0 { 0 } else { 30 });
            jumpy.push(&view(i as u16, ts, 1, &[0]), t0 + FRAME * i + wobble);
            steady.pop();
            jumpy.pop();
        }
        assert!(steady.jitter() < Duration::from_millis(1));
        assert!(
            jumpy.jitter() > Duration::from_millis(20),
            "{:?}",
            jumpy.jitter()
        );
        assert_eq!(steady.target_delay(), Duration::from_millis(20));
        assert!(jumpy.target_delay() > Duration::from_millis(60));
        assert!(jumpy.target_delay() <= Duration::from_millis(120));
    }

    #[test]
    fn a_deep_buffer_is_drained_to_target() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default(), 8000);
        // A 10-packet backlog (a network stall released at once), then a steady stream.
        for i in 0..10u16 {
            jb.push(&view(i, i as u32 * 160, 1, &[0]), t0 + FRAME * 10);
        }
        let mut played = 0;
        for i in 10..200u16 {
            jb.push(&view(i, i as u32 * 160, 1, &[0]), t0 + FRAME * i as u32);
            if let Pop::Packet { .. } = jb.pop() {
                played += 1;
            }
        }
        assert!(jb.depth() <= 3, "depth {}", jb.depth());
        assert!(
            jb.dropped_for_delay() >= 7,
            "dropped {}",
            jb.dropped_for_delay()
        );
        assert_eq!(played + jb.dropped_for_delay() as usize + jb.depth(), 200);
    }

    #[test]
    fn too_far_ahead_gives_up_the_oldest() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default(), 8000);
        jb.push(&view(0, 0, 1, &[0]), t0);
        jb.push(&view(100, 16000, 1, &[1]), t0);
        // Slot window is 32: playout jumps to 69, and the first pops are losses.
        let mut lost = 0;
        loop {
            match jb.pop() {
                Pop::Lost { .. } => lost += 1,
                Pop::Packet { sequence, .. } => {
                    assert_eq!(sequence & 0xFFFF, 100);
                    break;
                }
                Pop::Underrun => panic!("underrun with a packet buffered"),
            }
        }
        assert_eq!(lost, 31);
    }
}
