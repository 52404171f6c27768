//! G.722 (ITU-T G.722, 64 kbit/s mode 1): sub-band ADPCM at 16 kHz.
//!
//! One byte carries two samples (a 6-bit lower-band code and a 2-bit
//! higher-band code), so a 20 ms frame is 320 samples in 160 bytes. The RTP
//! clock is 8000 Hz (RFC 3551 §4.5.2): timestamps advance 160 per packet
//! although the audio is wideband. It is the wideband format a real
//! Asterisk plays back over externalMedia RTP (static payload type 9);
//! `slin16` (dynamic 118) is dropped there.
//!
//! Written here from the standard's block diagram (QMF, the lower band's
//! 6-bit quantizer with a 4-bit predictor loop, the higher band's 2-bit
//! quantizer, the two-pole six-zero predictor of block 4) because neither
//! Rust crate on crates.io matched a real Asterisk: `audio-codec` 0.4 and
//! `ezk-g722` 0.1 start their quantizer step sizes away from the
//! standard's reset values (32 and 8), so their first frames differ. The
//! ITU-T test sequences are not in any registry these machines reach; the
//! reference is Asterisk 22.10.1's `codec_g722`, which this matches bit for
//! bit both ways (`tests/asterisk_codec.rs`). 16-bit linear input, as
//! Asterisk feeds it (not the 14-bit test-sequence mode).
//!
//! Encoder and decoder are stateful (predictors, step sizes, QMF delay
//! line): one of each per stream, fed in order. No allocation.

use super::CodecError;

/// Transmit and receive QMF coefficients: the even taps of the 24-tap
/// symmetric filter; the odd taps are the same read backwards.
const QMF: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];

/// Lower band: decision levels of the 6-bit quantizer (scaled by the step
/// size), and the codes of each interval for a negative / positive error.
const Q6: [i32; 31] = [
    0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940,
    1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919, 0,
];
const ILN: [u8; 31] = [
    0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11,
    10, 9, 8, 7, 6, 5, 4,
];
const ILP: [u8; 31] = [
    0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39,
    38, 37, 36, 35, 34, 33, 32,
];

/// Lower band inverse quantizers: 6-bit (the decoder's output) and 4-bit
/// (the predictor loop of both sides).
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280,
    11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776,
    2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];
const QM4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];
/// Lower band log step-size adaptation, indexed through `RL42`.
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
const RL42: [usize; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];

/// Higher band: codes for a negative / positive error (index 1 inner, 2
/// outer interval), inverse quantizer, log step-size adaptation.
const IHN: [u8; 3] = [0, 1, 0];
const IHP: [u8; 3] = [0, 3, 2];
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
const WH: [i32; 3] = [0, -214, 798];
const RH2: [usize; 4] = [2, 1, 2, 1];

/// Linear step size from the log step size: 2^(i/32) on 11 bits.
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];

#[inline]
fn sat(x: i32) -> i32 {
    x.clamp(i16::MIN as i32, i16::MAX as i32)
}

/// The ADPCM state of one sub-band.
#[derive(Debug, Clone)]
struct Band {
    /// Signal estimate (pole + zero predictor).
    s: i32,
    /// Pole and zero parts of the estimate.
    sp: i32,
    sz: i32,
    /// Reconstructed signal, now and the two before.
    r: [i32; 3],
    /// Pole coefficients a1, a2 (index 0 unused).
    a: [i32; 3],
    /// Partially reconstructed signal (zero part + difference).
    p: [i32; 3],
    /// Quantized differences, now and the six before.
    d: [i32; 7],
    /// Zero coefficients b1..b6 (index 0 unused).
    b: [i32; 7],
    /// Log step size (∇) and linear step size (Δ).
    nb: i32,
    det: i32,
}

impl Band {
    /// The standard's reset state: everything zero but the step size.
    fn reset(det: i32) -> Self {
        Self {
            s: 0,
            sp: 0,
            sz: 0,
            r: [0; 3],
            a: [0; 3],
            p: [0; 3],
            d: [0; 7],
            b: [0; 7],
            nb: 0,
            det,
        }
    }

    /// Step-size adaptation (blocks 3L/3H): leak the log step size, add
    /// the code's weight, clamp, convert to linear.
    fn adapt_step(&mut self, weight: i32, max: i32, offset: i32) {
        self.nb = (((self.nb * 127) >> 7) + weight).clamp(0, max);
        let mantissa = ILB[((self.nb >> 6) & 31) as usize];
        let shift = offset - (self.nb >> 11);
        let linear = if shift < 0 {
            mantissa << -shift
        } else {
            mantissa >> shift
        };
        self.det = linear << 2;
    }

