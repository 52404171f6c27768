//! Our own reply, echoed back in the caller's audio, told apart from the
//! caller.
//!
//! A telephone hybrid or a speakerphone returns what we send, delayed by
//! the round trip (20–600 ms here, jitter buffer included) and attenuated.
//! The call knows exactly what it sent and when, so the echo is removed
//! against that reference in three steps:
//!
//! 1. **Bulk delay**: the envelope (4 ms block RMS) of what arrives is
//!    correlated with the envelope of what was sent over the last second;
//!    the best lag is taken when the correlation is clear. Inbound frames
//!    are placed by their RTP timestamps, so our jitter buffer growing or
//!    shrinking does not move the echo.
//! 2. **Cancellation**: an NLMS filter (24 ms of taps around that lag, so
//!    coarse misalignment and the hybrid's dispersion are absorbed) predicts
//!    the echo and subtracts it. It adapts at an eighth of its step while
//!    the caller may be talking, so a barge-in does not unlearn the path
//!    but a new sound of ours is still learned.
//! 3. **Gate**: while the reference is active, a frame counts as the caller
//!    only when what is left after cancellation stands clearly above the
//!    echo expected from the loudest recent reference and the echo loss
//!    learned so far (peak block against peak block). The loss restarts at
//!    the conservative minimum whenever the filter does, and a high loss
//!    without a filter is trusted only once the envelopes showed no echo,
//!    so the gate does not open on echo alone, while a line without echo
//!    soon lets a caller quieter than us barge in.
//!
//! Everything is allocated up front; the filter costs nothing while
//! nothing was sent for the length of the echo window. Levels and delays
//! were tuned on the trials in `engine/tests/echo.rs`.

/// Echo handling settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EchoConfig {
    /// Cancel and gate our own echo.
    pub enabled: bool,
    /// Longest echo delay searched (round trip plus jitter buffer).
    pub max_delay: std::time::Duration,
    /// How far a frame must stand above the expected echo to count as the
    /// caller, in dB.
    pub margin_db: f32,
    /// Echo loss assumed before any has been measured, in dB (G.168 hybrids
    /// give at least 6 dB).
    pub min_loss_db: f32,
}

impl Default for EchoConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_delay: std::time::Duration::from_millis(600),
            margin_db: 6.0,
            min_loss_db: 6.0,
        }
    }
}

/// What a frame holds, as far as our echo is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoVerdict {
    /// Nothing was sent within the echo window: the frame is the caller's.
    Quiet,
    /// Only our own echo (after cancellation): not the caller speaking.
    Echo,
    /// The caller over our echo.
    NearEnd,
}

const BLOCK_MS: usize = 4;
const TAPS_MS: usize = 24;
/// Of the taps, this much lies on the near side of the estimated delay.
const LEAD_MS: usize = 8;
/// Blocks of envelope correlated per estimate (1 s).
const WINDOW_BLOCKS: usize = 250;
/// Frames between delay estimates.
const ESTIMATE_EVERY: u64 = 10;
const MIN_DELAY_MS: usize = 8;
/// Reference level under which nothing is expected to echo, in dBFS.
const ACTIVE_DB: f32 = -55.0;
/// The learned loss counts up to this much in the gate: a converged
/// filter still lets an onset or a concealed packet through now and then,
/// and a caller is rarely more than this far below our own level.
const MAX_GATE_LOSS_DB: f32 = 18.0;
/// Talk of ours, in a gap without any packet from the far end, that shows
/// the line has no echo (see [`EchoCanceller::far_end_silent`]).
const SILENT_EVIDENCE_MS: usize = 300;
/// Echo loss a line that stayed silent through our talk is taken to have:
/// whatever it returns lies below the far end's silence suppression (its
/// threshold is typically 30–40 dB under speech).
const SILENT_LINE_LOSS_DB: f32 = 30.0;
/// How far under the least echo loss the envelopes may place an echo
/// before it is taken for the caller, in dB.
const LOSS_SLACK_DB: f32 = 3.0;
/// Echo loss past which the envelopes' finding is taken for chance (the
/// line's own noise against our onsets), in dB.
const MAX_ECHO_LOSS_DB: f32 = 40.0;
/// Envelope correlation under which a line is taken to have no echo.
const NO_ECHO_CORRELATION: f32 = 0.3;
/// NLMS step size.
const MU: f32 = 0.4;
/// NLMS regularisation per tap (about -50 dBFS).
const DELTA_PER_TAP: f32 = 1e-5;
/// Near-end frames in a row (while we talk) after which the filter is
/// taken to have lost the path (1 s).
const NEAR_END_RESET: u32 = 50;

