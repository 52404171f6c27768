//! Endpointing: speech probabilities in, speech start/end and barge-in out.
//!
//! Frame-driven and clock-free: each 20 ms frame's probability and audio go
//! in with the frame's position; decisions come out as [`Endpoint`] values.
//! While the agent is talking, starting speech needs a higher probability
//! for longer (the barge-in guard), so our own echo does not interrupt us.

use crate::vad::FRAME_16K;
use std::time::Duration;

const FRAME: Duration = Duration::from_millis(20);

/// Thresholds and durations of the endpointer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndpointConfig {
    /// Probability at or above which a frame is voiced (to start).
    pub start_threshold: f32,
    /// Probability below which a frame is silent (to end).
    pub end_threshold: f32,
    /// Voiced time needed to declare speech.
    pub min_speech: Duration,
    /// Silence after speech that ends the turn.
    pub hangover: Duration,
    /// Audio kept before the detected start.
    pub pre_roll: Duration,
    /// Silence kept after the last voiced frame in the utterance.
    pub tail: Duration,
    /// Longest utterance; a longer one is cut and handed on.
    pub max_utterance: Duration,
    /// Start threshold while the agent is talking.
    pub barge_in_threshold: f32,
    /// Voiced time needed to barge in while the agent is talking.
    pub barge_in_min_speech: Duration,
    /// Silence after which the utterance so far is offered for an early
    /// look ([`Endpoint::Paused`]): the driver may transcribe it while the
    /// hangover runs, then end the turn now ([`Endpointer::end_now`]) or
    /// wait longer ([`Endpointer::extend`]). `None` disables it.
    pub pause: Option<Duration>,
    /// While the silence goes on, offer the pause again every this long
    /// (a turn model re-asked as the pause grows). `None`: once.
    pub pause_repeat: Option<Duration>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            start_threshold: 0.6,
            end_threshold: 0.4,
            min_speech: Duration::from_millis(60),
            hangover: Duration::from_millis(500),
            pre_roll: Duration::from_millis(200),
            tail: Duration::from_millis(100),
            max_utterance: Duration::from_secs(15),
            barge_in_threshold: 0.85,
            barge_in_min_speech: Duration::from_millis(120),
            pause: Some(Duration::from_millis(120)),
            pause_repeat: Some(Duration::from_millis(200)),
        }
    }
}

/// Where a frame sits on the inbound media timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MediaPosition {
    /// Time since the first played frame (20 ms per frame, continuous).
    pub elapsed: Duration,
    /// RTP timestamp (codec clock) of the frame's first sample.
    pub rtp_timestamp: u32,
}

/// A finished caller utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    /// 16 kHz mono audio: pre-roll, speech, and a short tail.
    pub samples: Vec<f32>,
    /// Position of the first voiced frame.
    pub start: MediaPosition,
    /// Position just after the last voiced frame (the caller's speech end).
    pub end: MediaPosition,
    /// Whether it started while the agent was talking.
    pub barge_in: bool,
    /// Whether it was cut at `max_utterance` rather than ended by silence.
    pub truncated: bool,
    /// The first pause of the final silence (its audio equals this
    /// utterance), so a transcript made at that pause can be reused.
    pub pause: Option<u64>,
}

/// The utterance so far at a pause in the caller's speech.
#[derive(Debug, Clone, PartialEq)]
pub struct Pause {
    /// Pause number within the call (for [`Endpointer::end_now`]).
    pub id: u64,
    /// The first pause of this silence (equal to `id` the first time);
    /// all pauses of one silence have the same `samples`.
    pub first: u64,
    /// 16 kHz audio as the utterance would be if it ended here.
    pub samples: Vec<f32>,
    /// Position just after the last voiced frame.
    pub end: MediaPosition,
    /// Silence since the last voiced frame.
    pub silence: Duration,
}

/// A decision of the endpointer.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    /// Speech started (at the first voiced frame of the run).
    Started {
        /// Position of the first voiced frame.
        at: MediaPosition,
        /// Whether the agent was talking (a barge-in).
        barge_in: bool,
    },
    /// Speech ended; the utterance is complete.
    Ended(Utterance),
    /// The caller paused (see [`EndpointConfig::pause`]).
    Paused(Pause),
}

enum State {
    Idle {
        run: u32,
        run_start: MediaPosition,
    },
    Speaking {
        silence: u32,
        start: MediaPosition,
        last_voiced_end: MediaPosition,
        voiced_len: usize,
        barge_in: bool,
        /// Extra hangover frames granted for this silence.
        extra: u32,
        /// The first and the latest pause offered during this silence.
        pause: Option<(u64, u64)>,
    },
}

