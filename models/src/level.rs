//! Telephone level for synthesized speech: loudness-normalized (EBU R128
//! integrated loudness, through the `ebur128` crate) to a target suited to
//! G.711, with a look-ahead peak limiter holding every sample below
//! −1 dBFS — µ-law and A-law then never clip, and every reply sounds
//! equally loud whatever the voice. The limiter's gain moves over ~2 ms
//! ramps around a peak, so it neither clips nor clicks.

/// Default target: −18 LUFS, in the −19 to −16 dBov band telephone
/// networks expect for speech.
pub const TARGET_LUFS: f64 = -18.0;

/// Peak ceiling after the gain: −1 dBFS.
pub const PEAK_DBFS: f64 = -1.0;

/// Loudness of `samples` (mono, `rate`) in LUFS; for clips shorter than
/// one 400 ms gating block, the RMS level (dBFS) stands in. `None` for
/// silence.
pub fn loudness(samples: &[f32], rate: u32) -> Option<f64> {
    let measured = ebur128::EbuR128::new(1, rate, ebur128::Mode::I)
        .ok()
        .and_then(|mut m| {
            m.add_frames_f32(samples).ok()?;
            m.loudness_global().ok()
        })
        .filter(|l| l.is_finite());
    measured.or_else(|| {
        let power =
            samples.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / samples.len().max(1) as f64;
        // −0.691 dB aligns a full-scale sine's RMS with its LUFS reading.
        (power > 1e-10).then(|| 10.0 * power.log10() - 0.691)
    })
}

/// Brings `samples` to `target` LUFS with peaks limited to [`PEAK_DBFS`];
/// returns the loudness gain applied (1.0 for silence).
pub fn normalize(samples: &mut [f32], rate: u32, target: f64) -> f32 {
    let ceiling = 10f64.powf(PEAK_DBFS / 20.0) as f32;
    let mut total = 1.0f32;
    // Limiting lowers the loudness a little: correct twice at most.
    for _ in 0..3 {
        let Some(level) = loudness(samples, rate) else {
            return total;
        };
        if (level - target).abs() < 0.3 {
            break;
        }
        let gain = 10f64.powf((target - level) / 20.0) as f32;
        for s in samples.iter_mut() {
            *s *= gain;
        }
        total *= gain;
        limit(samples, rate, ceiling);
    }
    total
}

/// Look-ahead limiter: each sample's gain is the smallest any sample
/// within 2 ms needs to stay below `ceiling`, averaged over 1 ms ramps
/// (never above what the sample itself needs).
pub fn limit(samples: &mut [f32], rate: u32, ceiling: f32) {
    let n = samples.len();
    if n == 0 || samples.iter().all(|s| s.abs() <= ceiling) {
        return;
    }
    let need: Vec<f32> = samples
        .iter()
        .map(|s| {
            if s.abs() > ceiling {
                ceiling / s.abs()
            } else {
                1.0
            }
        })
        .collect();
    let w = (rate as usize / 500).max(1); // 2 ms
                                          // Sliding minimum over [i - w, i + w] (monotonic deque).
    let mut min = vec![1.0f32; n];
    let mut deque: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    for j in 0..n + w {
        if j < n {
            while deque.back().is_some_and(|&k| need[k] >= need[j]) {
                deque.pop_back();
            }
            deque.push_back(j);
        }
        if j >= w {
            let i = j - w;
            while deque.front().is_some_and(|&k| k + w < i) {
                deque.pop_front();
            }
            min[i] = deque.front().map_or(1.0, |&k| need[k]);
        }
    }
    // Moving average over ±w/2: ramps instead of steps.
    let h = (w / 2).max(1);
    let mut prefix = vec![0.0f64; n + 1];
    for i in 0..n {
        prefix[i + 1] = prefix[i] + min[i] as f64;
    }
    for (i, s) in samples.iter_mut().enumerate() {
        let (a, b) = (i.saturating_sub(h), (i + h + 1).min(n));
        let g = ((prefix[b] - prefix[a]) / (b - a) as f64) as f32;
        *s *= g.min(need[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(amplitude: f32, seconds: f32, rate: u32) -> Vec<f32> {
        (0..(seconds * rate as f32) as usize)
            .map(|i| {
                let t = i as f32 / rate as f32;
                // Speech-like: a few harmonics with a slow envelope.
                let env = 0.6 + 0.4 * (2.0 * std::f32::consts::PI * 3.0 * t).sin();
                amplitude
                    * env
                    * [(220.0, 1.0), (440.0, 0.5), (880.0, 0.25), (1760.0, 0.12)]
                        .iter()
                        .map(|(f, a)| a * (2.0 * std::f32::consts::PI * f * t).sin())
                        .sum::<f32>()
                    / 1.87
            })
            .collect()
    }

    #[test]
    fn quiet_and_loud_clips_end_at_the_target() {
        for (amplitude, rate) in [(0.02, 22050), (0.3, 16000), (0.9, 22050), (0.005, 8000)] {
            let mut s = tone(amplitude, 1.5, rate);
            normalize(&mut s, rate, TARGET_LUFS);
            let l = loudness(&s, rate).unwrap();
            assert!(
                (l - TARGET_LUFS).abs() < 0.5,
                "amplitude {amplitude}: {l:.2} LUFS"
            );
            let peak = s.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            assert!(peak < 0.9, "peak {peak}");
        }
    }

    #[test]
    fn peaks_are_limited_without_losing_the_level_or_jumping() {
        // Quiet speech with clicks: the loudness gain alone would clip them.
        let mut s = tone(0.01, 1.0, 16000);
        for i in [4000, 8000, 12000] {
            s[i] = 0.5;
        }
        normalize(&mut s, 16000, TARGET_LUFS);
        let peak = s.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(peak <= 0.8913, "peak {peak}");
        let l = loudness(&s, 16000).unwrap();
        assert!((l - TARGET_LUFS).abs() < 0.5, "{l}");
        // The gain ramps: away from the clicks the tone is untouched in
        // shape (no step in its envelope larger than the tone's own).
        let steps = s.windows(2).map(|w| (w[1] - w[0]).abs());
        let natural = 2.0 * std::f32::consts::PI * 1760.0 / 16000.0;
        let largest = steps
            .enumerate()
            .filter(|(i, _)| [4000, 8000, 12000].iter().all(|c| i.abs_diff(*c) > 2))
            .map(|(_, d)| d)
            .fold(0.0f32, f32::max);
        assert!(largest < 0.9 * natural, "step {largest}");
    }

    #[test]
    fn the_limiter_holds_a_loud_tone_under_the_ceiling() {
        let mut s = tone(1.5, 0.5, 22050);
        limit(&mut s, 22050, 0.5);
        assert!(s.iter().all(|x| x.abs() <= 0.5 + 1e-6));
        assert!(s.iter().any(|x| x.abs() > 0.45), "not squashed to nothing");
    }

    #[test]
    fn short_clips_and_silence() {
        let mut short = tone(0.05, 0.2, 16000);
        normalize(&mut short, 16000, TARGET_LUFS);
        let l = loudness(&short, 16000).unwrap();
        assert!((l - TARGET_LUFS).abs() < 1.5, "{l}");
        let mut silence = vec![0.0; 16000];
        assert_eq!(normalize(&mut silence, 16000, TARGET_LUFS), 1.0);
        assert!(silence.iter().all(|&s| s == 0.0));
        assert_eq!(loudness(&[], 16000), None);
    }
}