/// The echo canceller of one call, at the codec's PCM rate.
pub struct EchoCanceller {
    config: EchoConfig,
    n: usize,
    block: usize,
    taps: usize,
    lead: usize,
    /// Reference samples (what we sent), a ring indexed by absolute position.
    reference: Vec<f32>,
    written: u64,
    /// Block RMS of the reference and of the inbound audio, rings
    /// indexed by absolute block number.
    ref_env: Vec<f32>,
    in_env: Vec<f32>,
    in_blocks: u64,
    /// Delay from a reference sample to the filter's newest tap, in samples.
    lag: Option<usize>,
    weights: Vec<f32>,
    scratch: Vec<f32>,
    frames: u64,
    loss_db: f32,
    near_end: bool,
    near_run: u32,
    near_since_estimate: bool,
    /// Frames judged without a filter while we talked.
    active_frames: u64,
    /// Delay estimates in a row that found no echo at all.
    no_echo_seen: u32,
    last_active_block: u64,
    max_lag_blocks: usize,
    /// Lowest loss the gate assumes, raised when the far end stayed silent
    /// through our talk (see [`EchoCanceller::far_end_silent`]).
    silent_floor_db: f32,
}

impl EchoCanceller {
    /// A canceller for `rate` Hz audio in frames of `frame` samples (a
    /// multiple of 4 ms).
    pub fn new(config: EchoConfig, rate: u32, frame: usize) -> Self {
        let per_ms = rate as usize / 1000;
        let block = BLOCK_MS * per_ms;
        let taps = TAPS_MS * per_ms;
        let max_lag_blocks = (config.max_delay.as_millis() as usize).div_ceil(BLOCK_MS);
        let env = (WINDOW_BLOCKS + max_lag_blocks + 8).next_power_of_two();
        let span = (max_lag_blocks * block + taps + 4 * frame).next_power_of_two();
        Self {
            config,
            n: frame,
            block,
            taps,
            lead: LEAD_MS * per_ms,
            reference: vec![0.0; span],
            written: 0,
            ref_env: vec![0.0; env],
            in_env: vec![0.0; env],
            in_blocks: 0,
            lag: None,
            weights: vec![0.0; taps],
            scratch: vec![0.0; frame + taps],
            frames: 0,
            loss_db: config.min_loss_db,
            near_end: false,
            near_run: 0,
            near_since_estimate: false,
            active_frames: 0,
            no_echo_seen: 0,
            last_active_block: 0,
            max_lag_blocks,
            silent_floor_db: config.min_loss_db,
        }
    }

    /// The estimated delay of the echo, once found.
    pub fn delay_ms(&self) -> Option<f32> {
        let per_ms = (self.block / BLOCK_MS) as f32;
        self.lag.map(|l| (l + self.lead) as f32 / per_ms)
    }

    /// Echo loss learned so far (path plus cancellation), in dB.
    pub fn loss_db(&self) -> f32 {
        self.loss_db
    }

    /// The far end sent no packet at all while the reference ran from
    /// position `since` to `until` (silence suppression on a phone, a
    /// dialplan in `Wait()`; a real Asterisk sends no RTP then). An echo
    /// comes back within the echo window of what we said: if we talked for
    /// longer than that inside the gap and nothing came back, the line
    /// returns nothing above the far end's own silence threshold. The gate
    /// then trusts a line without echo, so the caller who starts in the
    /// middle of a reply is heard from their first word (without this,
    /// every frame of theirs was judged against a loss of 6 dB and only
    /// their loudest syllables got through, seconds late).
    pub fn far_end_silent(&mut self, since: u64, until: u64) {
        if !self.config.enabled {
            return;
        }
        let block = self.block as u64;
        let newest = (self.written / block).min(until / block);
        // Echo of the last window's worth could still be on its way.
        let last = newest.saturating_sub(self.max_lag_blocks as u64);
        let oldest = newest.saturating_sub(self.ref_env.len() as u64 - 1);
        let first = (since / block).max(oldest);
        let active = (first..last)
            .filter(|&b| 20.0 * (self.ref_env_at(b as i64) + 1e-5).log10() > ACTIVE_DB)
            .count();
        if active * BLOCK_MS >= SILENT_EVIDENCE_MS {
            self.no_echo_seen = self.no_echo_seen.max(2);
            // A floor, not just a start: the caller's own softer frames
            // (judged "not near-end") would otherwise pull the learned
            // loss down towards their level, frame by frame. Only an echo
            // the envelopes actually find lifts it.
            self.silent_floor_db = SILENT_LINE_LOSS_DB;
            self.loss_db = self.loss_db.max(self.silent_floor_db);
        }
    }

