//! Payload codecs at the RTP edge: G.711 µ-law/A-law, `slin16` and Opus.
//!
//! Every codec decodes to and encodes from mono `i16` PCM at its
//! [`Codec::pcm_rate`]. Opus runs its decoder and encoder at 16 kHz (the
//! engine's internal rate), so Opus audio is never resampled; its RTP clock
//! stays 48 kHz as RFC 7587 requires.

pub mod g711;
mod opus;

pub use opus::{OpusDecoder, OpusEncoder};

/// Largest PCM frame any codec produces from one payload, in samples
/// (120 ms of Opus at 16 kHz, or a 1500-byte G.711 payload).
pub const MAX_DECODED_SAMPLES: usize = 1920;

/// The formats Asterisk's externalMedia can be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, 8 kHz, payload type 0.
    Ulaw,
    /// G.711 A-law, 8 kHz, payload type 8.
    Alaw,
    /// Signed linear 16-bit at 16 kHz, big-endian on the wire; Asterisk uses
    /// dynamic payload type 118 for it.
    Slin16,
    /// Opus, RTP clock 48 kHz, decoded and encoded at 16 kHz.
    Opus,
}

/// Error from a codec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// A `slin16` payload with an odd number of bytes.
    #[error("slin16 payload of odd length {0}")]
    OddLength(usize),
    /// A payload that decodes to more samples than a frame buffer holds.
    #[error("payload of {0} samples exceeds the decode buffer")]
    TooLong(usize),
    /// The Opus library rejected the payload or the call.
    #[error("opus: {0}")]
    Opus(String),
    /// An unknown format name.
    #[error("unknown codec {0:?}; accepted: ulaw, alaw, slin16, opus")]
    Unknown(String),
}

impl Codec {
    /// The codec for an Asterisk format name (`ulaw`, `alaw`, `slin16`, `opus`).
    pub fn from_asterisk_format(name: &str) -> Result<Self, CodecError> {
        match name.to_ascii_lowercase().as_str() {
            "ulaw" | "pcmu" => Ok(Self::Ulaw),
            "alaw" | "pcma" => Ok(Self::Alaw),
            "slin16" => Ok(Self::Slin16),
            "opus" => Ok(Self::Opus),
            _ => Err(CodecError::Unknown(name.to_owned())),
        }
    }

    /// The name Asterisk's `externalMedia` takes as `format`.
    pub fn asterisk_format(self) -> &'static str {
        match self {
            Self::Ulaw => "ulaw",
            Self::Alaw => "alaw",
            Self::Slin16 => "slin16",
            Self::Opus => "opus",
        }
    }

    /// The payload type Asterisk uses for this format.
    pub fn default_payload_type(self) -> u8 {
        match self {
            Self::Ulaw => 0,
            Self::Alaw => 8,
            Self::Slin16 => 118,
            Self::Opus => 107,
        }
    }

    /// RTP timestamp clock rate in Hz.
    pub fn clock_rate(self) -> u32 {
        match self {
            Self::Ulaw | Self::Alaw => 8000,
            Self::Slin16 => 16000,
            Self::Opus => 48000,
        }
    }

    /// Sample rate of the PCM this codec decodes to and encodes from.
    pub fn pcm_rate(self) -> u32 {
        match self {
            Self::Ulaw | Self::Alaw => 8000,
            Self::Slin16 | Self::Opus => 16000,
        }
    }

    /// RTP clock ticks per PCM sample (3 for Opus, else 1).
    pub fn ticks_per_sample(self) -> u32 {
        self.clock_rate() / self.pcm_rate()
    }

    /// PCM samples in one 20 ms frame.
    pub fn frame_samples(self) -> usize {
        self.pcm_rate() as usize / 50
    }
}

/// A per-call payload decoder.
pub enum Decoder {
    /// G.711 and slin16: stateless.
    Pcm(Codec),
    /// Opus keeps state (and does its own loss concealment).
    Opus(Box<OpusDecoder>),
}

impl Decoder {
    /// A decoder for `codec`.
    pub fn new(codec: Codec) -> Result<Self, CodecError> {
        Ok(match codec {
            Codec::Opus => Self::Opus(Box::new(OpusDecoder::new()?)),
            other => Self::Pcm(other),
        })
    }

    /// Decodes `payload` into `out`, returning the number of samples written.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        match self {
            Self::Pcm(Codec::Ulaw) => g711_decode(payload, out, g711::ulaw_decode),
            Self::Pcm(Codec::Alaw) => g711_decode(payload, out, g711::alaw_decode),
            Self::Pcm(_) => slin16_decode(payload, out),
            Self::Opus(d) => d.decode(payload, out),
        }
    }

    /// Number of samples `payload` decodes to, without decoding it.
    pub fn samples_in(&self, payload: &[u8]) -> Result<usize, CodecError> {
        match self {
            Self::Pcm(Codec::Slin16) => {
                if payload.len() % 2 == 1 {
                    Err(CodecError::OddLength(payload.len()))
                } else {
                    Ok(payload.len() / 2)
                }
            }
            Self::Pcm(_) => Ok(payload.len()),
            Self::Opus(d) => d.samples_in(payload),
        }
    }

    /// Whether the codec conceals loss itself (see [`Decoder::conceal`]).
    pub fn has_plc(&self) -> bool {
        matches!(self, Self::Opus(_))
    }

    /// Codec-level loss concealment: for Opus, in-band FEC from `next`
    /// (the packet after the lost one) when present, else its PLC.
    /// Returns `None` for codecs without their own concealment.
    pub fn conceal(
        &mut self,
        next: Option<&[u8]>,
        out: &mut [i16],
    ) -> Option<Result<usize, CodecError>> {
        match self {
            Self::Opus(d) => Some(d.conceal(next, out)),
            Self::Pcm(_) => None,
        }
    }
}

