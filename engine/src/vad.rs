//! Voice activity detection: the trait every detector implements, and the
//! built-in energy detector.
//!
//! A detector takes 16 kHz mono `f32` audio in 20 ms frames (320 samples)
//! and returns the probability that the frame holds speech. Detectors that
//! work on other chunk sizes (Silero: 512 samples) buffer internally and
//! answer with their latest estimate.

/// Samples in one 20 ms frame at the internal 16 kHz rate.
pub const FRAME_16K: usize = 320;

/// A speech detector fed with consecutive 20 ms frames of one call.
pub trait Vad: Send {
    /// Probability in `0.0..=1.0` that `frame` (320 samples, 16 kHz) is speech.
    fn speech_probability(&mut self, frame: &[f32]) -> f32;
    /// Forgets all state (a new stream).
    fn reset(&mut self);
}

/// Energy detector with an adaptive noise floor.
///
/// The frame level in dBFS is compared with the tracked noise floor plus a
/// margin (and an absolute gate); the distance maps to a probability
/// through a logistic curve. The floor follows quiet frames quickly and
/// rises slowly (3 dB/s), so steady line noise is learned while speech is not.
#[derive(Debug, Clone)]
pub struct EnergyVad {
    floor_db: f32,
    /// dB above the noise floor that counts as speech.
    pub margin_db: f32,
    /// Level under which nothing is speech, in dBFS.
    pub gate_db: f32,
}

impl Default for EnergyVad {
    fn default() -> Self {
        Self {
            floor_db: -60.0,
            margin_db: 12.0,
            gate_db: -48.0,
        }
    }
}

/// Level of a frame in dBFS (full scale = 1.0).
pub fn level_dbfs(frame: &[f32]) -> f32 {
    if frame.is_empty() {
        return -100.0;
    }
    let power = frame.iter().map(|x| x * x).sum::<f32>() / frame.len() as f32;
    10.0 * (power + 1e-10).log10()
}

impl Vad for EnergyVad {
    fn speech_probability(&mut self, frame: &[f32]) -> f32 {
        let level = level_dbfs(frame);
        if level < self.floor_db {
            self.floor_db = 0.5 * self.floor_db + 0.5 * level;
        } else {
            self.floor_db += 0.06;
        }
        self.floor_db = self.floor_db.clamp(-80.0, -20.0);
        let threshold = (self.floor_db + self.margin_db).max(self.gate_db);
        1.0 / (1.0 + (-(level - threshold) / 2.0).exp())
    }

    fn reset(&mut self) {
        *self = Self {
            margin_db: self.margin_db,
            gate_db: self.gate_db,
            ..Self::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(amplitude: f32) -> Vec<f32> {
        (0..FRAME_16K)
            .map(|i| amplitude * (i as f32 * 0.2).sin())
            .collect()
    }

    #[test]
    fn speech_level_is_speech_and_silence_is_not() {
        let mut vad = EnergyVad::default();
        for _ in 0..20 {
            assert!(vad.speech_probability(&[0.0; FRAME_16K]) < 0.01);
        }
        assert!(vad.speech_probability(&tone(0.1)) > 0.99);
        assert!(vad.speech_probability(&tone(0.001)) < 0.05);
    }

    #[test]
    fn steady_noise_is_learned_as_floor() {
        let mut vad = EnergyVad::default();
        let noise = tone(0.02); // about -37 dBFS
        let first = vad.speech_probability(&noise);
        let mut last = first;
        for _ in 0..500 {
            last = vad.speech_probability(&noise);
        }
        assert!(
            first > 0.9,
            "noise above the initial floor looks like speech at first"
        );
        assert!(last < 0.2, "after 10 s it is floor: {last}");
        // Speech 20 dB above the noise still counts.
        assert!(vad.speech_probability(&tone(0.2)) > 0.9);
    }
}
