//! Silero VAD (v6, `silero_vad.onnx` from silero-vad 6.2.3) through ONNX Runtime.
//!
//! The model takes 512 new samples at 16 kHz preceded by the last 64
//! samples of the previous chunk (576 in all), a recurrent state
//! `[2, batch, 128]` and the rate, and returns a speech probability per
//! stream and the next state. [`SileroModel::run_batch`] runs several
//! calls' chunks in one inference; [`SileroVad`] is one call's detector
//! behind the engine's [`Vad`] trait (it buffers 20 ms frames into 32 ms
//! chunks and answers with the latest probability).

use crate::onnx::OnnxError;
use aiagc_engine::vad::{Vad, FRAME_16K};
use ort::session::Session;
use ort::value::TensorRef;
use std::path::Path;

/// New samples per chunk.
pub const CHUNK: usize = 512;
/// Context samples carried from the previous chunk.
pub const CONTEXT: usize = 64;
const STATE: usize = 128;

/// A loaded Silero session.
pub struct SileroModel {
    session: Session,
    input: Vec<f32>,
    state: Vec<f32>,
}

/// One stream's recurrent state and context.
#[derive(Clone)]
pub struct StreamState {
    state: [f32; 2 * STATE],
    context: [f32; CONTEXT],
}

impl Default for StreamState {
    fn default() -> Self {
        Self {
            state: [0.0; 2 * STATE],
            context: [0.0; CONTEXT],
        }
    }
}

impl SileroModel {
    /// Loads the model with ONNX Runtime from `library` (one intra-op thread:
    /// the chunk is tiny, threads only add overhead).
    pub fn load(library: &Path, model: &Path) -> Result<Self, OnnxError> {
        let session = crate::onnx::session(library, model, 1)?;
        Ok(Self {
            session,
            input: Vec::new(),
            state: Vec::new(),
        })
    }

    /// Runs one 512-sample chunk per stream; updates each stream's state
    /// and returns the speech probabilities.
    pub fn run_batch(
        &mut self,
        chunks: &[&[f32]],
        streams: &mut [StreamState],
    ) -> Result<Vec<f32>, OnnxError> {
        let b = chunks.len().min(streams.len());
        let fail = |e: &dyn std::fmt::Display| OnnxError::Model {
            path: "silero_vad.onnx".into(),
            message: e.to_string(),
        };
        self.input.clear();
        for (chunk, s) in chunks.iter().zip(streams.iter()) {
            if chunk.len() != CHUNK {
                return Err(fail(&format!(
                    "chunk of {} samples, expected {CHUNK}",
                    chunk.len()
                )));
            }
            self.input.extend_from_slice(&s.context);
            self.input.extend_from_slice(chunk);
        }
        // State layout [2, batch, 128].
        self.state.clear();
        self.state.resize(2 * b * STATE, 0.0);
        for (i, s) in streams.iter().take(b).enumerate() {
            for layer in 0..2 {
                let dst = (layer * b + i) * STATE;
                self.state[dst..dst + STATE]
                    .copy_from_slice(&s.state[layer * STATE..(layer + 1) * STATE]);
            }
        }
        let sr = [16000i64];
        let input = TensorRef::from_array_view(([b, CHUNK + CONTEXT], &self.input[..]))
            .map_err(|e| fail(&e))?;
        let state =
            TensorRef::from_array_view(([2, b, STATE], &self.state[..])).map_err(|e| fail(&e))?;
        let rate =
            TensorRef::from_array_view((Vec::<usize>::new(), &sr[..])).map_err(|e| fail(&e))?;
        let outputs = self
            .session
            .run(ort::inputs!["input" => input, "state" => state, "sr" => rate])
            .map_err(|e| fail(&e))?;
        let (_, probs) = outputs["output"]
            .try_extract_tensor::<f32>()
            .map_err(|e| fail(&e))?;
        let (_, next) = outputs["stateN"]
            .try_extract_tensor::<f32>()
            .map_err(|e| fail(&e))?;
        if probs.len() < b || next.len() < 2 * b * STATE {
            return Err(fail(&"unexpected output shape"));
        }
        for (i, (s, chunk)) in streams.iter_mut().zip(chunks).take(b).enumerate() {
            for layer in 0..2 {
                let src = (layer * b + i) * STATE;
                s.state[layer * STATE..(layer + 1) * STATE]
                    .copy_from_slice(&next[src..src + STATE]);
            }
            s.context.copy_from_slice(&chunk[CHUNK - CONTEXT..]);
        }
        Ok(probs[..b].to_vec())
    }
}

/// Speech decisions per chunk from Silero probabilities, with the model's
/// usual post-processing: speech starts at a chunk ≥ `threshold`, ends at
/// the first chunk of a run below `threshold − 0.15` lasting at least
/// `min_silence_chunks` (shorter pauses, such as a comma, stay speech).
pub fn speech_decisions(probs: &[f32], threshold: f32, min_silence_chunks: usize) -> Vec<bool> {
    let neg = threshold - 0.15;
    let mut out = vec![false; probs.len()];
    let mut speaking = false;
    let mut silence_start: Option<usize> = None;
    for (i, &p) in probs.iter().enumerate() {
        if !speaking {
            if p >= threshold {
                speaking = true;
                silence_start = None;
            }
        } else if p < neg {
            let start = *silence_start.get_or_insert(i);
            if i + 1 - start >= min_silence_chunks {
                speaking = false;
                for o in &mut out[start..i] {
                    *o = false;
                }
                silence_start = None;
                continue;
            }
        } else {
            silence_start = None;
        }
        out[i] = speaking;
    }
    out
}

/// One call's Silero detector, fed 20 ms frames.
pub struct SileroVad {
    model: SileroModel,
    stream: StreamState,
    pending: Vec<f32>,
    chunk: Vec<f32>,
    last: f32,
    /// Inference failures (the detector then repeats its last answer).
    pub errors: u64,
}

impl SileroVad {
    /// A detector with its own session.
    pub fn new(model: SileroModel) -> Self {
        Self {
            model,
            stream: StreamState::default(),
            pending: Vec::with_capacity(CHUNK + FRAME_16K),
            chunk: vec![0.0; CHUNK],
            last: 0.0,
            errors: 0,
        }
    }
}

impl Vad for SileroVad {
    fn speech_probability(&mut self, frame: &[f32]) -> f32 {
        self.pending.extend_from_slice(frame);
        while self.pending.len() >= CHUNK {
            self.chunk.copy_from_slice(&self.pending[..CHUNK]);
            self.pending.drain(..CHUNK);
            match self
                .model
                .run_batch(&[&self.chunk], std::slice::from_mut(&mut self.stream))
            {
                Ok(p) => self.last = p.first().copied().unwrap_or(self.last),
                Err(_) => self.errors += 1,
            }
        }
        self.last
    }

    fn reset(&mut self) {
        self.stream = StreamState::default();
        self.pending.clear();
        self.last = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_pauses_are_bridged_and_ends_are_retroactive() {
        let p = [
            0.0, 0.9, 0.9, 0.1, 0.1, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.4, 0.0,
        ];
        let d = speech_decisions(&p, 0.5, 4);
        assert_eq!(
            d,
            vec![
                false, true, true, true, true, true, true, false, false, false, false, false,
                false, false
            ]
        );
        // A probability between the thresholds keeps speech going but does not start it.
        assert_eq!(
            speech_decisions(&[0.4, 0.6, 0.4, 0.4], 0.5, 2),
            vec![false, true, true, true]
        );
    }
}