/// The endpointer of one call.
pub struct Endpointer {
    config: EndpointConfig,
    state: State,
    /// Ring of the most recent frames before speech (pre-roll + min speech).
    history: Vec<f32>,
    history_pos: usize,
    history_filled: usize,
    utterance: Vec<f32>,
    pauses: u64,
}

fn frames(d: Duration) -> u32 {
    (d.as_millis() / FRAME.as_millis()).max(1) as u32
}

impl Endpointer {
    /// An endpointer with `config`; buffers sized once here.
    pub fn new(config: EndpointConfig) -> Self {
        let history_frames =
            frames(config.pre_roll) + frames(config.barge_in_min_speech.max(config.min_speech)) + 1;
        Self {
            config,
            state: State::Idle {
                run: 0,
                run_start: MediaPosition::default(),
            },
            history: vec![0.0; history_frames as usize * FRAME_16K],
            history_pos: 0,
            history_filled: 0,
            utterance: Vec::with_capacity(Self::utterance_capacity(&config)),
            pauses: 0,
        }
    }

    fn utterance_capacity(config: &EndpointConfig) -> usize {
        (frames(config.max_utterance) + frames(config.pre_roll) + frames(config.hangover) + 2)
            as usize
            * FRAME_16K
    }

    /// The configuration in force.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Whether the caller is currently speaking.
    pub fn in_speech(&self) -> bool {
        matches!(self.state, State::Speaking { .. })
    }

    fn remember(&mut self, frame: &[f32]) {
        let start = self.history_pos * FRAME_16K;
        self.history[start..start + FRAME_16K].copy_from_slice(&frame[..FRAME_16K]);
        let slots = self.history.len() / FRAME_16K;
        self.history_pos = (self.history_pos + 1) % slots;
        self.history_filled = (self.history_filled + 1).min(slots);
    }

    /// Copies the last `n` remembered frames, oldest first, into the utterance.
    fn copy_history(&mut self, n: usize) {
        let slots = self.history.len() / FRAME_16K;
        let n = n.min(self.history_filled);
        for k in (1..=n).rev() {
            let idx = (self.history_pos + slots - k) % slots;
            let start = idx * FRAME_16K;
            self.utterance
                .extend_from_slice(&self.history[start..start + FRAME_16K]);
        }
    }

    /// Feeds one frame (320 samples, 16 kHz) with its speech probability.
    /// `agent_talking` is true while reply audio is playing out.
    pub fn push(
        &mut self,
        frame: &[f32],
        probability: f32,
        at: MediaPosition,
        agent_talking: bool,
    ) -> Option<Endpoint> {
        let frame = &frame[..FRAME_16K.min(frame.len())];
        if frame.len() < FRAME_16K {
            return None;
        }
        self.remember(frame);
        let (threshold, needed) = if agent_talking {
            (
                self.config.barge_in_threshold,
                frames(self.config.barge_in_min_speech),
            )
        } else {
            (self.config.start_threshold, frames(self.config.min_speech))
        };
        let frame_end = MediaPosition {
            elapsed: at.elapsed + FRAME,
            rtp_timestamp: at.rtp_timestamp,
        };
        match &mut self.state {
            State::Idle { run, run_start } => {
                if probability >= threshold {
                    if *run == 0 {
                        *run_start = at;
                    }
                    *run += 1;
                    if *run >= needed {
                        let start = *run_start;
                        let run_frames = *run as usize;
                        self.utterance.clear();
                        self.copy_history(run_frames + frames(self.config.pre_roll) as usize);
                        self.state = State::Speaking {
                            silence: 0,
                            start,
                            last_voiced_end: frame_end,
                            voiced_len: self.utterance.len(),
                            barge_in: agent_talking,
                            extra: 0,
                            pause: None,
                        };
                        return Some(Endpoint::Started {
                            at: start,
                            barge_in: agent_talking,
                        });
                    }
                } else {
                    *run = 0;
                }
                None
            }
            State::Speaking {
                silence,
                voiced_len,
                last_voiced_end,
                extra,
                pause,
                ..
            } => {
                self.utterance.extend_from_slice(frame);
                if probability >= self.config.end_threshold {
                    *silence = 0;
                    *extra = 0;
                    *pause = None;
                    *last_voiced_end = frame_end;
                    *voiced_len = self.utterance.len();
                } else {
                    *silence += 1;
                }
                let max_len = frames(self.config.max_utterance) as usize * FRAME_16K;
                let truncated = self.utterance.len() >= max_len;
                if *silence >= frames(self.config.hangover) + *extra || truncated {
                    let by_silence = *silence >= frames(self.config.hangover) + *extra;
                    return self.finish(!by_silence, at).map(Endpoint::Ended);
                }
                let offer = self.config.pause.map(frames).is_some_and(|p| {
                    let limit = frames(self.config.hangover) + *extra;
                    *silence >= p
                        && *silence < limit
                        && match self.config.pause_repeat.map(frames) {
                            Some(r) => (*silence - p) % r == 0,
                            None => *silence == p,
                        }
                });
                if offer {
                    self.pauses += 1;
                    let first = pause.map_or(self.pauses, |(f, _)| f);
                    *pause = Some((first, self.pauses));
                    let (end, keep) = (*last_voiced_end, *voiced_len);
                    let keep = (keep + frames(self.config.tail) as usize * FRAME_16K)
                        .min(self.utterance.len());
                    return Some(Endpoint::Paused(Pause {
                        id: self.pauses,
                        first,
                        samples: self.utterance[..keep].to_vec(),
                        end,
                        silence: FRAME * *silence,
                    }));
                }
                None
            }
        }
    }

