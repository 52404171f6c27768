//! Audio files in and out of the speech core: WAV (any rate, mono or
//! stereo, 16-bit or float) to 16 kHz mono `f32`, and back.

use aiagc_engine::resample::Resampler;
use std::path::Path;

/// Why an audio file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// Not a readable WAV.
    #[error("{path}: {message}")]
    Wav {
        /// File.
        path: String,
        /// hound's message.
        message: String,
    },
    /// A sample rate the resampler does not take (not a multiple of 50 Hz).
    #[error("{0}")]
    Resample(#[from] aiagc_engine::resample::ResampleError),
}

/// Resamples mono audio from `rate` to `to` with the engine's resampler,
/// removing its delay so the output is aligned with the input.
pub fn resample(samples: &[f32], rate: u32, to: u32) -> Result<Vec<f32>, AudioError> {
    if rate == to {
        return Ok(samples.to_vec());
    }
    let mut r = Resampler::new(rate, to)?;
    let mut out = Vec::with_capacity(samples.len() * to as usize / rate as usize + 1024);
    r.push(samples, |o| out.extend_from_slice(o))?;
    r.flush(|o| out.extend_from_slice(o))?;
    let delay = r.delay_samples().min(out.len());
    out.drain(..delay);
    out.truncate((samples.len() as u64 * to as u64 / rate as u64) as usize);
    Ok(out)
}

/// Reads a WAV file as 16 kHz mono `f32`.
pub fn read_wav_16k(path: &Path) -> Result<Vec<f32>, AudioError> {
    let err = |e: hound::Error| AudioError::Wav {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut reader = hound::WavReader::open(path).map_err(err)?;
    let spec = reader.spec();
    let channels = spec.channels.max(1) as usize;
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(err)?
        }
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(err)?,
    };
    let mono: Vec<f32> = interleaved
        .chunks(channels)
        .map(|c| c.iter().sum::<f32>() / channels as f32)
        .collect();
    resample(&mono, spec.sample_rate, 16000)
}

/// Writes mono `f32` audio as a 16-bit WAV.
pub fn write_wav(path: &Path, samples: &[f32], rate: u32) -> Result<(), AudioError> {
    let err = |e: hound::Error| AudioError::Wav {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let file = std::fs::File::create(path).map_err(|e| err(hound::Error::IoError(e)))?;
    write_wav_to(std::io::BufWriter::new(file), samples, rate).map_err(err)
}

/// Mono `f32` audio as the bytes of a 16-bit WAV file (for uploads).
pub fn wav_bytes(samples: &[f32], rate: u32) -> Result<Vec<u8>, AudioError> {
    let mut out = std::io::Cursor::new(Vec::with_capacity(44 + samples.len() * 2));
    write_wav_to(&mut out, samples, rate).map_err(|e| AudioError::Wav {
        path: "<memory>".into(),
        message: e.to_string(),
    })?;
    Ok(out.into_inner())
}

fn write_wav_to<W: std::io::Write + std::io::Seek>(
    writer: W,
    samples: &[f32],
    rate: u32,
) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(writer, spec)?;
    for &s in samples {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)?;
    }
    w.finalize()
}

/// Passes audio through the telephone path: 16 kHz → 8 kHz → G.711 µ-law
/// → 8 kHz → 16 kHz, as a caller's voice reaches us over a ulaw trunk.
pub fn through_ulaw(samples_16k: &[f32]) -> Result<Vec<f32>, AudioError> {
    use aiagc_engine::codec::g711::{ulaw_decode, ulaw_encode};
    let narrow = resample(samples_16k, 16000, 8000)?;
    let coded: Vec<f32> = narrow
        .iter()
        .map(|&s| ulaw_decode(ulaw_encode((s.clamp(-1.0, 1.0) * 32767.0) as i16)) as f32 / 32768.0)
        .collect();
    resample(&coded, 8000, 16000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_round_trip_at_another_rate() {
        let dir = std::env::temp_dir().join(format!("aiagc-audio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.wav");
        let tone: Vec<f32> = (0..8000)
            .map(|i| 0.5 * (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 8000.0).sin())
            .collect();
        write_wav(&path, &tone, 8000).unwrap();
        let back = read_wav_16k(&path).unwrap();
        assert_eq!(back.len(), 16000);
        let rms = (back[1000..15000].iter().map(|x| x * x).sum::<f32>() / 14000.0).sqrt();
        assert!((rms - 0.5 / 2f32.sqrt()).abs() < 0.02, "{rms}");
        assert!(matches!(
            read_wav_16k(&dir.join("missing.wav")),
            Err(AudioError::Wav { .. })
        ));
        std::fs::write(dir.join("bad.wav"), b"RIFFnope").unwrap();
        assert!(matches!(
            read_wav_16k(&dir.join("bad.wav")),
            Err(AudioError::Wav { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