/// A per-call payload encoder.
pub enum Encoder {
    /// G.711 and slin16: stateless.
    Pcm(Codec),
    /// Opus keeps state.
    Opus(Box<OpusEncoder>),
}

impl Encoder {
    /// An encoder for `codec`.
    pub fn new(codec: Codec) -> Result<Self, CodecError> {
        Ok(match codec {
            Codec::Opus => Self::Opus(Box::new(OpusEncoder::new()?)),
            other => Self::Pcm(other),
        })
    }

    /// Encodes `pcm` into `out`, returning the payload length in bytes.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        match self {
            Self::Pcm(Codec::Ulaw) => Ok(g711_encode(pcm, out, g711::ulaw_encode)),
            Self::Pcm(Codec::Alaw) => Ok(g711_encode(pcm, out, g711::alaw_encode)),
            Self::Pcm(_) => slin16_encode(pcm, out),
            Self::Opus(e) => e.encode(pcm, out),
        }
    }
}

fn g711_decode(payload: &[u8], out: &mut [i16], f: fn(u8) -> i16) -> Result<usize, CodecError> {
    if payload.len() > out.len() {
        return Err(CodecError::TooLong(payload.len()));
    }
    for (o, &b) in out.iter_mut().zip(payload) {
        *o = f(b);
    }
    Ok(payload.len())
}

fn g711_encode(pcm: &[i16], out: &mut [u8], f: fn(i16) -> u8) -> usize {
    let n = pcm.len().min(out.len());
    for (o, &s) in out.iter_mut().zip(&pcm[..n]) {
        *o = f(s);
    }
    n
}

/// `slin16` is big-endian on Asterisk's RTP (it byte-swaps signed linear).
fn slin16_decode(payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
    if payload.len() % 2 == 1 {
        return Err(CodecError::OddLength(payload.len()));
    }
    let n = payload.len() / 2;
    if n > out.len() {
        return Err(CodecError::TooLong(n));
    }
    for (o, pair) in out.iter_mut().zip(payload.chunks_exact(2)) {
        *o = i16::from_be_bytes([pair[0], pair[1]]);
    }
    Ok(n)
}

fn slin16_encode(pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
    let n = pcm.len().min(out.len() / 2);
    for (pair, &s) in out.chunks_exact_mut(2).zip(&pcm[..n]) {
        pair.copy_from_slice(&s.to_be_bytes());
    }
    Ok(n * 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slin16 payload as Asterisk sends it (observed: PT 118, 640 bytes,
    /// big-endian): the bytes 0x01 0x02 are the sample 258, 0xFF 0x38 is -200.
    #[test]
    fn slin16_is_big_endian_like_asterisk() {
        let mut payload = vec![0u8; 640];
        payload[0] = 0x01;
        payload[1] = 0x02;
        payload[2] = 0xFF;
        payload[3] = 0x38;
        let mut out = [0i16; 320];
        let mut d = Decoder::new(Codec::Slin16).unwrap();
        assert_eq!(d.decode(&payload, &mut out), Ok(320));
        assert_eq!(&out[..3], &[258, -200, 0]);
        let mut e = Encoder::new(Codec::Slin16).unwrap();
        let mut back = [0u8; 640];
        assert_eq!(e.encode(&out, &mut back), Ok(640));
        assert_eq!(&back[..], &payload[..]);
    }

    #[test]
    fn slin16_rejects_odd_and_oversized_payloads() {
        let mut d = Decoder::new(Codec::Slin16).unwrap();
        let mut out = [0i16; 320];
        assert_eq!(
            d.decode(&[0u8; 641], &mut out),
            Err(CodecError::OddLength(641))
        );
        assert_eq!(
            d.decode(&[0u8; 642], &mut out),
            Err(CodecError::TooLong(321))
        );
        assert_eq!(d.decode(&[], &mut out), Ok(0));
    }

    #[test]
    fn codec_parameters_follow_asterisk() {
        assert_eq!(Codec::from_asterisk_format("SLIN16"), Ok(Codec::Slin16));
        assert!(Codec::from_asterisk_format("g729").is_err());
        assert_eq!(Codec::Ulaw.frame_samples(), 160);
        assert_eq!(Codec::Slin16.frame_samples(), 320);
        assert_eq!(Codec::Opus.ticks_per_sample(), 3);
        assert_eq!(Codec::Slin16.default_payload_type(), 118);
    }
}