    /// Records one frame we sent (silence included), in send order.
    pub fn push_reference(&mut self, frame: &[i16]) {
        if !self.config.enabled {
            return;
        }
        let mask = self.reference.len() - 1;
        for &s in frame {
            self.reference[self.written as usize & mask] = s as f32 / 32768.0;
            self.written += 1;
            if self.written.is_multiple_of(self.block as u64) {
                let b = self.written / self.block as u64 - 1;
                let start = self.written - self.block as u64;
                let e = ((start..self.written)
                    .map(|i| self.reference[i as usize & mask].powi(2))
                    .sum::<f32>()
                    / self.block as f32)
                    .sqrt();
                let env_mask = self.ref_env.len() - 1;
                self.ref_env[b as usize & env_mask] = e;
                if 20.0 * (e + 1e-5).log10() > ACTIVE_DB {
                    self.last_active_block = b;
                }
            }
        }
    }

    fn ref_at(&self, pos: i64) -> f32 {
        if pos < 0
            || pos as u64 >= self.written
            || self.written - pos as u64 > self.reference.len() as u64
        {
            return 0.0;
        }
        self.reference[pos as usize & (self.reference.len() - 1)]
    }

    fn ref_env_at(&self, block: i64) -> f32 {
        let newest = (self.written / self.block as u64) as i64;
        if block < 0 || block >= newest || newest - block > self.ref_env.len() as i64 {
            return 0.0;
        }
        self.ref_env[block as usize & (self.ref_env.len() - 1)]
    }

    /// Removes our echo from one inbound frame in place. `pos` is the
    /// reference position of the frame's first sample: the number of
    /// reference samples whose send slot had begun when the frame was
    /// played out (the call computes it from its two clocks). A
    /// `concealed` frame (made up for a lost packet) is filtered but
    /// neither learned from nor judged: it keeps the last verdict.
    pub fn process(&mut self, pos: u64, frame: &mut [f32], concealed: bool) -> EchoVerdict {
        if !self.config.enabled || frame.len() != self.n {
            return EchoVerdict::Quiet;
        }
        self.frames += 1;
        // Inbound envelope, on the reference's block grid.
        let env_mask = self.in_env.len() - 1;
        let first_block = pos / self.block as u64;
        for (k, chunk) in frame.chunks(self.block).enumerate() {
            let e = (chunk.iter().map(|x| x * x).sum::<f32>() / self.block as f32).sqrt();
            self.in_env[(first_block + k as u64) as usize & env_mask] = e;
        }
        self.in_blocks = first_block + (self.n / self.block) as u64;
        let verdict = self.cancel(pos, frame, concealed);
        if self.frames.is_multiple_of(ESTIMATE_EVERY) {
            // The caller's voice in the window would mislead the envelope,
            // and a filter that cancels well has the path already.
            let working = self.lag.is_some() && self.loss_db >= self.config.min_loss_db + 10.0;
            if !self.near_since_estimate && !working {
                self.estimate_delay();
            }
            self.near_since_estimate = false;
        }
        verdict
    }