    /// Block 4: reconstruct, adapt the predictor with the quantized
    /// difference `d`, and predict the next sample.
    fn predict(&mut self, d: i32) {
        self.d[0] = d;
        self.r[0] = sat(self.s + d);
        self.p[0] = sat(self.sz + d);
        let sign = |x: i32| x >> 15;

        // Second pole coefficient.
        let (g0, g1, g2) = (sign(self.p[0]), sign(self.p[1]), sign(self.p[2]));
        let a1x4 = sat(self.a[1] << 2);
        let mut t = if g0 == g1 { -a1x4 } else { a1x4 };
        t = t.min(32767);
        let mut a2 = (t >> 7) + if g0 == g2 { 128 } else { -128 };
        a2 += (self.a[2] * 32512) >> 15;
        let a2 = a2.clamp(-12288, 12288);

        // First pole coefficient, limited by the second.
        let step = if g0 == g1 { 192 } else { -192 };
        let mut a1 = sat(step + ((self.a[1] * 32640) >> 15));
        let limit = sat(15360 - a2);
        a1 = a1.clamp(-limit, limit);

        // Zero coefficients: sign-sign towards the difference.
        let gain = if d == 0 { 0 } else { 128 };
        let gd = sign(d);
        let mut b = [0i32; 7];
        for (i, bi) in b.iter_mut().enumerate().skip(1) {
            let towards = if sign(self.d[i]) == gd { gain } else { -gain };
            *bi = sat(towards + ((self.b[i] * 32640) >> 15));
        }

        // Delay lines.
        for i in (1..7).rev() {
            self.d[i] = self.d[i - 1];
        }
        self.b = b;
        for i in (1..3).rev() {
            self.r[i] = self.r[i - 1];
            self.p[i] = self.p[i - 1];
        }
        self.a[1] = a1;
        self.a[2] = a2;

        // Pole and zero predictors.
        let pole = |a: i32, r: i32| (a * sat(r + r)) >> 15;
        self.sp = sat(pole(self.a[1], self.r[1]) + pole(self.a[2], self.r[2]));
        let mut sz = 0;
        for i in (1..7).rev() {
            sz += (self.b[i] * sat(self.d[i] + self.d[i])) >> 15;
        }
        self.sz = sat(sz);
        self.s = sat(self.sp + self.sz);
    }
}

/// G.722 encoder state of one stream.
#[derive(Debug, Clone)]
pub struct G722Encoder {
    /// QMF delay line, oldest first.
    x: [i32; 24],
    low: Band,
    high: Band,
}

impl Default for G722Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Encoder {
    /// A 64 kbit/s encoder taking 16 kHz PCM.
    pub fn new() -> Self {
        Self {
            x: [0; 24],
            low: Band::reset(32),
            high: Band::reset(8),
        }
    }

    /// Encodes `pcm` into `out`, one byte per two samples; returns the
    /// payload length. A trailing odd sample is dropped.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        let pairs = pcm.len() / 2;
        if pairs > out.len() {
            return Err(CodecError::G722(format!(
                "{pairs} bytes do not fit a {}-byte buffer",
                out.len()
            )));
        }
        for (pair, byte) in pcm.chunks_exact(2).zip(out.iter_mut()) {
            *byte = self.encode_pair(pair[0] as i32, pair[1] as i32);
        }
        Ok(pairs)
    }

    fn encode_pair(&mut self, first: i32, second: i32) -> u8 {
        // Transmit QMF: split into a lower and a higher band at 8 kHz each.
        self.x.copy_within(2.., 0);
        self.x[22] = first;
        self.x[23] = second;
        let (mut odd, mut even) = (0i32, 0i32);
        for i in 0..12 {
            odd += self.x[2 * i] * QMF[i];
            even += self.x[2 * i + 1] * QMF[11 - i];
        }
        let xlow = (even + odd) >> 14;
        let xhigh = (even - odd) >> 14;

        // Lower band: 6-bit code; the predictor loop sees its 4 top bits.
        let el = sat(xlow - self.low.s);
        let magnitude = if el >= 0 { el } else { -(el + 1) };
        let mut i = 1;
        while i < 30 && magnitude >= (Q6[i] * self.low.det) >> 12 {
            i += 1;
        }
        let ilow = if el < 0 { ILN[i] } else { ILP[i] };
        let ril = (ilow >> 2) as usize;
        let dlow = (self.low.det * QM4[ril]) >> 15;
        self.low.adapt_step(WL[RL42[ril]], 18432, 8);
        self.low.predict(dlow);

        // Higher band: 2-bit code.
        let eh = sat(xhigh - self.high.s);
        let magnitude = if eh >= 0 { eh } else { -(eh + 1) };
        let outer = if magnitude >= (564 * self.high.det) >> 12 {
            2
        } else {
            1
        };
        let ihigh = if eh < 0 { IHN[outer] } else { IHP[outer] };
        let dhigh = (self.high.det * QM2[ihigh as usize]) >> 15;
        self.high.adapt_step(WH[RH2[ihigh as usize]], 22528, 10);
        self.high.predict(dhigh);

        (ihigh << 6) | ilow
    }
}

/// G.722 decoder state of one stream.
#[derive(Debug, Clone)]
pub struct G722Decoder {
    x: [i32; 24],
    low: Band,
    high: Band,
}

