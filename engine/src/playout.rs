//! Outbound audio: the reply queue and the RTP packetizer.
//!
//! Reply audio enters at any rate through [`Playout::speak`], is resampled
//! once to the codec's PCM rate and queued as `i16`. The packetizer takes
//! exactly one 20 ms frame per tick (the caller's clock decides when), so
//! the RTP timestamp advances by one frame per tick whether audio, silence
//! or nothing is sent: the timeline stays continuous across replies and
//! pauses. Each reply starts with a 5 ms fade-in and the marker bit; a
//! stopped reply ends with a 5 ms fade-out, never a click.
//!
//! A reply can also be *paused* (barge-in that may turn out to be a "mhm"):
//! it fades out as on a stop, but what was left stays held, and
//! [`Playout::resume`] plays it again from the paused position or from the
//! start of the sentence it was in. Sentence boundaries are the `speak`
//! calls.

use crate::codec::{Codec, CodecError, Encoder};
use crate::packet::{self, PacketError};
use crate::resample::{ResampleError, Resampler};
use std::collections::VecDeque;

/// What the call sends while the agent is silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SilencePolicy {
    /// Encoded silence every 20 ms. The default: Asterisk's bridge and any
    /// NAT see a steady stream, and the first reply packet needs no
    /// re-synchronisation on the far side.
    #[default]
    SendSilence,
    /// Nothing while silent (timestamps still advance, so the far side sees
    /// a gap of the right length); saves bandwidth on large hosts.
    Suppress,
}

/// Error while queueing reply audio.
#[derive(Debug, thiserror::Error)]
pub enum PlayoutError {
    /// Resampler could not be built or run for that rate.
    #[error(transparent)]
    Resample(#[from] ResampleError),
    /// The queue would exceed its bound.
    #[error("reply queue full ({0} samples)")]
    Full(usize),
}

/// An outbound frame the packetizer produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Bytes written to the buffer.
    pub len: usize,
    /// Whether it carried reply audio (not silence).
    pub audio: bool,
    /// Whether the reply queue ran empty with this frame.
    pub finished: bool,
    /// Whether it is the first packet of a reply.
    pub first_of_reply: bool,
}

const FADE_MS: usize = 5;

/// The reply queue plus the packetizer of one call.
pub struct Playout {
    codec: Codec,
    payload_type: u8,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    encoder: Encoder,
    queue: VecDeque<i16>,
    max_queue: usize,
    resamplers: Vec<Resampler>,
    frame: Vec<i16>,
    /// The next audio frame starts a reply (marker + fade-in).
    spurt_start: bool,
    policy: SilencePolicy,
    /// Remaining samples of each queued sentence, oldest first.
    sentences: VecDeque<usize>,
    /// Samples of the current sentence already sent (for a resume from
    /// its start).
    sent_of_sentence: Vec<i16>,
    /// A paused reply: everything that was queued at the pause.
    held: Option<VecDeque<i16>>,
}

/// Where a paused reply goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResumeFrom {
    /// Where it was paused (nothing is heard twice).
    Position,
    /// The start of the sentence it was paused in (the sentence is heard
    /// whole, as a person would restart it).
    #[default]
    SentenceStart,
}