    /// The filter and the gate for one frame.
    fn cancel(&mut self, pos: u64, frame: &mut [f32], concealed: bool) -> EchoVerdict {
        let Some(lag) = self.lag else {
            if concealed {
                return self.last_verdict();
            }
            return self.verdict_without_filter(pos, frame);
        };
        // The reference the filter sees for this frame: sample i uses
        // positions src(i) - t for t in 0..taps, src(i) = pos + i - lag.
        let base = pos as i64 - lag as i64 - self.taps as i64 + 1;
        let mut scratch = std::mem::take(&mut self.scratch);
        for (k, s) in scratch.iter_mut().enumerate() {
            *s = self.ref_at(base + k as i64);
        }
        let ref_level = peak_block_db(&scratch, self.block);
        if ref_level < ACTIVE_DB {
            self.scratch = scratch;
            self.near_end = false;
            return EchoVerdict::Quiet;
        }
        // Where the caller may be talking, adapt slowly rather than not at
        // all: speech excites the path unevenly, and a frozen filter meets
        // each new sound of ours unprepared.
        let mu = match (concealed, self.near_end) {
            (true, _) => 0.0,
            (false, true) => MU / 8.0,
            (false, false) => MU,
        };
        let mut power: f32 = scratch[..self.taps].iter().map(|x| x * x).sum();
        for i in 0..self.n {
            let x = &scratch[i..i + self.taps];
            // Newest tap last in `x`; weights run oldest → newest too.
            let y: f32 = x.iter().zip(&self.weights).map(|(a, w)| a * w).sum();
            let e = frame[i] - y;
            let g = mu * e / (power + DELTA_PER_TAP * self.taps as f32);
            for (w, a) in self.weights.iter_mut().zip(x) {
                *w += g * a;
            }
            frame[i] = e;
            // Slide the window's power by one sample.
            if i + self.taps < scratch.len() {
                power += scratch[i + self.taps].powi(2) - scratch[i].powi(2);
                power = power.max(0.0);
            }
        }
        self.scratch = scratch;
        if self.weights.iter().any(|w| !w.is_finite()) {
            self.reset_filter();
        }
        if concealed {
            return self.last_verdict();
        }
        // Loudest block against loudest block: the crest of speech cancels.
        let out_level = peak_block_db(frame, self.block);
        let verdict = self.judge(ref_level, out_level, MAX_GATE_LOSS_DB, (0.02, 0.1));
        // The caller does not talk over us for seconds on end (we stop at
        // a barge-in): a long run of near-end frames is a filter that lost
        // the path and is frozen. Start over, conservatively.
        self.near_run = if verdict == EchoVerdict::NearEnd {
            self.near_run + 1
        } else {
            0
        };
        if self.near_run > NEAR_END_RESET {
            self.reset_filter();
        }
        verdict
    }

    /// Before a delay is known: no cancellation, only the gate against the
    /// loudest reference within the whole echo window. The loss is learned
    /// here too, so a line without echo soon lets a quiet caller through.
    fn verdict_without_filter(&mut self, pos: u64, frame: &[f32]) -> EchoVerdict {
        let newest = pos as i64 / self.block as i64;
        let peak = (0..=self.max_lag_blocks as i64)
            .map(|k| self.ref_env_at(newest - k))
            .fold(0.0f32, f32::max);
        let ref_level = 20.0 * (peak + 1e-5).log10();
        if ref_level < ACTIVE_DB {
            self.near_end = false;
            return EchoVerdict::Quiet;
        }
        // Without a filter the frames that carry echo sit near the path's
        // own loss: follow them down quickly, and up only once we have
        // talked for longer than any echo takes to come back. The estimate
        // is then the path's own loss, trusted in full: on a line without
        // echo it climbs high, and a caller well below our level gets
        // through.
        self.active_frames += 1;
        let settled =
            self.active_frames * self.n as u64 > (self.max_lag_blocks * self.block) as u64;
        let before = self.loss_db;
        // Trust a high loss only once the envelopes showed no echo at all
        // (twice, over a second of our talk each); until then the caller
        // must be louder than the loudest of what we said lately.
        let cap = if self.no_echo_seen >= 2 {
            40.0
        } else {
            self.config.min_loss_db
        };
        let verdict = self.judge(
            ref_level,
            peak_block_db(frame, self.block),
            cap,
            (0.05, 0.3),
        );
        if !settled {
            self.loss_db = self.loss_db.min(before);
        }
        verdict
    }

    fn last_verdict(&self) -> EchoVerdict {
        if self.near_end {
            EchoVerdict::NearEnd
        } else {
            EchoVerdict::Echo
        }
    }

    fn reset_filter(&mut self) {
        self.weights.fill(0.0);
        self.loss_db = self.silent_floor_db.max(self.config.min_loss_db);
        self.near_run = 0;
    }

