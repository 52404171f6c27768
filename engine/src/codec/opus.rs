//! Opus through libopus (`audiopus`), mono, 20 ms frames at 16 kHz.

use super::CodecError;
use audiopus::coder::{Decoder, Encoder};
use audiopus::packet::Packet;
use audiopus::{Application, Channels, MutSignals, SampleRate};

fn opus_err(e: audiopus::Error) -> CodecError {
    CodecError::Opus(e.to_string())
}

/// Opus decoder with loss concealment and in-band FEC.
pub struct OpusDecoder {
    inner: Decoder,
}

impl OpusDecoder {
    /// A mono decoder producing 16 kHz PCM.
    pub fn new() -> Result<Self, CodecError> {
        Ok(Self {
            inner: Decoder::new(SampleRate::Hz16000, Channels::Mono).map_err(opus_err)?,
        })
    }

    /// Decodes one packet.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        let packet = Packet::try_from(payload).map_err(opus_err)?;
        let signals = MutSignals::try_from(out).map_err(opus_err)?;
        self.inner
            .decode(Some(packet), signals, false)
            .map_err(opus_err)
    }

    /// Samples `payload` decodes to at 16 kHz.
    pub fn samples_in(&self, payload: &[u8]) -> Result<usize, CodecError> {
        let packet = Packet::try_from(payload).map_err(opus_err)?;
        self.inner.nb_samples(packet).map_err(opus_err)
    }

    /// Recovers one lost 20 ms frame: FEC from the next packet when there is
    /// one, else the decoder's packet loss concealment.
    pub fn conceal(&mut self, next: Option<&[u8]>, out: &mut [i16]) -> Result<usize, CodecError> {
        let frame = out.len().min(320);
        let signals = MutSignals::try_from(&mut out[..frame]).map_err(opus_err)?;
        match next.map(Packet::try_from) {
            Some(Ok(packet)) => self.inner.decode(Some(packet), signals, true),
            _ => self.inner.decode(None, signals, false),
        }
        .map_err(opus_err)
    }
}

/// Opus encoder tuned for speech (VoIP application, in-band FEC on).
pub struct OpusEncoder {
    inner: Encoder,
}

impl OpusEncoder {
    /// A mono encoder taking 16 kHz PCM.
    pub fn new() -> Result<Self, CodecError> {
        let mut inner = Encoder::new(SampleRate::Hz16000, Channels::Mono, Application::Voip)
            .map_err(opus_err)?;
        inner.set_inband_fec(true).map_err(opus_err)?;
        Ok(Self { inner })
    }

    /// Encodes one 20 ms frame (320 samples).
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        self.inner.encode(pcm, out).map_err(opus_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, offset: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = (i + offset) as f32 / 16000.0;
                (8000.0 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()) as i16
            })
            .collect()
    }

    /// Encode a 440 Hz tone, decode it, and compare energy and correlation
    /// (Opus delays its output by a few ms, so compare after alignment).
    #[test]
    fn opus_round_trip_keeps_the_tone() {
        let mut enc = OpusEncoder::new().unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut decoded = Vec::new();
        let mut payload = [0u8; 1500];
        let mut pcm = [0i16; 960];
        for f in 0..50 {
            let frame = tone(320, f * 320);
            let n = enc.encode(&frame, &mut payload).unwrap();
            assert!(n > 0 && n < 400);
            assert_eq!(dec.samples_in(&payload[..n]).unwrap(), 320);
            let m = dec.decode(&payload[..n], &mut pcm).unwrap();
            assert_eq!(m, 320);
            decoded.extend_from_slice(&pcm[..m]);
        }
        let reference = tone(decoded.len() + 400, 0);
        // Find the codec delay (0..400 samples) with the best correlation.
        let tail = &decoded[4000..];
        let best = (0..400)
            .map(|d| {
                let r = &reference[4000 - d..4000 - d + tail.len()];
                let dot: f64 = tail.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum();
                let na: f64 = tail.iter().map(|&a| (a as f64).powi(2)).sum();
                let nb: f64 = r.iter().map(|&b| (b as f64).powi(2)).sum();
                dot / (na.sqrt() * nb.sqrt())
            })
            .fold(f64::MIN, f64::max);
        assert!(best > 0.95, "correlation {best}");
    }

    #[test]
    fn opus_conceals_and_rejects_garbage() {
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = [0i16; 960];
        assert_eq!(dec.conceal(None, &mut out).unwrap(), 320);
        assert!(dec.decode(&[], &mut out).is_err());
    }
}
