//! The start of an outbound call, before the dialogue: who answered (our
//! detector on the callee's first seconds, or Asterisk's `AMD()` result
//! passed in the Stasis arguments), and for a machine the wait for its
//! beep before the message is left. Sans-IO: audio frames and elapsed time
//! in, one step out.

use aiagc_engine::amd::{Amd, AmdConfig, Answered, BeepDetector, Decision};
use std::time::Duration;

/// Where the person/machine decision is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmdMode {
    /// Not at all: every answered call runs the dialogue.
    Off,
    /// aiagc's detector on the media (the default).
    Aiagc,
    /// `AMD()` in the dialplan; its `AMDSTATUS` is the second Stasis
    /// argument (`Stasis(aiagc,outbound,${AMDSTATUS})`).
    Asterisk,
}

/// Outbound settings.
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    /// Who decides.
    pub amd: AmdMode,
    /// The detector's settings.
    pub detector: AmdConfig,
    /// Said to a machine after its beep (empty: hang up without a word).
    pub machine_message: String,
    /// Longest wait for the beep after a machine was detected.
    pub beep_wait: Duration,
    /// Silence after the machine's greeting that starts the message when
    /// no beep comes.
    pub no_beep_silence: Duration,
}

/// Asterisk's model tuned for German callers: "Hallo, wer ist da?" is four
/// words; with Asterisk's limit of two, such persons were taken for
/// machines (tests/amd.rs), while machines are caught by their greeting's
/// length anyway.
pub fn german_amd() -> AmdConfig {
    AmdConfig {
        maximum_number_of_words: 4,
        ..AmdConfig::default()
    }
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            amd: AmdMode::Aiagc,
            detector: german_amd(),
            machine_message: String::new(),
            beep_wait: Duration::from_secs(20),
            no_beep_silence: Duration::from_millis(1500),
        }
    }
}

/// What the call does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Keep listening.
    Wait,
    /// A person (or not sure): start the dialogue.
    Converse,
    /// A machine's greeting is over: leave the message, then hang up.
    LeaveMessage,
}

#[derive(Debug)]
enum Phase {
    Detecting,
    AwaitingBeep {
        since: Duration,
    },
    /// Decided: this step from now on.
    Done(Step),
}

/// One outbound call's start.
#[derive(Debug)]
pub struct Outbound {
    config: OutboundConfig,
    amd: Amd,
    beep: BeepDetector,
    phase: Phase,
    /// Elapsed time at the last voiced frame.
    last_voice: Duration,
    /// Elapsed time at the last frame given.
    now: Duration,
    decision: Option<Decision>,
    /// The beep ended (the message may start).
    beep_done: bool,
}

impl Outbound {
    /// A call answered now; `asterisk_status` is `AMDSTATUS` where the
    /// dialplan ran `AMD()`.
    pub fn new(config: OutboundConfig, asterisk_status: Option<&str>) -> Self {
        let mut me = Self {
            amd: Amd::new(config.detector),
            beep: BeepDetector::new(16000),
            phase: Phase::Detecting,
            last_voice: Duration::ZERO,
            now: Duration::ZERO,
            decision: None,
            beep_done: false,
            config,
        };
        if me.config.amd == AmdMode::Asterisk {
            let answered = match asterisk_status.map(str::to_ascii_uppercase).as_deref() {
                Some("MACHINE") => Answered::Machine,
                Some("HUMAN") => Answered::Human,
                _ => Answered::NotSure,
            };
            me.decided(Decision {
                answered,
                cause: format!("ASTERISK-{}", asterisk_status.unwrap_or("none")),
                at: Duration::ZERO,
            });
        }
        me
    }

