//! Who answered an outbound call: a person or an answering machine, from
//! the first seconds of what the callee's side sends, and the beep after a
//! machine's greeting.
//!
//! The decision follows the model of Asterisk's `AMD()` (the same
//! parameters, names and defaults as its `amd.conf`): a person answers
//! with a short greeting ("Hallo?", "Müller.") and waits; a machine talks
//! longer, in more words, or starts only after a long silence. Frames
//! are voice when their mean absolute level reaches `silence_threshold`
//! (of 32767, as Asterisk's silence detector). Time is passed in: frames
//! advance it 20 ms each, and [`Amd::advance`] counts wall time without
//! audio (a real Asterisk sends no RTP while the far end is silent) as
//! silence.

use std::time::Duration;

/// `amd.conf`'s settings, in its units (ms; level of 32767).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmdConfig {
    /// Silence before any greeting that makes it a machine.
    pub initial_silence_ms: u32,
    /// Voice in the greeting that makes it a machine.
    pub greeting_ms: u32,
    /// Silence after the greeting that makes it a person.
    pub after_greeting_silence_ms: u32,
    /// Longest analysis; then "not sure".
    pub total_analysis_time_ms: u32,
    /// Voice that counts as a word.
    pub min_word_length_ms: u32,
    /// One word this long makes it a machine.
    pub maximum_word_length_ms: u32,
    /// Silence that separates words.
    pub between_words_silence_ms: u32,
    /// More words than this make it a machine.
    pub maximum_number_of_words: u32,
    /// Mean absolute sample level (of 32767) below which a frame is silence.
    pub silence_threshold: u32,
}

impl Default for AmdConfig {
    /// Asterisk 22's defaults.
    fn default() -> Self {
        Self {
            initial_silence_ms: 2500,
            greeting_ms: 1500,
            after_greeting_silence_ms: 800,
            total_analysis_time_ms: 5000,
            min_word_length_ms: 100,
            maximum_word_length_ms: 5000,
            between_words_silence_ms: 50,
            maximum_number_of_words: 2,
            silence_threshold: 256,
        }
    }
}

/// Who answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// A person.
    Human,
    /// An answering machine (or a voicemail box).
    Machine,
    /// No decision within the analysis time.
    NotSure,
}

impl Answered {
    /// As Asterisk's `AMDSTATUS` says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Answered::Human => "HUMAN",
            Answered::Machine => "MACHINE",
            Answered::NotSure => "NOTSURE",
        }
    }
}

/// Why, as Asterisk's `AMDCAUSE` (`LONGGREETING-1500-1500`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The verdict.
    pub answered: Answered,
    /// The cause with its figures.
    pub cause: String,
    /// Time from the start of the analysis.
    pub at: Duration,
}

/// The detector of one call (see the module doc).
#[derive(Debug, Clone)]
pub struct Amd {
    config: AmdConfig,
    /// Time analysed, ms.
    t: u32,
    silence: u32,
    voice_run: u32,
    voice_total: u32,
    words: u32,
    in_word: bool,
    in_greeting: bool,
    decided: Option<Decision>,
}

/// Frame length, ms.
const FRAME_MS: u32 = 20;

impl Amd {
    /// A detector with `config`.
    pub fn new(config: AmdConfig) -> Self {
        Self {
            config,
            t: 0,
            silence: 0,
            voice_run: 0,
            voice_total: 0,
            words: 0,
            in_word: false,
            in_greeting: false,
            decided: None,
        }
    }

    /// The decision, once made.
    pub fn decision(&self) -> Option<&Decision> {
        self.decided.as_ref()
    }

    /// One 20 ms frame of the callee's audio (samples in −1…1).
    pub fn frame(&mut self, samples: &[f32]) -> Option<&Decision> {
        let level = if samples.is_empty() {
            0.0
        } else {
            samples.iter().map(|s| s.abs()).sum::<f32>() / samples.len() as f32 * 32767.0
        };
        self.step(level >= self.config.silence_threshold as f32)
    }

    /// Wall time since the analysis began: time beyond the audio analysed
    /// (less `lag`, the jitter buffer's hold-back) is silence.
    pub fn advance(&mut self, elapsed: Duration, lag: Duration) -> Option<&Decision> {
        let target = elapsed.saturating_sub(lag).as_millis() as u32;
        while self.decided.is_none() && self.t + FRAME_MS <= target {
            self.step(false);
        }
        self.decided.as_ref()
    }

    fn decide(&mut self, answered: Answered, cause: String) {
        self.decided = Some(Decision {
            answered,
            cause,
            at: Duration::from_millis(self.t as u64),
        });
    }

