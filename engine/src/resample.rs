//! Streaming sample-rate conversion with `rubato`, in 20 ms chunks.
//!
//! One [`Resampler`] per direction and rate pair, created once per call. It
//! uses rubato's synchronous FFT resampler with both sides fixed at 20 ms,
//! which every rate that is a multiple of 50 Hz allows (8, 16, 22.05, 24,
//! 48 kHz), so a 20 ms frame in gives exactly a 20 ms frame out. Equal rates
//! pass through untouched. [`Resampler::delay`] is the latency it adds.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _};
use std::time::Duration;

/// Why a resampler could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// A rate that does not divide into 20 ms frames.
    #[error("sample rate {0} Hz is not a multiple of 50 Hz")]
    Rate(u32),
    /// rubato refused the rate pair.
    #[error("resampler construction: {0}")]
    Construction(String),
    /// rubato failed while processing.
    #[error("resampling: {0}")]
    Process(String),
}

/// A mono streaming resampler working in 20 ms chunks of `f32` samples.
pub struct Resampler {
    inner: Option<Fft<f32>>,
    in_rate: u32,
    out_rate: u32,
    in_chunk: usize,
    out_chunk: usize,
    /// Input not yet making a whole chunk (streaming use).
    pending: Vec<f32>,
    out: Vec<f32>,
}

impl Resampler {
    /// A resampler from `in_rate` to `out_rate` (both multiples of 50 Hz).
    pub fn new(in_rate: u32, out_rate: u32) -> Result<Self, ResampleError> {
        for r in [in_rate, out_rate] {
            if r == 0 || r % 50 != 0 {
                return Err(ResampleError::Rate(r));
            }
        }
        let in_chunk = in_rate as usize / 50;
        let out_chunk = out_rate as usize / 50;
        let inner = if in_rate == out_rate {
            None
        } else {
            let r = Fft::<f32>::new(
                in_rate as usize,
                out_rate as usize,
                in_chunk,
                1,
                FixedSync::Both,
            )
            .map_err(|e| ResampleError::Construction(e.to_string()))?;
            if r.input_frames_next() != in_chunk || r.output_frames_next() != out_chunk {
                return Err(ResampleError::Construction(format!(
                    "rubato chose chunks {}/{} for {in_rate}->{out_rate}",
                    r.input_frames_next(),
                    r.output_frames_next()
                )));
            }
            Some(r)
        };
        Ok(Self {
            inner,
            in_rate,
            out_rate,
            in_chunk,
            out_chunk,
            pending: Vec::with_capacity(in_chunk),
            out: vec![0.0; out_chunk],
        })
    }

    /// Input samples per chunk (20 ms at the input rate).
    pub fn input_chunk(&self) -> usize {
        self.in_chunk
    }

    /// Output samples per chunk (20 ms at the output rate).
    pub fn output_chunk(&self) -> usize {
        self.out_chunk
    }

    /// Input and output rates.
    pub fn rates(&self) -> (u32, u32) {
        (self.in_rate, self.out_rate)
    }

    /// Delay this resampler adds, in output samples.
    pub fn delay_samples(&self) -> usize {
        self.inner.as_ref().map_or(0, |r| r.output_delay())
    }