    /// Gate and loss learning. `cap` bounds the learned loss the gate
    /// counts on; `(up, down)` are the learning rates.
    fn judge(
        &mut self,
        ref_level: f32,
        out_level: f32,
        cap: f32,
        (up, down): (f32, f32),
    ) -> EchoVerdict {
        let observed = ref_level - out_level;
        self.near_end = observed < self.loss_db.min(cap) - self.config.margin_db;
        self.near_since_estimate |= self.near_end;
        // Learn the loss from frames where we clearly talk and the caller
        // does not. Up slowly, down faster: the estimate sits in the lower
        // part of what echo frames show, so ordinary echo stays below it.
        if !self.near_end && ref_level > -45.0 {
            let rate = if observed > self.loss_db { up } else { down };
            self.loss_db += rate * (observed - self.loss_db);
            let floor = self.silent_floor_db.max(self.config.min_loss_db);
            self.loss_db = self.loss_db.clamp(floor, 40.0);
        }
        if self.near_end {
            EchoVerdict::NearEnd
        } else {
            EchoVerdict::Echo
        }
    }

    /// Correlation of the inbound envelope over the last second with the
    /// reference envelope `lag` blocks earlier (`None` when either is flat).
    fn envelope_correlation(&self, lag: i64) -> Option<f32> {
        let newest = self.in_blocks as i64;
        let start = newest - WINDOW_BLOCKS as i64;
        let env_mask = self.in_env.len() - 1;
        let inbound = |b: i64| self.in_env[b as usize & env_mask];
        let w = WINDOW_BLOCKS as f32;
        let mean_in = (start..newest).map(inbound).sum::<f32>() / w;
        let mean_r = (start..newest)
            .map(|b| self.ref_env_at(b - lag))
            .sum::<f32>()
            / w;
        let (mut var_in, mut var_r, mut cov) = (0.0f32, 0.0f32, 0.0f32);
        for b in start..newest {
            let i = inbound(b) - mean_in;
            let r = self.ref_env_at(b - lag) - mean_r;
            var_in += i * i;
            var_r += r * r;
            cov += r * i;
        }
        (var_in > 1e-9 && var_r > 1e-9).then(|| cov / (var_r * var_in).sqrt())
    }

    /// How much quieter the inbound envelope is than ours `lag` blocks
    /// earlier, over the window, in dB.
    fn envelope_loss_db(&self, lag: i64) -> f32 {
        let newest = self.in_blocks as i64;
        let start = newest - WINDOW_BLOCKS as i64;
        let env_mask = self.in_env.len() - 1;
        let inbound: f32 = (start..newest)
            .map(|b| self.in_env[b as usize & env_mask])
            .sum();
        let ours: f32 = (start..newest).map(|b| self.ref_env_at(b - lag)).sum();
        20.0 * ((ours + 1e-9) / (inbound + 1e-9)).log10()
    }

    /// Correlates the envelopes over the echo window and moves the filter
    /// to the best lag when it is clear and clearly better than the lag in
    /// use.
    fn estimate_delay(&mut self) {
        // Nothing sent lately: nothing to correlate (and a silent call
        // costs nothing).
        let horizon = (WINDOW_BLOCKS + self.max_lag_blocks) as u64;
        if self.in_blocks < WINDOW_BLOCKS as u64
            || self.in_blocks.saturating_sub(self.last_active_block) > horizon
        {
            return;
        }
        let min_lag = (MIN_DELAY_MS / BLOCK_MS) as i64;
        let mut best = (0.0f32, 0);
        for lag in min_lag..=self.max_lag_blocks as i64 {
            if let Some(c) = self.envelope_correlation(lag) {
                if c > best.0 {
                    best = (c, lag);
                }
            }
        }
        let current = self
            .lag
            .and_then(|l| self.envelope_correlation(((l + self.lead) / self.block) as i64));
        if self.lag.is_none() && best.0 < NO_ECHO_CORRELATION {
            self.no_echo_seen += 1;
        }
        if best.0 < 0.5 || self.lag.is_some() && best.0 < current.unwrap_or(0.0) + 0.1 {
            return;
        }
        // An echo comes back quieter than we said it (hybrids return at
        // least 6 dB less): what arrives as loud as our own speech is the
        // caller, whose words can follow ours closely enough to correlate.
        // And what lies more than 40 dB under us is no echo worth a
        // filter: in the live demo the first inbound packets, 53 dB down,
        // "correlated" with the greeting's onset at 560 ms, and the filter
        // that followed learned the caller's barge-in as our echo and
        // subtracted our reply from their words.
        let loss = self.envelope_loss_db(best.1);
        if loss < self.config.min_loss_db - LOSS_SLACK_DB || loss > MAX_ECHO_LOSS_DB {
            return;
        }
        self.no_echo_seen = 0;
        // An echo is there after all: the silence was not evidence.
        self.silent_floor_db = self.config.min_loss_db;
        // The filter's newest tap sits `LEAD_MS` before the lag, so an
        // envelope error of two blocks either way stays inside it.
        let lag = (best.1 as usize * self.block).saturating_sub(self.lead);
        if self.lag.is_none_or(|old| old.abs_diff(lag) > self.block) {
            self.lag = Some(lag);
            self.reset_filter();
        }
    }
}