    fn step(&mut self, voiced: bool) -> Option<&Decision> {
        if self.decided.is_some() {
            return self.decided.as_ref();
        }
        let c = self.config;
        self.t += FRAME_MS;
        if self.t >= c.total_analysis_time_ms {
            self.decide(Answered::NotSure, format!("TOOLONG-{}", self.t));
            return self.decided.as_ref();
        }
        if !voiced {
            self.silence += FRAME_MS;
            if self.silence >= c.between_words_silence_ms {
                self.in_word = false;
                self.voice_run = 0;
            }
            if !self.in_greeting && self.silence >= c.initial_silence_ms {
                self.decide(
                    Answered::Machine,
                    format!("INITIALSILENCE-{}-{}", self.silence, c.initial_silence_ms),
                );
            } else if self.in_greeting && self.silence >= c.after_greeting_silence_ms {
                self.decide(
                    Answered::Human,
                    format!("HUMAN-{}-{}", self.silence, c.after_greeting_silence_ms),
                );
            }
            return self.decided.as_ref();
        }
        self.voice_run += FRAME_MS;
        self.voice_total += FRAME_MS;
        if self.voice_run >= c.min_word_length_ms && !self.in_word {
            self.words += 1;
            self.in_word = true;
        }
        if self.voice_run >= c.maximum_word_length_ms {
            self.decide(
                Answered::Machine,
                format!("MAXWORDLENGTH-{}", self.voice_run),
            );
        } else if self.words > c.maximum_number_of_words {
            self.decide(
                Answered::Machine,
                format!("MAXWORDS-{}-{}", self.words, c.maximum_number_of_words),
            );
        } else if self.in_greeting && self.voice_total >= c.greeting_ms {
            self.decide(
                Answered::Machine,
                format!("LONGGREETING-{}-{}", self.voice_total, c.greeting_ms),
            );
        } else {
            if self.voice_total >= c.min_word_length_ms {
                self.silence = 0;
            }
            if self.voice_run >= c.min_word_length_ms {
                self.in_greeting = true;
            }
        }
        self.decided.as_ref()
    }
}

/// The beep of a voicemail box: one steady tone (a single frequency
/// carries most of the frame's energy, the same one frame after frame).
#[derive(Debug, Clone)]
pub struct BeepDetector {
    rate: u32,
    run: u32,
    last_bin: Option<usize>,
    heard: bool,
}

/// Tone frequencies searched, Hz (voicemail beeps are 400–2000 Hz).
const BEEP_LOW: f32 = 350.0;
const BEEP_HIGH: f32 = 2100.0;
const BEEP_STEP: f32 = 25.0;
/// Share of a frame's energy in the strongest frequency for a tone.
const BEEP_PURITY: f32 = 0.6;
/// Frames in a row of the same tone that make a beep (120 ms).
const BEEP_FRAMES: u32 = 6;
/// Quietest tone, mean square (about −40 dBFS).
const BEEP_FLOOR: f32 = 1e-4;

impl BeepDetector {
    /// For frames at `rate` Hz.
    pub fn new(rate: u32) -> Self {
        Self {
            rate,
            run: 0,
            last_bin: None,
            heard: false,
        }
    }

    /// A beep has been heard (and has ended, or is going on).
    pub fn heard(&self) -> bool {
        self.heard
    }

    /// Whether a beep is sounding in this frame's run.
    pub fn frame(&mut self, samples: &[f32]) -> bool {
        let n = samples.len();
        if n == 0 {
            return false;
        }
        let energy = samples.iter().map(|s| s * s).sum::<f32>();
        let mut best = (0usize, 0.0f32);
        if energy / n as f32 >= BEEP_FLOOR {
            let bins = ((BEEP_HIGH - BEEP_LOW) / BEEP_STEP) as usize;
            for b in 0..=bins {
                let f = BEEP_LOW + b as f32 * BEEP_STEP;
                let p = goertzel(samples, f, self.rate);
                if p > best.1 {
                    best = (b, p);
                }
            }
        }
        // Normalised so a pure tone at a searched frequency gives ~1.
        let purity = if energy > 0.0 {
            2.0 * best.1 / (n as f32 * energy)
        } else {
            0.0
        };
        let tone = purity >= BEEP_PURITY;
        let same = self.last_bin.is_some_and(|l| l.abs_diff(best.0) <= 1);
        if tone && (same || self.run == 0) {
            self.run += 1;
            self.last_bin = Some(best.0);
        } else if tone {
            self.run = 1;
            self.last_bin = Some(best.0);
        } else {
            self.run = 0;
            self.last_bin = None;
        }
        if self.run >= BEEP_FRAMES {
            self.heard = true;
        }
        self.run >= BEEP_FRAMES
    }
}

