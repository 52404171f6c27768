//! G.711 µ-law and A-law (ITU-T G.711), sample by sample.
//!
//! Decoding is a 256-entry table built at compile time from the standard's
//! segment/mantissa layout; encoding follows the segment search of the
//! ITU-T G.191 reference (µ-law on 14 bits with bias 0x84, A-law on 13 bits),
//! so that `decode(encode(x))` is the reconstruction level of the decision
//! interval that holds `x`.

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

const fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let exponent = ((a >> 4) & 0x07) as i32;
    let mantissa = (a & 0x0F) as i32;
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn build_table(alaw: bool) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if alaw {
            alaw_to_linear(i as u8)
        } else {
            ulaw_to_linear(i as u8)
        };
        i += 1;
    }
    table
}

static ULAW_DECODE: [i16; 256] = build_table(false);
static ALAW_DECODE: [i16; 256] = build_table(true);

/// Decodes one µ-law code to a 16-bit linear sample.
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_DECODE[code as usize]
}

/// Decodes one A-law code to a 16-bit linear sample.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_DECODE[code as usize]
}

/// Encodes one 16-bit linear sample as µ-law.
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut x = sample as i32;
    let sign = if x < 0 {
        x = -x;
        0x80
    } else {
        0
    };
    x = x.min(ULAW_CLIP) + ULAW_BIAS;
    // Segment = position of the highest set bit among bits 7..=14.
    let exponent = (31 - (x as u32).leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (x >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// Encodes one 16-bit linear sample as A-law.
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    let mut x = (sample as i32) >> 3; // 13-bit
    let mask = if x >= 0 {
        0xD5
    } else {
        x = -x - 1;
        0x55
    };
    x = x.min(0x0FFF);
    let code = if x < 32 {
        x >> 1
    } else {
        let exponent = 31 - (x as u32).leading_zeros() as i32 - 4;
        (exponent << 4) | ((x >> exponent) & 0x0F)
    };
    (code as u8) ^ mask
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reconstruction values of G.711 (ITU-T G.191 `ulaw_expand`/`alaw_expand`
    /// scaled to 16 bits) at the segment ends, from the standard's tables.
    #[test]
    fn known_reference_values() {
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0xFE), 8);
        assert_eq!(ulaw_decode(0xEF), 132);
        assert_eq!(ulaw_decode(0x70), -120);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
    }

    /// Every code decodes to a level that encodes back to the same code
    /// (µ-law's two zeros both map to 0xFF).
    #[test]
    fn all_256_codes_round_trip() {
        for code in 0..=255u8 {
            let back = ulaw_encode(ulaw_decode(code));
            if code == 0x7F {
                assert_eq!(back, 0xFF);
            } else {
                assert_eq!(back, code, "µ-law code {code:#04x}");
            }
            assert_eq!(
                alaw_encode(alaw_decode(code)),
                code,
                "A-law code {code:#04x}"
            );
        }
    }

    /// The decode tables are strictly monotonic in the sign-magnitude order
    /// of the standard, with the segment step sizes of G.711.
    #[test]
    fn segment_steps_match_the_standard() {
        // µ-law positive codes 0xFF (smallest) down to 0x80 (largest).
        for seg in 0..8u8 {
            for m in 0..15u8 {
                let lo = ulaw_decode(!((seg << 4) | m));
                let hi = ulaw_decode(!((seg << 4) | (m + 1)));
                assert_eq!((hi - lo) as i32, 8 << seg, "µ-law segment {seg}");
            }
        }
        for seg in 0..8u8 {
            for m in 0..15u8 {
                let lo = alaw_decode((0x80 | (seg << 4) | m) ^ 0x55);
                let hi = alaw_decode((0x80 | (seg << 4) | (m + 1)) ^ 0x55);
                let step = if seg == 0 { 16 } else { 16 << (seg - 1) };
                assert_eq!((hi - lo) as i32, step, "A-law segment {seg}");
            }
        }
    }

    /// For every 16-bit input the chosen level is the midpoint of the
    /// decision interval holding it: the error is at most half that
    /// segment's step (plus the 2 or 3 bits the reference truncates), except
    /// beyond the largest level, where the encoder clips.
    #[test]
    fn encoder_picks_the_interval_holding_each_input() {
        for x in i16::MIN..=i16::MAX {
            let code = ulaw_encode(x);
            let exponent = ((!code >> 4) & 7) as i32;
            let err = (ulaw_decode(code) as i32 - x as i32).abs();
            let bound = if (x as i32).abs() > 32124 {
                644
            } else {
                (4 << exponent) + 4
            };
            assert!(
                err <= bound,
                "µ-law x={x} code={code:#04x} err={err} bound={bound}"
            );

            let code = alaw_encode(x);
            let exponent = (((code ^ 0x55) >> 4) & 7) as i32;
            let err = (alaw_decode(code) as i32 - x as i32).abs();
            let half = 8 << (exponent - 1).max(0);
            let bound = if (x as i32).abs() > 32256 {
                512
            } else {
                half + 8
            };
            assert!(
                err <= bound,
                "A-law x={x} code={code:#04x} err={err} bound={bound}"
            );
        }
    }
}
