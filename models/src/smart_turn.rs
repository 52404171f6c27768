//! Smart Turn v3.2: "is the caller's turn complete?" from the last 8 s of
//! speech, through ONNX Runtime. The front end is written here: the
//! waveform is front-padded (or cut) to 8 s, normalised to zero mean and
//! unit variance, then turned into whisper-style log-mel features — 400-point
//! periodic-Hann STFT with reflect padding and a 160-sample hop, power
//! spectrum, the Slaney mel filterbank of [`crate::mel`], log10 with a
//! 1e-10 floor, the last frame dropped, clamped to 8 below the maximum,
//! then `(x + 4) / 4`. Input `[batch, 80, 800]`, output the probability
//! that the turn is complete.

use crate::onnx::OnnxError;
use ort::value::TensorRef;
use realfft::RealFftPlanner;
use std::path::Path;
use std::sync::Arc;

/// Samples the model looks at (8 s at 16 kHz).
pub const WINDOW: usize = 8 * 16000;
/// Mel bins.
pub const MELS: usize = 80;
/// Feature frames.
pub const FRAMES: usize = 800;
const N_FFT: usize = 400;
const HOP: usize = 160;
const BINS: usize = N_FFT / 2 + 1;

/// Whether a turn is complete, from its audio.
pub trait EndOfTurn: Send {
    /// Probability that the turn in `audio` (16 kHz, ending now) is complete.
    fn complete_probability(&mut self, audio: &[f32]) -> Result<f32, OnnxError>;
}

/// The feature front end (plans and tables made once).
///
/// Computed in f64 like the reference extractor: the quantized model turns
/// feature differences of 1e-5 into probability differences of 0.1.
pub struct Features {
    fft: Arc<dyn realfft::RealToComplex<f64>>,
    window: Vec<f64>,
    filters: Vec<f64>,
    frame: Vec<f64>,
    spectrum: Vec<realfft::num_complex::Complex<f64>>,
    power: Vec<f64>,
    padded: Vec<f64>,
    log: Vec<f64>,
}

impl Default for Features {
    fn default() -> Self {
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(N_FFT);
        let spectrum = fft.make_output_vec();
        Self {
            fft,
            // Periodic Hann, as torch.hann_window.
            window: (0..N_FFT)
                .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64).cos())
                .collect(),
            filters: crate::mel::filterbank_f64(16000, N_FFT, MELS),
            frame: vec![0.0; N_FFT],
            spectrum,
            power: vec![0.0; BINS],
            padded: vec![0.0; WINDOW + N_FFT],
            log: vec![0.0; MELS * FRAMES],
        }
    }
}

impl Features {
    /// Features of the last 8 s of `audio` into `out` (`MELS × FRAMES`, row-major).
    pub fn compute(&mut self, audio: &[f32], out: &mut [f32]) {
        assert_eq!(out.len(), MELS * FRAMES, "feature buffer size");
        let tail = &audio[audio.len().saturating_sub(WINDOW)..];
        let front = WINDOW - tail.len();
        // Zero-mean unit-variance over the padded 8 s (the zeros count).
        let (mut sum, mut sq) = (0f64, 0f64);
        for &x in tail {
            sum += x as f64;
            sq += x as f64 * x as f64;
        }
        let n = WINDOW as f64;
        let mean = sum / n;
        let var = (sq / n - mean * mean).max(0.0);
        let scale = 1.0 / (var + 1e-7).sqrt();
        // Reflect padding of N_FFT/2 on both sides around the normalised signal.
        let pad = N_FFT / 2;
        // The reference normalises in f32.
        let sample = |i: usize| -> f64 {
            let x = if i < front { 0.0 } else { tail[i - front] };
            ((x as f64 - mean) * scale) as f32 as f64
        };
        for i in 0..WINDOW {
            self.padded[pad + i] = sample(i);
        }
        for k in 1..=pad {
            self.padded[pad - k] = self.padded[pad + k];
            self.padded[pad + WINDOW - 1 + k] = self.padded[pad + WINDOW - 1 - k];
        }
        let mut max = f64::MIN;
        for t in 0..FRAMES {
            let start = t * HOP;
            for (i, f) in self.frame.iter_mut().enumerate() {
                *f = self.padded[start + i] * self.window[i];
            }
            if self
                .fft
                .process(&mut self.frame, &mut self.spectrum)
                .is_err()
            {
                self.spectrum
                    .iter_mut()
                    .for_each(|c| *c = Default::default());
            }
            for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
                *p = c.norm_sqr();
            }
            for m in 0..MELS {
                let row = &self.filters[m * BINS..(m + 1) * BINS];
                let e: f64 = row.iter().zip(&self.power).map(|(w, p)| w * p).sum();
                let v = e.max(1e-10).log10();
                self.log[m * FRAMES + t] = v;
                max = max.max(v);
            }
        }
        let floor = max - 8.0;
        for (o, v) in out.iter_mut().zip(&self.log) {
            *o = ((v.max(floor) + 4.0) / 4.0) as f32;
        }
    }
}

