//! Payload codecs at the RTP edge: G.711 µ-law/A-law, G.722, `slin16` and
//! Opus.
//!
//! Every codec decodes to and encodes from mono `i16` PCM at its
//! [`Codec::pcm_rate`]. G.722, Opus and slin16 run at 16 kHz (the engine's
//! internal rate), so their audio is never resampled. RTP clocks follow the
//! RFCs, not the PCM rate: 8000 Hz for G.722 (RFC 3551), 48 kHz for Opus
//! (RFC 7587); [`Codec::ticks`] converts.
//!
//! Which of them a real Asterisk plays back over externalMedia RTP is
//! [`Codec::rtp_playback`]: only formats with a static payload type.

pub mod g711;
mod g722;
mod opus;

pub use g722::{G722Decoder, G722Encoder};
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
    /// G.722 64 kbit/s, 16 kHz audio, RTP clock 8000 Hz, payload type 9.
    G722,
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
    /// The G.722 codec rejected the payload or buffer.
    #[error("g722: {0}")]
    G722(String),
    /// An unknown format name.
    #[error("unknown codec {0:?}; accepted: ulaw, alaw, g722, slin16, opus")]
    Unknown(String),
}

/// Why Asterisk does not play a format it is sent over externalMedia RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unplayable {
    /// A dynamic payload type: a UnicastRTP channel has no SDP, so its
    /// receive map is empty and `res_rtp_asterisk` drops every packet
    /// (only static types ≤ 34 are looked up in the fixed table).
    DynamicPayloadType(u8),
    /// Asterisk's open-source tree has no Opus transcoder: it sends nothing
    /// and plays nothing ("No path to translate").
    NoTranscoder,
}

impl std::fmt::Display for Unplayable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::DynamicPayloadType(pt) => write!(
                f,
                "payload type {pt} is dynamic: Asterisk's externalMedia (UnicastRTP, no SDP) \
                 silently drops every packet sent to it, so the caller hears nothing"
            ),
            Self::NoTranscoder => write!(
                f,
                "Asterisk has no Opus transcoder (codec_opus is a separate binary module): \
                 it sends and plays nothing"
            ),
        }
    }
}

impl Codec {
    /// The codec for an Asterisk format name (`ulaw`, `alaw`, `slin16`, `opus`).
    pub fn from_asterisk_format(name: &str) -> Result<Self, CodecError> {
        match name.to_ascii_lowercase().as_str() {
            "ulaw" | "pcmu" => Ok(Self::Ulaw),
            "alaw" | "pcma" => Ok(Self::Alaw),
            "g722" => Ok(Self::G722),
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
            Self::G722 => "g722",
            Self::Slin16 => "slin16",
            Self::Opus => "opus",
        }
    }

    /// The payload type Asterisk uses for this format.
    pub fn default_payload_type(self) -> u8 {
        match self {
            Self::Ulaw => 0,
            Self::Alaw => 8,
            Self::G722 => 9,
            Self::Slin16 => 118,
            Self::Opus => 107,
        }
    }

    /// RTP timestamp clock rate in Hz.
    pub fn clock_rate(self) -> u32 {
        match self {
            Self::Ulaw | Self::Alaw | Self::G722 => 8000,
            Self::Slin16 => 16000,
            Self::Opus => 48000,
        }
    }

    /// Sample rate of the PCM this codec decodes to and encodes from.
    pub fn pcm_rate(self) -> u32 {
        match self {
            Self::Ulaw | Self::Alaw => 8000,
            Self::G722 | Self::Slin16 | Self::Opus => 16000,
        }
    }

    /// RTP clock ticks spanned by `samples` PCM samples (×3 for Opus, ×½
    /// for G.722, else ×1).
    pub fn ticks(self, samples: usize) -> u32 {
        (samples as u64 * self.clock_rate() as u64 / self.pcm_rate() as u64) as u32
    }