    /// Delay this resampler adds.
    pub fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_samples() as u64 * 1_000_000 / self.out_rate as u64)
    }

    /// Resamples exactly one chunk: `input.len() == input_chunk()`,
    /// `output.len() >= output_chunk()`. Allocation-free.
    pub fn process_chunk(
        &mut self,
        input: &[f32],
        output: &mut [f32],
    ) -> Result<(), ResampleError> {
        debug_assert_eq!(input.len(), self.in_chunk);
        let out = &mut output[..self.out_chunk];
        match &mut self.inner {
            None => out.copy_from_slice(&input[..self.out_chunk]),
            Some(r) => {
                let src = InterleavedSlice::new(input, 1, self.in_chunk)
                    .map_err(|e| ResampleError::Process(e.to_string()))?;
                let mut dst = InterleavedSlice::new_mut(out, 1, self.out_chunk)
                    .map_err(|e| ResampleError::Process(e.to_string()))?;
                r.process_into_buffer(&src, &mut dst, None)
                    .map_err(|e| ResampleError::Process(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Streams input of any length: every completed chunk is resampled and
    /// handed to `sink`; the remainder waits for the next call or [`flush`].
    ///
    /// [`flush`]: Resampler::flush
    pub fn push(
        &mut self,
        mut input: &[f32],
        mut sink: impl FnMut(&[f32]),
    ) -> Result<(), ResampleError> {
        while !input.is_empty() {
            let take = (self.in_chunk - self.pending.len()).min(input.len());
            self.pending.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.pending.len() == self.in_chunk {
                self.process_pending()?;
                sink(&self.out);
            }
        }
        Ok(())
    }

    /// Ends a stream: pads the remainder with silence and pushes enough
    /// silence through to drain the resampler's delay.
    pub fn flush(&mut self, mut sink: impl FnMut(&[f32])) -> Result<(), ResampleError> {
        let pad_chunks = if self.inner.is_some() {
            1 + self.delay_samples().div_ceil(self.out_chunk)
        } else {
            usize::from(!self.pending.is_empty())
        };
        // Pass-through keeps only the real samples; a filter's output is
        // all signal (its delay is drained by the padding).
        let keep = if self.inner.is_none() {
            self.pending.len()
        } else {
            self.out_chunk
        };
        for _ in 0..pad_chunks {
            self.pending.resize(self.in_chunk, 0.0);
            self.process_pending()?;
            sink(&self.out[..keep]);
        }
        Ok(())
    }

    /// Resamples the full `pending` chunk into `out` and empties `pending`.
    fn process_pending(&mut self) -> Result<(), ResampleError> {
        let mut out = std::mem::take(&mut self.out);
        let pending = std::mem::take(&mut self.pending);
        let result = self.process_chunk(&pending, &mut out);
        self.pending = pending;
        self.pending.clear();
        self.out = out;
        result
    }

    /// Forgets buffered input and resets the filter state (new stream).
    pub fn reset(&mut self) {
        self.pending.clear();
        if let Some(r) = &mut self.inner {
            r.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f32, n: usize, offset: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                0.5 * (2.0 * std::f32::consts::PI * hz * (i + offset) as f32 / rate as f32).sin()
            })
            .collect()
    }

    /// A 440 Hz sine across 100 chunks: output stays a clean sine — the
    /// largest sample-to-sample step never exceeds the sine's own maximum
    /// slope (plus a small margin), so there is no click at chunk borders.
    #[test]
    fn no_discontinuity_at_chunk_borders() {
        for (from, to) in [
            (8000, 16000),
            (16000, 8000),
            (22050, 8000),
            (24000, 16000),
            (48000, 16000),
            (16000, 48000),
        ] {
            let mut r = Resampler::new(from, to).unwrap();
            let mut out = Vec::new();
            let chunk = r.input_chunk();
            let mut buf = vec![0.0; r.output_chunk()];
            for c in 0..100 {
                let input = sine(from, 440.0, chunk, c * chunk);
                r.process_chunk(&input, &mut buf).unwrap();
                out.extend_from_slice(&buf);
            }
            let settled = &out[r.delay_samples() + to as usize / 50..];
            let max_step = settled
                .windows(2)
                .map(|w| (w[1] - w[0]).abs())
                .fold(0.0, f32::max);
            let bound = 0.5 * 2.0 * std::f32::consts::PI * 440.0 / to as f32 * 1.1;
            assert!(max_step < bound, "{from}->{to}: step {max_step} > {bound}");
            let rms = (settled.iter().map(|x| x * x).sum::<f32>() / settled.len() as f32).sqrt();
            assert!(
                (rms - 0.5 / 2f32.sqrt()).abs() < 0.02,
                "{from}->{to}: rms {rms}"
            );
        }
    }

    #[test]
    fn streaming_push_gives_the_same_length_as_time() {
        let mut r = Resampler::new(22050, 8000).unwrap();
        let mut total = 0;
        for piece in [100, 1000, 7, 2000, 3] {
            r.push(&vec![0.1; piece], |out| total += out.len()).unwrap();
        }
        r.flush(|out| total += out.len()).unwrap();
        // 3110 input samples = 141 ms -> at least 1128 output samples, plus the delay drained.
        assert!(total >= 3110 * 8000 / 22050);
        assert_eq!(total % 160, 0);
        assert!(
            r.delay() < Duration::from_millis(30),
            "delay {:?}",
            r.delay()
        );
    }

    #[test]
    fn rejects_rates_that_do_not_make_20ms_frames() {
        assert!(matches!(
            Resampler::new(11025, 8000),
            Err(ResampleError::Rate(11025))
        ));
        assert!(matches!(
            Resampler::new(8000, 0),
            Err(ResampleError::Rate(0))
        ));
        let mut same = Resampler::new(16000, 16000).unwrap();
        assert_eq!(same.delay_samples(), 0);
        let mut got = Vec::new();
        same.push(&[1.0; 330], |o| got.extend_from_slice(o))
            .unwrap();
        same.flush(|o| got.extend_from_slice(o)).unwrap();
        assert_eq!(got.len(), 330);
    }
}