impl Default for G722Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Decoder {
    /// A 64 kbit/s decoder producing 16 kHz PCM.
    pub fn new() -> Self {
        Self {
            x: [0; 24],
            low: Band::reset(32),
            high: Band::reset(8),
        }
    }

    /// Decodes one payload (two samples per byte) into `out`.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        let n = payload.len() * 2;
        if n > out.len() {
            return Err(CodecError::TooLong(n));
        }
        for (&code, pair) in payload.iter().zip(out.chunks_exact_mut(2)) {
            let (a, b) = self.decode_byte(code);
            pair[0] = a;
            pair[1] = b;
        }
        Ok(n)
    }

    fn decode_byte(&mut self, code: u8) -> (i16, i16) {
        let ilow = (code & 0x3F) as usize;
        let ihigh = (code >> 6) as usize;

        // Lower band: output from all 6 bits, predictor from the top 4.
        let rlow = (self.low.s + ((self.low.det * QM6[ilow]) >> 15)).clamp(-16384, 16383);
        let ril = ilow >> 2;
        let dlow = (self.low.det * QM4[ril]) >> 15;
        self.low.adapt_step(WL[RL42[ril]], 18432, 8);
        self.low.predict(dlow);

        // Higher band.
        let dhigh = (self.high.det * QM2[ihigh]) >> 15;
        let rhigh = (dhigh + self.high.s).clamp(-16384, 16383);
        self.high.adapt_step(WH[RH2[ihigh]], 22528, 10);
        self.high.predict(dhigh);

        // Receive QMF: two 16 kHz samples from the two bands.
        self.x.copy_within(2.., 0);
        self.x[22] = rlow + rhigh;
        self.x[23] = rlow - rhigh;
        let (mut first, mut second) = (0i32, 0i32);
        for i in 0..12 {
            second += self.x[2 * i] * QMF[i];
            first += self.x[2 * i + 1] * QMF[11 - i];
        }
        (sat(first >> 11) as i16, sat(second >> 11) as i16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, hz: f32, amp: f32) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (2.0 * std::f32::consts::PI * hz * i as f32 / 16000.0).sin()) as i16)
            .collect()
    }

    fn rms(x: &[i16]) -> f32 {
        (x.iter().map(|&s| (s as f32).powi(2)).sum::<f32>() / x.len() as f32).sqrt()
    }

    /// A 20 ms frame is 160 bytes; a tone survives the round trip with its
    /// level, both in the lower (1 kHz) and in the higher sub-band (5 kHz,
    /// which G.711 cannot carry at all).
    #[test]
    fn round_trip_keeps_low_and_high_band() {
        for hz in [1000.0, 5000.0] {
            let pcm = tone(16000, hz, 8000.0);
            let (mut enc, mut dec) = (G722Encoder::new(), G722Decoder::new());
            let mut back = Vec::new();
            for frame in pcm.chunks(320) {
                let mut payload = [0u8; 160];
                assert_eq!(enc.encode(frame, &mut payload), Ok(160));
                let mut out = [0i16; 320];
                assert_eq!(dec.decode(&payload, &mut out), Ok(320));
                back.extend_from_slice(&out);
            }
            let (a, b) = (rms(&pcm[1600..]), rms(&back[1600..]));
            assert!((b / a - 1.0).abs() < 0.1, "{hz} Hz: {a} in, {b} out");
        }
    }

    /// Silence in gives (near) silence out, and full-scale square waves
    /// neither overflow nor leave the predictor stuck.
    #[test]
    fn silence_and_overload_stay_bounded() {
        let (mut enc, mut dec) = (G722Encoder::new(), G722Decoder::new());
        let square: Vec<i16> = (0..3200)
            .map(|i| if (i / 7) % 2 == 0 { i16::MAX } else { i16::MIN })
            .collect();
        let mut payload = [0u8; 1600];
        let mut out = [0i16; 3200];
        enc.encode(&square, &mut payload).unwrap();
        dec.decode(&payload, &mut out).unwrap();
        let silence = [0i16; 3200];
        enc.encode(&silence, &mut payload).unwrap();
        dec.decode(&payload, &mut out).unwrap();
        assert!(
            rms(&out[1600..]) < 50.0,
            "the codec settles after overload: {}",
            rms(&out[1600..])
        );
    }

    #[test]
    fn buffers_too_small_are_errors() {
        let mut dec = G722Decoder::new();
        let mut out = [0i16; 320];
        assert_eq!(
            dec.decode(&[0u8; 161], &mut out),
            Err(CodecError::TooLong(322))
        );
        assert_eq!(dec.decode(&[], &mut out), Ok(0));
        let mut enc = G722Encoder::new();
        assert!(enc.encode(&[0i16; 322], &mut [0u8; 160]).is_err());
        assert_eq!(enc.encode(&[0i16; 321], &mut [0u8; 160]), Ok(160));
    }
}