    /// Who answered, once decided.
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.as_ref()
    }

    fn decided(&mut self, d: Decision) {
        self.phase = match d.answered {
            Answered::Machine => Phase::AwaitingBeep { since: self.now },
            _ => Phase::Done(Step::Converse),
        };
        self.decision = Some(d);
    }

    /// One 20 ms frame of the callee at 16 kHz, `elapsed` after answer.
    pub fn frame(&mut self, samples: &[f32], elapsed: Duration) {
        self.now = elapsed;
        let level =
            samples.iter().map(|s| s.abs()).sum::<f32>() / samples.len().max(1) as f32 * 32767.0;
        let beeping = self.beep.frame(samples);
        if level >= self.config.detector.silence_threshold as f32 && !beeping {
            self.last_voice = elapsed;
        }
        if self.beep.heard() && !beeping {
            self.beep_done = true;
        }
        if matches!(self.phase, Phase::Detecting) {
            if let Some(d) = self.amd.frame(samples).cloned() {
                self.decided(d);
            }
        }
    }

    /// What to do at `elapsed` after answer (call it on every wake-up).
    pub fn poll(&mut self, elapsed: Duration) -> Step {
        self.now = self.now.max(elapsed);
        if matches!(self.phase, Phase::Detecting) {
            // No audio is silence (a real Asterisk sends no RTP then).
            if let Some(d) = self
                .amd
                .advance(elapsed, Duration::from_millis(100))
                .cloned()
            {
                self.decided(d);
            }
        }
        match &self.phase {
            Phase::Detecting => Step::Wait,
            Phase::Done(step) => step.clone(),
            &Phase::AwaitingBeep { since } => {
                let quiet = elapsed.saturating_sub(self.last_voice);
                if self.beep_done
                    || quiet >= self.config.no_beep_silence
                    || elapsed.saturating_sub(since) >= self.config.beep_wait
                {
                    self.phase = Phase::Done(Step::LeaveMessage);
                    Step::LeaveMessage
                } else {
                    Step::Wait
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(level: f32, ms: u64) -> impl Iterator<Item = Vec<f32>> {
        (0..ms / 20).map(move |i| {
            (0..320)
                .map(|k| level * if (i * 320 + k) % 80 < 40 { 1.0 } else { -1.0 })
                .collect()
        })
    }

    fn run(o: &mut Outbound, chunks: &[(f32, u64)], t: &mut Duration) -> Step {
        for &(level, ms) in chunks {
            for f in frames(level, ms) {
                *t += Duration::from_millis(20);
                o.frame(&f, *t);
                let step = o.poll(*t);
                if step != Step::Wait {
                    return step;
                }
            }
        }
        Step::Wait
    }

    #[test]
    fn a_person_is_talked_to_and_a_machine_gets_the_message_after_its_beep() {
        let mut t = Duration::ZERO;
        let mut o = Outbound::new(OutboundConfig::default(), None);
        assert_eq!(
            run(&mut o, &[(0.0, 300), (0.2, 500), (0.0, 1500)], &mut t),
            Step::Converse
        );
        assert_eq!(o.decision().unwrap().answered, Answered::Human);

        // A long greeting, a pause, a beep: the message starts after the beep.
        let mut t = Duration::ZERO;
        let mut o = Outbound::new(OutboundConfig::default(), None);
        assert_eq!(
            run(&mut o, &[(0.0, 300), (0.2, 4000), (0.0, 300)], &mut t),
            Step::Wait
        );
        assert_eq!(o.decision().unwrap().answered, Answered::Machine);
        let beep: Vec<Vec<f32>> = (0..25)
            .map(|i| {
                (0..320)
                    .map(|k| {
                        0.3 * (2.0 * std::f32::consts::PI * 1000.0 * ((i * 320 + k) as f32)
                            / 16000.0)
                            .sin()
                    })
                    .collect()
            })
            .collect();
        for f in &beep {
            t += Duration::from_millis(20);
            o.frame(f, t);
            assert_eq!(o.poll(t), Step::Wait, "not during the beep");
        }
        assert_eq!(run(&mut o, &[(0.0, 100)], &mut t), Step::LeaveMessage);
        assert_eq!(o.poll(t), Step::LeaveMessage, "and stays decided");
    }

    #[test]
    fn no_beep_no_audio_and_the_dialplans_verdict() {
        // A machine without a beep: its greeting's end and 1.5 s of silence.
        let mut t = Duration::ZERO;
        let mut o = Outbound::new(OutboundConfig::default(), None);
        assert_eq!(run(&mut o, &[(0.2, 3000), (0.0, 1400)], &mut t), Step::Wait);
        assert_eq!(run(&mut o, &[(0.0, 200)], &mut t), Step::LeaveMessage);
        // Nothing at all (no RTP): by the clock, a machine after 2.5 s.
        let mut o = Outbound::new(OutboundConfig::default(), None);
        assert_eq!(o.poll(Duration::from_millis(2000)), Step::Wait);
        o.poll(Duration::from_millis(2700));
        assert_eq!(o.decision().unwrap().answered, Answered::Machine);
        // AMD() in the dialplan decided.
        let asterisk = OutboundConfig {
            amd: AmdMode::Asterisk,
            ..OutboundConfig::default()
        };
        let mut o = Outbound::new(asterisk.clone(), Some("HUMAN"));
        assert_eq!(o.poll(Duration::ZERO), Step::Converse);
        let mut o = Outbound::new(asterisk.clone(), Some("garbage"));
        assert_eq!(o.poll(Duration::ZERO), Step::Converse, "not sure: talk");
        assert_eq!(o.decision().unwrap().answered, Answered::NotSure);
        let mut o = Outbound::new(asterisk, Some("MACHINE"));
        assert_eq!(o.poll(Duration::ZERO), Step::Wait, "waits for the beep");
        assert_eq!(o.decision().unwrap().cause, "ASTERISK-MACHINE");
    }
}