    /// Ends the utterance now if the caller is still silent in pause `id`
    /// (the driver decided the turn is complete). `at` is the position of
    /// the next frame.
    pub fn end_now(&mut self, id: u64, at: MediaPosition) -> Option<Endpoint> {
        match self.state {
            State::Speaking {
                pause: Some((first, last)),
                silence,
                ..
            } if (first..=last).contains(&id) && silence > 0 => {
                self.finish(false, at).map(Endpoint::Ended)
            }
            _ => None,
        }
    }

    /// Waits `more` beyond the hangover in pause `id` (the driver judged the
    /// utterance unfinished). Speech resuming clears it.
    pub fn extend(&mut self, id: u64, more: Duration) {
        if let State::Speaking {
            pause: Some((first, last)),
            extra,
            ..
        } = &mut self.state
        {
            if (*first..=*last).contains(&id) {
                *extra = frames(more);
            }
        }
    }

    fn finish(&mut self, truncated: bool, at: MediaPosition) -> Option<Utterance> {
        let State::Speaking {
            start,
            last_voiced_end,
            voiced_len,
            barge_in,
            pause,
            ..
        } = self.state
        else {
            return None;
        };
        let tail = frames(self.config.tail) as usize * FRAME_16K;
        let keep = (voiced_len + tail).min(self.utterance.len());
        let mut samples = std::mem::replace(
            &mut self.utterance,
            Vec::with_capacity(Self::utterance_capacity(&self.config)),
        );
        samples.truncate(keep);
        self.state = State::Idle {
            run: 0,
            run_start: at,
        };
        Some(Utterance {
            samples,
            start,
            end: last_voiced_end,
            barge_in,
            truncated,
            pause: pause.map(|(first, _)| first),
        })
    }

