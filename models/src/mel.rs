//! The mel filterbank whisper-style models use: Slaney-scale mel (linear
//! below 1 kHz, logarithmic above) with Slaney area normalisation, as
//! librosa computes it by default (`htk=False, norm="slaney"`), over the
//! `n_fft/2 + 1` bins of a real FFT.

/// Hz to mel on the Slaney scale.
pub fn hz_to_mel(hz: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if hz >= min_log_hz {
        min_log_mel + (hz / min_log_hz).ln() / logstep
    } else {
        hz / f_sp
    }
}

/// Mel to Hz on the Slaney scale.
pub fn mel_to_hz(mel: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel {
        min_log_hz * (logstep * (mel - min_log_mel)).exp()
    } else {
        f_sp * mel
    }
}

/// `n_mels` triangular filters over `n_fft/2 + 1` bins from 0 Hz to
/// `sample_rate/2`, row-major `[n_mels][n_fft/2 + 1]`.
pub fn filterbank(sample_rate: u32, n_fft: usize, n_mels: usize) -> Vec<f32> {
    filterbank_f64(sample_rate, n_fft, n_mels)
        .into_iter()
        .map(|w| w as f32)
        .collect()
}

/// [`filterbank`] in double precision.
pub fn filterbank_f64(sample_rate: u32, n_fft: usize, n_mels: usize) -> Vec<f64> {
    let bins = n_fft / 2 + 1;
    let nyquist = sample_rate as f64 / 2.0;
    let fft_freqs: Vec<f64> = (0..bins)
        .map(|i| nyquist * i as f64 / (bins - 1) as f64)
        .collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(nyquist));
    let mel_f: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut weights = vec![0f64; n_mels * bins];
    for m in 0..n_mels {
        let (left, center, right) = (mel_f[m], mel_f[m + 1], mel_f[m + 2]);
        let norm = 2.0 / (right - left);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let lower = (f - left) / (center - left);
            let upper = (right - f) / (right - center);
            weights[m * bins + k] = lower.min(upper).max(0.0) * norm;
        }
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slaney_scale_points() {
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(500.0) - 7.5).abs() < 1e-12);
        assert!((mel_to_hz(hz_to_mel(6000.0)) - 6000.0).abs() < 1e-9);
        assert!((hz_to_mel(8000.0) - 45.245640471924965).abs() < 1e-9);
    }

    /// Values of `librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)`
    /// (librosa 0.10.2, float32), the table whisper ships as mel_filters.
    #[test]
    fn matches_librosa_reference_values() {
        let f = filterbank(16000, 400, 80);
        assert_eq!(f.len(), 80 * 201);
        for &(m, k, want) in REFERENCE {
            let got = f[m * 201 + k];
            assert!(
                (got - want).abs() < 1e-6,
                "filter {m} bin {k}: {got} vs {want}"
            );
        }
    }

    const REFERENCE: &[(usize, usize, f32)] = &include!("mel_reference.in");
}