impl Playout {
    /// A packetizer with the given random initial sequence, timestamp and SSRC.
    pub fn new(
        codec: Codec,
        payload_type: u8,
        policy: SilencePolicy,
        initial: (u16, u32, u32),
        max_queue: std::time::Duration,
    ) -> Result<Self, CodecError> {
        let rate = codec.pcm_rate() as usize;
        Ok(Self {
            codec,
            payload_type,
            sequence: initial.0,
            timestamp: initial.1,
            ssrc: initial.2,
            encoder: Encoder::new(codec)?,
            queue: VecDeque::with_capacity(rate * 2),
            max_queue: (rate as u128 * max_queue.as_millis() / 1000) as usize,
            resamplers: Vec::new(),
            frame: vec![0; codec.frame_samples()],
            spurt_start: true,
            policy,
            sentences: VecDeque::new(),
            sent_of_sentence: Vec::new(),
            held: None,
        })
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Whether reply audio is queued (and not paused).
    pub fn is_speaking(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Whether a reply is paused (held, not sent).
    pub fn is_paused(&self) -> bool {
        self.held.is_some()
    }

    /// Held reply audio of a paused reply, in codec samples.
    pub fn held_samples(&self) -> usize {
        self.held.as_ref().map_or(0, VecDeque::len)
    }

    /// Queued reply audio, in codec samples.
    pub fn queued_samples(&self) -> usize {
        self.queue.len()
    }

    /// Queues reply audio (mono, any rate that is a multiple of 50 Hz). One
    /// call is one complete segment (a sentence): its resampler tail is
    /// flushed, so segments play back to back without loss.
    pub fn speak(&mut self, pcm: &[f32], sample_rate: u32) -> Result<(), PlayoutError> {
        let out_rate = self.codec.pcm_rate();
        let ratio = out_rate as f64 / sample_rate.max(1) as f64;
        let expected = (pcm.len() as f64 * ratio) as usize + out_rate as usize / 10;
        if self.queue.len() + self.held_samples() + expected > self.max_queue {
            return Err(PlayoutError::Full(self.max_queue));
        }
        let idx = match self
            .resamplers
            .iter()
            .position(|r| r.rates() == (sample_rate, out_rate))
        {
            Some(i) => i,
            None => {
                self.resamplers.push(Resampler::new(sample_rate, out_rate)?);
                self.resamplers.len() - 1
            }
        };
        let queue = self.held.as_mut().unwrap_or(&mut self.queue);
        let before = queue.len();
        let to_i16 = |s: &f32| (s.clamp(-1.0, 1.0) * 32767.0) as i16;
        let resampler = &mut self.resamplers[idx];
        let delay = resampler.delay_samples();
        // Drop the resampler's leading delay and its flush padding: the
        // queue gets exactly the segment's duration.
        let mut skip = delay;
        let mut remaining =
            (pcm.len() as u64 * out_rate as u64 / sample_rate.max(1) as u64) as usize;
        let mut push = |out: &[f32]| {
            let start = skip.min(out.len());
            skip -= start;
            let take = (out.len() - start).min(remaining);
            remaining -= take;
            queue.extend(out[start..start + take].iter().map(to_i16));
        };
        resampler.reset();
        resampler.push(pcm, &mut push)?;
        resampler.flush(&mut push)?;
        let added = self.held.as_ref().unwrap_or(&self.queue).len() - before;
        if added > 0 {
            self.sentences.push_back(added);
        }
        Ok(())
    }

    /// Drops the queued reply, fading out over 5 ms so the cut is silent.
    /// Returns whether anything was playing.
    pub fn stop(&mut self) -> bool {
        let held = self.held.take().is_some_and(|h| !h.is_empty());
        self.sentences.clear();
        self.sent_of_sentence.clear();
        if self.queue.is_empty() {
            return held;
        }
        self.fade_out();
        true
    }

    /// Pauses the reply: it fades out within 5 ms as on a stop, and what
    /// was queued is held for [`Playout::resume`]. Returns whether anything
    /// was playing.
    pub fn pause(&mut self) -> bool {
        if self.held.is_some() || self.queue.is_empty() {
            return false;
        }
        self.held = Some(self.queue.clone());
        self.fade_out();
        true
    }

    /// Plays a paused reply again from `from`; returns the samples that
    /// will be heard a second time (`None`: nothing was paused).
    pub fn resume(&mut self, from: ResumeFrom) -> Option<usize> {
        let mut held = self.held.take()?;
        let mut again = 0;
        if from == ResumeFrom::SentenceStart && !self.sent_of_sentence.is_empty() {
            again = self.sent_of_sentence.len();
            for &s in self.sent_of_sentence.iter().rev() {
                held.push_front(s);
            }
            if let Some(first) = self.sentences.front_mut() {
                *first += again;
            }
            self.sent_of_sentence.clear();
        }
        self.queue = held;
        self.spurt_start = true;
        Some(again)
    }

    /// The far end dropped the last `samples` of what was sent before they
    /// played (a stream transport flushed its queue at a pause): a paused
    /// reply gets them back in front of what it holds, so that a resume
    /// from the paused position starts where the caller stopped hearing,
    /// and a resume from the sentence's start does not count them as heard
    /// twice. Never across a sentence boundary (the one before is done).
    /// Returns the samples put back.
    pub fn unheard(&mut self, samples: usize) -> usize {
        let Some(held) = self.held.as_mut() else {
            return 0;
        };
        let k = samples.min(self.sent_of_sentence.len());
        let keep = self.sent_of_sentence.len() - k;
        for &s in self.sent_of_sentence[keep..].iter().rev() {
            held.push_front(s);
        }
        self.sent_of_sentence.truncate(keep);
        if let Some(first) = self.sentences.front_mut() {
            *first += k;
        }
        k
    }

    /// Keeps the next 5 ms of the queue, fading to zero, and drops the rest.
    fn fade_out(&mut self) {
        let fade = (self.codec.pcm_rate() as usize * FADE_MS / 1000).min(self.queue.len());
        self.queue.truncate(fade);
        for (i, s) in self.queue.iter_mut().enumerate() {
            *s = (*s as f32 * (1.0 - (i + 1) as f32 / fade as f32)) as i16;
        }
    }

    /// Books `n` sent samples (in `frame[..n]`) against the sentences.
    fn account(&mut self, n: usize) {
        let mut left = n;
        let mut at = 0;
        while left > 0 {
            let Some(first) = self.sentences.front_mut() else {
                break;
            };
            let take = left.min(*first);
            self.sent_of_sentence
                .extend_from_slice(&self.frame[at..at + take]);
            *first -= take;
            left -= take;
            at += take;
            if *first == 0 {
                self.sentences.pop_front();
                self.sent_of_sentence.clear();
            }
        }
    }

    /// The PCM (codec rate) of the last tick: what the caller heard.
    pub fn last_frame(&self) -> &[i16] {
        &self.frame
    }

    /// Produces the packet of one 20 ms tick into `buf`, or `None` when the
    /// silence policy sends nothing; the timestamp advances either way.
    pub fn tick(&mut self, buf: &mut [u8]) -> Result<Option<Sent>, PacketError> {
        let n = self.frame.len();
        let audio = !self.queue.is_empty();
        let mut finished = false;
        let first_of_reply = audio && self.spurt_start;
        if audio {
            let take = n.min(self.queue.len());
            for (dst, src) in self.frame.iter_mut().zip(self.queue.drain(..take)) {
                *dst = src;
            }
            self.frame[take..].fill(0);
            if self.held.is_none() {
                // The fade of a pause is not part of the sentence.
                self.account(take);
            }
            if first_of_reply {
                let fade = self.codec.pcm_rate() as usize * FADE_MS / 1000;
                for (i, s) in self.frame.iter_mut().take(fade).enumerate() {
                    *s = (*s as f32 * i as f32 / fade as f32) as i16;
                }
            }
            self.spurt_start = false;
            // A paused reply has not finished; its resume starts a new spurt.
            finished = self.queue.is_empty() && self.held.is_none();
            if self.queue.is_empty() && self.held.is_some() {
                self.spurt_start = true;
            }
        } else {
            self.frame.fill(0);
            self.spurt_start = true;
        }
        let send = audio || self.policy == SilencePolicy::SendSilence;
        let timestamp = self.timestamp;
        self.timestamp = self.timestamp.wrapping_add(self.codec.ticks(n));
        if !send {
            return Ok(None);
        }
        let encoder = &mut self.encoder;
        let frame = &self.frame;
        let mut encode_error = false;
        let len = packet::write(
            buf,
            self.payload_type,
            self.sequence,
            timestamp,
            self.ssrc,
            first_of_reply,
            |p| {
                encoder.encode(frame, p).unwrap_or_else(|_| {
                    encode_error = true;
                    0
                })
            },
        )?;
        if encode_error {
            return Err(PacketError::BufferTooSmall(buf.len()));
        }
        self.sequence = self.sequence.wrapping_add(1);
        Ok(Some(Sent {
            len,
            audio,
            finished,
            first_of_reply,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::parse;
    use std::time::Duration;

    fn playout(policy: SilencePolicy) -> Playout {
        Playout::new(
            Codec::Ulaw,
            0,
            policy,
            (65534, u32::MAX - 200, 77),
            Duration::from_secs(30),
        )
        .unwrap()
    }

    #[test]
    fn timestamps_are_continuous_and_marker_starts_each_reply() {
        let mut p = playout(SilencePolicy::SendSilence);
        let mut buf = [0u8; 1500];
        let tone: Vec<f32> = (0..1600).map(|i| 0.3 * (i as f32 * 0.3).sin()).collect(); // 100 ms at 16k
        let mut seen = Vec::new();
        for tick in 0..20 {
            if tick == 3 || tick == 12 {
                p.speak(&tone, 16000).unwrap();
            }
            let sent = p.tick(&mut buf).unwrap().unwrap();
            let v = parse(&buf[..sent.len]).unwrap();
            seen.push((v.sequence, v.timestamp, v.marker, sent.audio));
            assert_eq!(v.payload.len(), 160);
            assert_eq!(v.ssrc, 77);
        }
        for w in seen.windows(2) {
            assert_eq!(w[1].0, w[0].0.wrapping_add(1));
            assert_eq!(w[1].1, w[0].1.wrapping_add(160));
        }
        let markers: Vec<usize> = seen
            .iter()
            .enumerate()
            .filter(|(_, s)| s.2)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(markers, vec![3, 12]);
        // 100 ms of audio = 5 frames per reply.
        assert_eq!(seen.iter().filter(|s| s.3).count(), 10);
    }

    #[test]
    fn suppressed_silence_sends_nothing_but_keeps_the_clock() {
        let mut p = playout(SilencePolicy::Suppress);
        let mut buf = [0u8; 1500];
        assert!(p.tick(&mut buf).unwrap().is_none());
        assert!(p.tick(&mut buf).unwrap().is_none());
        p.speak(&[0.2; 320], 16000).unwrap();
        let sent = p.tick(&mut buf).unwrap().unwrap();
        let v = parse(&buf[..sent.len]).unwrap();
        assert_eq!(v.timestamp, (u32::MAX - 200).wrapping_add(320));
        assert_eq!(v.sequence, 65534);
        assert!(v.marker);
    }

    #[test]
    fn stop_fades_out_and_empties_within_one_frame() {
        let mut p = playout(SilencePolicy::SendSilence);
        p.speak(&vec![0.5; 16000], 16000).unwrap();
        let mut buf = [0u8; 1500];
        p.tick(&mut buf).unwrap();
        assert!(p.stop());
        assert!(p.queued_samples() <= 40);
        let sent = p.tick(&mut buf).unwrap().unwrap();
        assert!(sent.finished);
        let v = parse(&buf[..sent.len]).unwrap();
        let pcm: Vec<i16> = v
            .payload
            .iter()
            .map(|&b| crate::codec::g711::ulaw_decode(b))
            .collect();
        // The fade ramps down: no step larger than the starting level / fade length * 2.
        let steps = pcm
            .windows(2)
            .map(|w| (w[1] as i32 - w[0] as i32).abs())
            .max()
            .unwrap_or(0);
        assert!(steps < 16384 / 40 * 2 + 600, "step {steps}");
        assert_eq!(*pcm.last().unwrap_or(&1), 0);
        assert!(!p.is_speaking());
    }

    /// Decoded PCM of the next tick, and whether it finished the reply.
    fn tick_pcm(p: &mut Playout, buf: &mut [u8]) -> (Vec<i16>, Sent) {
        let sent = p.tick(buf).unwrap().unwrap();
        let v = parse(&buf[..sent.len]).unwrap();
        let pcm = v
            .payload
            .iter()
            .map(|&b| crate::codec::g711::ulaw_decode(b))
            .collect();
        (pcm, sent)
    }

    #[test]
    fn a_paused_reply_is_held_and_resumes_where_it_stopped_or_at_its_sentence() {
        // Two sentences of 100 ms (5 frames at 8 kHz: 800 samples each),
        // levels that tell them apart.
        for from in [ResumeFrom::Position, ResumeFrom::SentenceStart] {
            let mut p = playout(SilencePolicy::SendSilence);
            let mut buf = [0u8; 1500];
            p.speak(&[0.25; 1600], 16000).unwrap();
            p.speak(&[0.5; 1600], 16000).unwrap();
            assert_eq!(p.queued_samples(), 1600);
            for _ in 0..7 {
                tick_pcm(&mut p, &mut buf); // 2 frames into the second sentence
            }
            assert!(p.pause());
            assert!(!p.pause(), "already paused");
            assert!(p.is_paused());
            assert_eq!(p.held_samples(), 1600 - 7 * 160);
            // The fade, then silence; never "finished" while paused.
            let (_, sent) = tick_pcm(&mut p, &mut buf);
            assert!(!sent.finished);
            for _ in 0..3 {
                let (pcm, sent) = tick_pcm(&mut p, &mut buf);
                assert!(!sent.audio && !sent.finished);
                assert!(pcm.iter().all(|&s| s == 0));
            }
            // More of the reply arrives while paused: it is held behind.
            p.speak(&[0.125; 320], 16000).unwrap();
            let again = p.resume(from).unwrap();
            assert!(!p.is_paused());
            let expect_again = if from == ResumeFrom::Position {
                0
            } else {
                2 * 160
            };
            assert_eq!(again, expect_again, "{from:?}");
            let mut frames = Vec::new();
            loop {
                let (pcm, sent) = tick_pcm(&mut p, &mut buf);
                frames.push((pcm, sent));
                if sent.finished {
                    break;
                }
            }
            assert!(frames[0].1.first_of_reply, "a resume starts a new spurt");
            // 3 (or 5) frames of the second sentence, 1 of the third.
            assert_eq!(frames.len(), 1 + 3 + expect_again / 160, "{from:?}");
            let level = |pcm: &[i16]| pcm[80..].iter().map(|&s| s as i32).sum::<i32>() / 80;
            assert!((level(&frames[1].0) - 16384).abs() < 1200);
            assert!((level(&frames.last().unwrap().0) - 4096).abs() < 400);
            assert_eq!(p.resume(from), None, "nothing paused");
        }
    }

    #[test]
    fn audio_the_far_end_dropped_at_a_pause_is_held_again() {
        for from in [ResumeFrom::Position, ResumeFrom::SentenceStart] {
            let mut p = playout(SilencePolicy::SendSilence);
            let mut buf = [0u8; 1500];
            p.speak(&[0.25; 1600], 16000).unwrap();
            p.speak(&[0.5; 1600], 16000).unwrap();
            for _ in 0..8 {
                tick_pcm(&mut p, &mut buf); // 3 frames into the second sentence
            }
            assert_eq!(p.unheard(160), 0, "nothing paused: nothing to hold");
            assert!(p.pause());
            // The last 2 frames never played; asking for 5 goes no further
            // back than the sentence.
            assert_eq!(p.unheard(2 * 160), 2 * 160);
            assert_eq!(p.held_samples(), 1600 - 8 * 160 + 2 * 160);
            assert_eq!(p.unheard(5 * 160), 160, "back to the sentence's start");
            assert_eq!(p.held_samples(), 800);
            let again = p.resume(from).unwrap();
            assert_eq!(again, 0, "{from:?}: nothing heard twice");
            tick_pcm(&mut p, &mut buf); // the resume's fade-in
            let mut frames = 1;
            loop {
                let (pcm, sent) = tick_pcm(&mut p, &mut buf);
                frames += 1;
                let level = pcm[80..].iter().map(|&s| s as i32).sum::<i32>() / 80;
                assert!((level - 16384).abs() < 1200, "the second sentence: {level}");
                if sent.finished {
                    break;
                }
            }
            assert_eq!(frames, 5, "{from:?}: the whole second sentence");
        }
    }

    #[test]
    fn a_stop_while_paused_drops_the_held_reply() {
        let mut p = playout(SilencePolicy::SendSilence);
        let mut buf = [0u8; 1500];
        p.speak(&[0.25; 3200], 16000).unwrap();
        tick_pcm(&mut p, &mut buf);
        assert!(p.pause());
        assert!(p.stop(), "a held reply counts as playing");
        assert!(!p.is_paused());
        assert_eq!(p.resume(ResumeFrom::Position), None);
        let (_, sent) = tick_pcm(&mut p, &mut buf);
        assert!(sent.finished, "the fade ends the reply");
        assert!(!p.is_speaking());
    }

    #[test]
    fn queue_is_bounded() {
        let mut p = Playout::new(
            Codec::Ulaw,
            0,
            SilencePolicy::SendSilence,
            (0, 0, 1),
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(matches!(
            p.speak(&vec![0.1; 32000], 16000),
            Err(PlayoutError::Full(_))
        ));
        assert!(matches!(
            p.speak(&[0.1; 100], 11025),
            Err(PlayoutError::Resample(_))
        ));
    }
}