    /// Forgets any speech in progress.
    pub fn reset(&mut self) {
        self.state = State::Idle {
            run: 0,
            run_start: MediaPosition::default(),
        };
        self.utterance.clear();
        self.history_filled = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(frame: u32) -> MediaPosition {
        MediaPosition {
            elapsed: FRAME * frame,
            rtp_timestamp: frame * 160,
        }
    }

    /// Runs a probability script (one value per frame) and returns the
    /// decisions with their frame index.
    fn run(probs: &[f32], talking: bool) -> Vec<(usize, Endpoint)> {
        let mut ep = Endpointer::new(EndpointConfig::default());
        let mut out = Vec::new();
        for (i, &p) in probs.iter().enumerate() {
            let frame = [p; FRAME_16K];
            match ep.push(&frame, p, pos(i as u32), talking) {
                Some(Endpoint::Paused(_)) | None => {}
                Some(e) => out.push((i, e)),
            }
        }
        out
    }

    #[test]
    fn start_after_min_speech_end_after_hangover() {
        let mut probs = vec![0.0; 20];
        probs.extend(vec![1.0; 50]); // 1 s speech from frame 20
        probs.extend(vec![0.0; 40]);
        let events = run(&probs, false);
        assert_eq!(events.len(), 2);
        // Started on the 3rd voiced frame (60 ms), dated at the first one.
        assert_eq!(events[0].0, 22);
        assert_eq!(
            events[0].1,
            Endpoint::Started {
                at: pos(20),
                barge_in: false
            }
        );
        // Ended after 500 ms (25 frames) of silence.
        let (i, Endpoint::Ended(u)) = &events[1] else {
            panic!("no end")
        };
        assert_eq!(*i, 70 + 24);
        assert_eq!(u.start, pos(20));
        assert_eq!(u.end.elapsed, FRAME * 70);
        // 200 ms pre-roll + 1 s speech + 100 ms tail.
        assert_eq!(u.samples.len(), (10 + 50 + 5) * FRAME_16K);
        // The pre-roll holds the silent frames, the speech the voiced ones.
        assert_eq!(u.samples[0], 0.0);
        assert_eq!(u.samples[10 * FRAME_16K], 1.0);
        assert!(!u.truncated);
    }

    #[test]
    fn short_blips_and_pauses_shorter_than_hangover_do_not_split() {
        let mut probs = vec![0.0; 10];
        probs.extend([1.0, 1.0, 0.0]); // 40 ms blip: no start
        probs.extend(vec![0.0; 10]);
        probs.extend(vec![1.0; 30]);
        probs.extend(vec![0.0; 15]); // 300 ms pause, under the hangover
        probs.extend(vec![1.0; 30]);
        probs.extend(vec![0.0; 30]);
        let events = run(&probs, false);
        assert_eq!(events.len(), 2, "{events:?}");
    }

    #[test]
    fn barge_in_needs_more_while_the_agent_talks() {
        // Echo-like: moderate probability for a long time.
        let echo = vec![0.7; 100];
        assert!(run(&echo, true).is_empty());
        assert_eq!(run(&echo, false).len(), 1);
        // Real speech over the reply: barge-in after 120 ms.
        let mut probs = vec![0.0; 5];
        probs.extend(vec![0.95; 20]);
        let events = run(&probs, true);
        assert_eq!(events[0].0, 5 + 5);
        assert_eq!(
            events[0].1,
            Endpoint::Started {
                at: pos(5),
                barge_in: true
            }
        );
    }

    #[test]
    fn long_speech_is_cut_at_max_utterance() {
        let probs = vec![1.0; 800];
        let events = run(&probs, false);
        let ended: Vec<_> = events
            .iter()
            .filter(|(_, e)| matches!(e, Endpoint::Ended(_)))
            .collect();
        assert_eq!(ended.len(), 1);
        let Endpoint::Ended(u) = &ended[0].1 else {
            unreachable!()
        };
        assert!(u.truncated);
        assert!(u.samples.len() <= 760 * FRAME_16K);
    }

    #[test]
    fn a_pause_is_offered_once_and_end_now_ends_the_turn_early() {
        let mut ep = Endpointer::new(EndpointConfig::default());
        let mut probs = vec![0.0; 10];
        probs.extend(vec![1.0; 40]);
        probs.extend(vec![0.0; 12]);
        let mut paused = None;
        for (i, &p) in probs.iter().enumerate() {
            match ep.push(&[p; FRAME_16K], p, pos(i as u32), false) {
                Some(Endpoint::Paused(pz)) => {
                    assert!(paused.is_none(), "one pause per silence");
                    // The pause's silence after the last voiced frame (49).
                    let pause = EndpointConfig::default().pause.unwrap();
                    assert_eq!(i as u32, 49 + frames(pause));
                    paused = Some(pz);
                }
                Some(Endpoint::Ended(_)) => panic!("hangover not reached yet"),
                _ => {}
            }
        }
        let pz = paused.expect("pause offered");
        assert_eq!(pz.end.elapsed, FRAME * 50);
        let Some(Endpoint::Ended(u)) = ep.end_now(pz.id, pos(62)) else {
            panic!("end_now did not end the turn")
        };
        // Same audio as the pause offered, so its transcript can be reused.
        assert_eq!(u.samples, pz.samples);
        assert_eq!(u.pause, Some(pz.id));
        assert!(!ep.in_speech());
        assert_eq!(ep.end_now(pz.id, pos(63)), None);
    }

    #[test]
    fn speech_after_a_pause_voids_it_and_extend_delays_the_end() {
        let mut ep = Endpointer::new(EndpointConfig::default());
        let mut probs = vec![1.0; 20];
        probs.extend(vec![0.0; 12]); // pause 1 after 120 ms
        probs.extend(vec![1.0; 10]); // speech resumes
        let mut pauses = Vec::new();
        for (i, &p) in probs.iter().enumerate() {
            if let Some(Endpoint::Paused(pz)) = ep.push(&[p; FRAME_16K], p, pos(i as u32), false) {
                pauses.push(pz.id);
            }
        }
        assert_eq!(pauses, vec![1]);
        assert_eq!(ep.end_now(1, pos(42)), None, "speech resumed after pause 1");
        // Pause 2, extended by 400 ms: no end at 500 ms of silence, one at 900.
        let mut ended_at = None;
        for i in 42..120u32 {
            match ep.push(&[0.0; FRAME_16K], 0.0, pos(i), false) {
                Some(Endpoint::Paused(pz)) => {
                    // Offered again every 200 ms while the silence lasts.
                    assert_eq!(pz.first, 2);
                    assert_eq!(pz.silence, Duration::from_millis(120 + 200 * (pz.id - 2)));
                    if pz.id == 2 {
                        ep.extend(2, Duration::from_millis(400));
                    }
                }
                Some(Endpoint::Ended(u)) => {
                    ended_at = Some(i);
                    assert_eq!(u.pause, Some(2));
                    break;
                }
                _ => {}
            }
        }
        assert_eq!(ended_at, Some(42 + 25 + 20 - 1));
    }
}