/// Power |X(f)|² of `x` at `f` Hz.
fn goertzel(x: &[f32], f: f32, rate: u32) -> f32 {
    let w = 2.0 * std::f32::consts::PI * f / rate as f32;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &v in x {
        let s = v + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 16000;

    fn frames(pattern: &[(bool, u32)]) -> Vec<Vec<f32>> {
        // Voice: a noisy 200 Hz buzz at about −20 dBFS; silence: −70 dBFS.
        let mut out = Vec::new();
        let mut i = 0u32;
        for &(voiced, ms) in pattern {
            for _ in 0..ms / 20 {
                let f: Vec<f32> = (0..320)
                    .map(|k| {
                        let t = (i * 320 + k) as f32 / RATE as f32;
                        if voiced {
                            0.1 * (2.0 * std::f32::consts::PI * 200.0 * t).sin().signum()
                                * (0.5 + 0.5 * (t * 3.0).sin().abs())
                        } else {
                            0.0003 * ((k * 7919 % 100) as f32 / 50.0 - 1.0)
                        }
                    })
                    .collect();
                out.push(f);
                i += 1;
            }
        }
        out
    }

    fn run(pattern: &[(bool, u32)]) -> Decision {
        let mut amd = Amd::new(AmdConfig::default());
        for f in frames(pattern) {
            if let Some(d) = amd.frame(&f) {
                return d.clone();
            }
        }
        panic!("no decision for {pattern:?}");
    }

    #[test]
    fn a_short_hello_then_waiting_is_a_person() {
        let d = run(&[(false, 400), (true, 500), (false, 2000)]);
        assert_eq!(d.answered, Answered::Human, "{d:?}");
        assert_eq!(d.cause, "HUMAN-800-800");
        assert_eq!(d.at, Duration::from_millis(400 + 500 + 800));
        // Two words ("Ja, bitte?") are still a person.
        let d = run(&[
            (false, 300),
            (true, 200),
            (false, 120),
            (true, 400),
            (false, 1500),
        ]);
        assert_eq!(d.answered, Answered::Human, "{d:?}");
    }

    #[test]
    fn long_or_wordy_greetings_and_long_silence_are_machines() {
        let d = run(&[(false, 300), (true, 2000)]);
        assert_eq!(
            (d.answered, d.cause.as_str()),
            (Answered::Machine, "LONGGREETING-1500-1500")
        );
        let d = run(&[
            (false, 200),
            (true, 200),
            (false, 100),
            (true, 200),
            (false, 100),
            (true, 200),
            (false, 100),
        ]);
        assert_eq!(
            (d.answered, d.cause.as_str()),
            (Answered::Machine, "MAXWORDS-3-2")
        );
        let d = run(&[(false, 3000)]);
        assert_eq!(
            (d.answered, d.cause.as_str()),
            (Answered::Machine, "INITIALSILENCE-2500-2500")
        );
        assert_eq!(d.at, Duration::from_millis(2500));
    }

    #[test]
    fn no_audio_at_all_counts_as_silence_by_the_clock() {
        let mut amd = Amd::new(AmdConfig::default());
        assert!(amd
            .advance(Duration::from_millis(2000), Duration::from_millis(60))
            .is_none());
        let d = amd
            .advance(Duration::from_millis(2600), Duration::from_millis(60))
            .unwrap();
        assert_eq!(d.answered, Answered::Machine);
        // After a decision nothing changes it.
        let d2 = amd.frame(&[0.5; 320]).unwrap().clone();
        assert_eq!(d2.answered, Answered::Machine);
    }

    #[test]
    fn endless_short_words_are_not_sure_after_the_analysis_time() {
        let cfg = AmdConfig {
            maximum_number_of_words: 100,
            greeting_ms: 10_000,
            ..AmdConfig::default()
        };
        let mut amd = Amd::new(cfg);
        let mut decided = None;
        for f in frames(&[(true, 100), (false, 100)].repeat(40)) {
            if let Some(d) = amd.frame(&f) {
                decided = Some(d.clone());
                break;
            }
        }
        let d = decided.unwrap();
        assert_eq!(d.answered, Answered::NotSure);
        assert!(d.cause.starts_with("TOOLONG-"), "{d:?}");
    }

    fn tone(f: f32, ms: u32, amp: f32) -> Vec<Vec<f32>> {
        let n = (ms / 20) as usize;
        (0..n)
            .map(|i| {
                (0..320)
                    .map(|k| {
                        amp * (2.0 * std::f32::consts::PI * f * ((i * 320 + k) as f32)
                            / RATE as f32)
                            .sin()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_steady_tone_is_a_beep_and_buzz_or_quiet_is_not() {
        for f in [425.0, 440.0, 850.0, 1000.0, 1400.0, 1987.0] {
            let mut b = BeepDetector::new(RATE);
            let on = tone(f, 400, 0.3).iter().filter(|fr| b.frame(fr)).count();
            assert!(b.heard() && on >= 10, "{f} Hz: {on}");
        }
        // Too short (80 ms), too quiet, or speech-like buzz: no beep.
        let mut b = BeepDetector::new(RATE);
        tone(1000.0, 80, 0.3).iter().for_each(|f| {
            b.frame(f);
        });
        assert!(!b.heard());
        let mut b = BeepDetector::new(RATE);
        tone(1000.0, 400, 0.003).iter().for_each(|f| {
            b.frame(f);
        });
        assert!(!b.heard());
        let mut b = BeepDetector::new(RATE);
        for f in frames(&[(true, 2000)]) {
            b.frame(&f);
        }
        assert!(!b.heard(), "a buzz with harmonics is no beep");
    }
}