/// The Smart Turn model in ONNX Runtime.
pub struct SmartTurn {
    session: ort::session::Session,
    features: Features,
    input: Vec<f32>,
}

/// File name in the models folder (a manifest entry).
pub const MODEL: &str = "smart-turn-v3.2-cpu.onnx";

impl SmartTurn {
    /// Loads the model with `library` (ONNX Runtime), one intra-op thread.
    pub fn load(library: &Path, model: &Path) -> Result<Self, OnnxError> {
        Ok(Self {
            session: crate::onnx::session(library, model, 1)?,
            features: Features::default(),
            input: Vec::new(),
        })
    }

    /// Loads it from a models folder laid out by the setup.
    pub fn from_dir(dir: &Path) -> Result<Self, OnnxError> {
        Self::load(&crate::onnx::library(dir), &dir.join(MODEL))
    }

    /// Probabilities for several turns in one run (calls can share a batch).
    pub fn run_batch(&mut self, audios: &[&[f32]]) -> Result<Vec<f32>, OnnxError> {
        let b = audios.len();
        if b == 0 {
            return Ok(Vec::new());
        }
        let fail = |e: &dyn std::fmt::Display| OnnxError::Model {
            path: MODEL.into(),
            message: e.to_string(),
        };
        self.input.resize(b * MELS * FRAMES, 0.0);
        for (i, a) in audios.iter().enumerate() {
            self.features.compute(
                a,
                &mut self.input[i * MELS * FRAMES..(i + 1) * MELS * FRAMES],
            );
        }
        let input = TensorRef::from_array_view(([b, MELS, FRAMES], &self.input[..]))
            .map_err(|e| fail(&e))?;
        let outputs = self
            .session
            .run(ort::inputs!["input_features" => input])
            .map_err(|e| fail(&e))?;
        let (_, probs) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| fail(&e))?;
        if probs.len() < b {
            return Err(fail(&"unexpected output shape"));
        }
        Ok(probs[..b].to_vec())
    }
}

impl EndOfTurn for SmartTurn {
    fn complete_probability(&mut self, audio: &[f32]) -> Result<f32, OnnxError> {
        Ok(self.run_batch(&[audio])?[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_and_a_tone_give_bounded_features() {
        let mut f = Features::default();
        let mut out = vec![0.0; MELS * FRAMES];
        f.compute(&[], &mut out);
        assert!(out.iter().all(|v| v.is_finite()));
        let tone: Vec<f32> = (0..16000)
            .map(|i| (i as f32 * 2.0 * std::f32::consts::PI * 1000.0 / 16000.0).sin() * 0.3)
            .collect();
        f.compute(&tone, &mut out);
        // Front padding: the first 7 s are the floor, the last second is loud
        // near 1 kHz (mel filter 26 is centred at ~1005 Hz).
        let early = out[26 * FRAMES + 100];
        let late = out[26 * FRAMES + 750];
        assert!(late > early + 1.0, "{early} {late}");
        let max = out.iter().cloned().fold(f32::MIN, f32::max);
        let min = out.iter().cloned().fold(f32::MAX, f32::min);
        assert!(
            (max - min - 2.0).abs() < 1e-4,
            "range is 8 decades / 4: {min}..{max}"
        );
    }
}