#[cfg(test)]
fn level_db(frame: &[f32]) -> f32 {
    let p = frame.iter().map(|x| x * x).sum::<f32>() / frame.len().max(1) as f32;
    10.0 * (p + 1e-10).log10()
}

/// Level of the loudest block in `x`, in dBFS.
fn peak_block_db(x: &[f32], block: usize) -> f32 {
    let peak = x
        .chunks(block)
        .map(|c| c.iter().map(|s| s * s).sum::<f32>() / c.len() as f32)
        .fold(0.0f32, f32::max);
    10.0 * (peak + 1e-10).log10()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Speech-like test signal: noise shaped by a 4 Hz syllable envelope
    /// with pauses, at roughly `level` RMS while voiced.
    fn talker(seed: u64, seconds: f32, rate: u32, level: f32) -> Vec<f32> {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let n = (seconds * rate as f32) as usize;
        let mut lp = 0.0f32;
        (0..n)
            .map(|i| {
                let t = i as f32 / rate as f32;
                let syllable = (std::f32::consts::PI * 4.0 * t + seed as f32).sin().abs();
                let phrase = if (t * 0.7 + seed as f32 * 0.13).fract() < 0.8 {
                    1.0
                } else {
                    0.0
                };
                lp = 0.6 * lp + 0.4 * rng.random_range(-1.0f32..1.0);
                lp * syllable * phrase * level * 2.5
            })
            .collect()
    }

    struct Run {
        verdicts: Vec<EchoVerdict>,
        echo_in_db: f32,
        echo_out_db: f32,
        delay_ms: Option<f32>,
    }

    /// Plays `far` out, feeds back its echo (`delay_ms`, `loss_db`) plus
    /// `near` (the caller) and faint line noise; measures over the last
    /// second of echo-only frames.
    fn run(rate: u32, far: &[f32], near: &[f32], delay_ms: usize, loss_db: f32) -> Run {
        let n = rate as usize / 50;
        let mut ec = EchoCanceller::new(EchoConfig::default(), rate, n);
        let d = delay_ms * rate as usize / 1000;
        let g = 10f32.powf(-loss_db / 20.0);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(9);
        let frames = far.len() / n;
        let (mut e_in, mut e_out) = (0.0f32, 0.0f32);
        let mut verdicts = Vec::new();
        for k in 0..frames {
            let sent: Vec<i16> = far[k * n..(k + 1) * n]
                .iter()
                .map(|x| (x * 32767.0) as i16)
                .collect();
            ec.push_reference(&sent);
            let mut frame: Vec<f32> = (0..n)
                .map(|i| {
                    let at = k * n + i;
                    let echo = if at >= d { g * far[at - d] } else { 0.0 };
                    echo + near.get(at).copied().unwrap_or(0.0)
                        + rng.random_range(-1.0f32..1.0) * 3e-4
                })
                .collect();
            let before = frame.iter().map(|x| x * x).sum::<f32>();
            verdicts.push(ec.process((k * n) as u64, &mut frame, false));
            let quiet_near = near[k * n..(k + 1) * n].iter().all(|x| *x == 0.0);
            if k >= frames.saturating_sub(50) && quiet_near {
                e_in += before;
                e_out += frame.iter().map(|x| x * x).sum::<f32>();
            }
        }
        Run {
            verdicts,
            echo_in_db: 10.0 * (e_in + 1e-12).log10(),
            echo_out_db: 10.0 * (e_out + 1e-12).log10(),
            delay_ms: ec.delay_ms(),
        }
    }

    #[test]
    fn finds_the_delay_and_cancels_the_echo() {
        for (rate, delay, loss) in [
            (8000, 60, 6.0),
            (8000, 137, 20.0),
            (16000, 300, 10.0),
            (16000, 480, 30.0),
        ] {
            let far = talker(1, 6.0, rate, 0.1);
            let near = vec![0.0; far.len()];
            let r = run(rate, &far, &near, delay, loss);
            let found = r.delay_ms.expect("delay found");
            assert!(
                (found - delay as f32).abs() <= 8.0,
                "{rate} Hz: {delay} ms found as {found}"
            );
            let erle = r.echo_in_db - r.echo_out_db;
            assert!(
                erle > 15.0,
                "{rate} Hz, {delay} ms, {loss} dB: ERLE {erle:.1} dB"
            );
            // Echo alone is never taken for the caller.
            let false_near = r
                .verdicts
                .iter()
                .filter(|v| **v == EchoVerdict::NearEnd)
                .count();
            assert_eq!(false_near, 0, "{rate} Hz, {delay} ms, {loss} dB");
        }
    }

    #[test]
    fn the_caller_over_the_echo_is_near_end() {
        let rate = 8000;
        let far = talker(1, 6.0, rate, 0.1);
        // The caller starts at 3 s, as loud as we are, over a 6 dB echo.
        let mut near = talker(7, 6.0, rate, 0.1);
        near[..3 * rate as usize].fill(0.0);
        let r = run(rate, &far, &near, 120, 6.0);
        let n = rate as usize / 50;
        let voiced: Vec<usize> = (150..300)
            .filter(|k| level_db(&near[k * n..(k + 1) * n]) > -30.0)
            .collect();
        let heard = voiced
            .iter()
            .filter(|k| r.verdicts[**k] == EchoVerdict::NearEnd)
            .count();
        eprintln!("{heard} of {} voiced caller frames heard", voiced.len());
        assert!(
            heard * 10 >= voiced.len() * 8,
            "{heard} of {} voiced caller frames heard",
            voiced.len()
        );
        assert!(r.verdicts[..150].iter().all(|v| *v != EchoVerdict::NearEnd));
    }

    /// Inbound that follows our speech as loud as we said it is a caller
    /// (repeating a date back, or just talking in our rhythm), and one
    /// 55 dB down is the line's noise: neither is an echo, no delay is
    /// taken and nothing is subtracted. 6 and 30 dB down it is an echo.
    #[test]
    fn only_a_plausible_loss_is_an_echo() {
        let rate = 8000;
        let far = talker(1, 6.0, rate, 0.1);
        let near = vec![0.0; far.len()];
        for loss in [0.0, 55.0] {
            let r = run(rate, &far, &near, 150, loss);
            assert_eq!(r.delay_ms, None, "{loss} dB");
            assert!((r.echo_in_db - r.echo_out_db).abs() < 0.01, "{loss} dB");
        }
        for loss in [6.0, 30.0] {
            assert!(
                run(rate, &far, &near, 150, loss).delay_ms.is_some(),
                "{loss} dB"
            );
        }
    }

    #[test]
    fn nothing_sent_means_quiet_and_disabled_passes_through() {
        let mut ec = EchoCanceller::new(EchoConfig::default(), 8000, 160);
        let mut frame = vec![0.1f32; 160];
        for k in 0..100u64 {
            ec.push_reference(&[0; 160]);
            assert_eq!(ec.process(k * 160, &mut frame, false), EchoVerdict::Quiet);
        }
        assert!(frame.iter().all(|x| *x == 0.1));
        let mut off = EchoCanceller::new(
            EchoConfig {
                enabled: false,
                ..EchoConfig::default()
            },
            8000,
            160,
        );
        off.push_reference(&[9000; 160]);
        assert_eq!(off.process(0, &mut frame, false), EchoVerdict::Quiet);
        // A frame of the wrong size is left alone.
        assert_eq!(ec.process(0, &mut [0.5; 10], false), EchoVerdict::Quiet);
    }
}