    /// PCM samples spanned by a (signed) timestamp difference.
    pub fn samples_of_ticks(self, ticks: i64) -> i64 {
        ticks * self.pcm_rate() as i64 / self.clock_rate() as i64
    }

    /// Whether a real Asterisk plays this format to the caller when aiagc
    /// sends it over externalMedia RTP (observed on 22.10.1, see
    /// `shared/asterisk/README.md`): formats with a static payload type do.
    pub fn rtp_playback(self) -> Result<(), Unplayable> {
        match self {
            Self::Ulaw | Self::Alaw | Self::G722 => Ok(()),
            Self::Slin16 => Err(Unplayable::DynamicPayloadType(self.default_payload_type())),
            Self::Opus => Err(Unplayable::NoTranscoder),
        }
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
    /// G.722 keeps ADPCM state.
    G722(Box<G722Decoder>),
    /// Opus keeps state (and does its own loss concealment).
    Opus(Box<OpusDecoder>),
}

impl Decoder {
    /// A decoder for `codec`.
    pub fn new(codec: Codec) -> Result<Self, CodecError> {
        Ok(match codec {
            Codec::Opus => Self::Opus(Box::new(OpusDecoder::new()?)),
            Codec::G722 => Self::G722(Box::default()),
            other => Self::Pcm(other),
        })
    }

    /// Decodes `payload` into `out`, returning the number of samples written.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        match self {
            Self::Pcm(Codec::Ulaw) => g711_decode(payload, out, g711::ulaw_decode),
            Self::Pcm(Codec::Alaw) => g711_decode(payload, out, g711::alaw_decode),
            Self::Pcm(_) => slin16_decode(payload, out),
            Self::G722(d) => d.decode(payload, out),
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
            Self::G722(_) => Ok(payload.len() * 2),
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
            Self::Pcm(_) | Self::G722(_) => None,
        }
    }
}

/// A per-call payload encoder.
pub enum Encoder {
    /// G.711 and slin16: stateless.
    Pcm(Codec),
    /// G.722 keeps ADPCM state.
    G722(Box<G722Encoder>),
    /// Opus keeps state.
    Opus(Box<OpusEncoder>),
}

impl Encoder {
    /// An encoder for `codec`.
    pub fn new(codec: Codec) -> Result<Self, CodecError> {
        Ok(match codec {
            Codec::Opus => Self::Opus(Box::new(OpusEncoder::new()?)),
            Codec::G722 => Self::G722(Box::default()),
            other => Self::Pcm(other),
        })
    }

    /// Encodes `pcm` into `out`, returning the payload length in bytes.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        match self {
            Self::Pcm(Codec::Ulaw) => Ok(g711_encode(pcm, out, g711::ulaw_encode)),
            Self::Pcm(Codec::Alaw) => Ok(g711_encode(pcm, out, g711::alaw_encode)),
            Self::Pcm(_) => slin16_encode(pcm, out),
            Self::G722(e) => e.encode(pcm, out),
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
        assert_eq!(Codec::Opus.ticks(320), 960);
        assert_eq!(Codec::G722.ticks(320), 160);
        assert_eq!(Codec::G722.samples_of_ticks(-160), -320);
        assert_eq!(Codec::G722.frame_samples(), 320);
        assert_eq!(Codec::from_asterisk_format("G722"), Ok(Codec::G722));
        assert_eq!(Codec::G722.default_payload_type(), 9);
        assert_eq!(Codec::Slin16.default_payload_type(), 118);
    }

    /// The formats a real Asterisk plays back over externalMedia RTP.
    #[test]
    fn only_static_payload_types_reach_the_caller() {
        for c in [Codec::Ulaw, Codec::Alaw, Codec::G722] {
            assert_eq!(c.rtp_playback(), Ok(()), "{c:?}");
        }
        assert_eq!(
            Codec::Slin16.rtp_playback(),
            Err(Unplayable::DynamicPayloadType(118))
        );
        assert_eq!(Codec::Opus.rtp_playback(), Err(Unplayable::NoTranscoder));
    }
}
