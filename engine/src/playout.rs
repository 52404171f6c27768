//! Outbound audio: the reply queue and the RTP packetizer.
//!
//! Reply audio enters at any rate through [`Playout::speak`], is resampled
//! once to the codec's PCM rate and queued as `i16`. The packetizer takes
//! exactly one 20 ms frame per tick (the caller's clock decides when), so
//! the RTP timestamp advances by one frame per tick whether audio, silence
//! or nothing is sent: the timeline stays continuous across replies and
//! pauses. Each reply starts with a 5 ms fade-in and the marker bit; a
//! stopped reply ends with a 5 ms fade-out, never a click.

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
        })
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Whether reply audio is queued.
    pub fn is_speaking(&self) -> bool {
        !self.queue.is_empty()
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
        if self.queue.len() + expected > self.max_queue {
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
        let queue = &mut self.queue;
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
        Ok(())
    }

    /// Drops the queued reply, fading out over 5 ms so the cut is silent.
    /// Returns whether anything was playing.
    pub fn stop(&mut self) -> bool {
        if self.queue.is_empty() {
            return false;
        }
        let fade = (self.codec.pcm_rate() as usize * FADE_MS / 1000).min(self.queue.len());
        self.queue.truncate(fade);
        for (i, s) in self.queue.iter_mut().enumerate() {
            *s = (*s as f32 * (1.0 - (i + 1) as f32 / fade as f32)) as i16;
        }
        true
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
            if first_of_reply {
                let fade = self.codec.pcm_rate() as usize * FADE_MS / 1000;
                for (i, s) in self.frame.iter_mut().take(fade).enumerate() {
                    *s = (*s as f32 * i as f32 / fade as f32) as i16;
                }
            }
            self.spurt_start = false;
            finished = self.queue.is_empty();
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
