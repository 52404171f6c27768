//! Calls as they arrive in life: a Poisson process (independent callers,
//! exponential gaps between arrivals), and the load they offer in Erlang.
//!
//! No clock here: the schedule is a list of offsets from the start of the
//! run, drawn from a seeded generator so a run can be repeated.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// Arrival offsets of a Poisson process of `rate` calls per second.
pub struct Poisson {
    rate: f64,
    at: f64,
    rng: SmallRng,
}

impl Poisson {
    /// A process of `rate` (> 0) calls per second, seeded.
    pub fn new(rate: f64, seed: u64) -> Self {
        Self {
            rate,
            at: 0.0,
            rng: SmallRng::seed_from_u64(seed),
        }
    }
}

impl Iterator for Poisson {
    type Item = Duration;

    /// The next arrival, as an offset from the start.
    fn next(&mut self) -> Option<Duration> {
        // Inverse transform: −ln U / λ, U in (0, 1].
        let u: f64 = 1.0 - self.rng.random::<f64>();
        self.at += -u.ln() / self.rate;
        Some(Duration::from_secs_f64(self.at))
    }
}

/// What the calls of a run offered and carried.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Offered {
    /// Arrivals per second over the run.
    pub rate: f64,
    /// Mean holding time of a call, s.
    pub holding_s: f64,
    /// Offered load: arrival rate × mean holding time.
    pub erlang: f64,
    /// Calls up at the same time, averaged over the run (carried load).
    pub mean_concurrency: f64,
    /// Most calls up at once.
    pub peak_concurrency: usize,
}

/// The load of calls that each ran from `start` to `end` (offsets from
/// the start of a run that lasted `run`).
pub fn offered(calls: &[(Duration, Duration)], run: Duration) -> Offered {
    let secs = run.as_secs_f64().max(f64::EPSILON);
    let held: f64 = calls
        .iter()
        .map(|(s, e)| e.saturating_sub(*s).as_secs_f64())
        .sum();
    let holding_s = if calls.is_empty() {
        0.0
    } else {
        held / calls.len() as f64
    };
    let rate = calls.len() as f64 / secs;
    // Peak: sweep the starts and ends in time order (an end before a start
    // at the same instant).
    let mut edges: Vec<(Duration, i32)> = calls
        .iter()
        .flat_map(|(s, e)| [(*s, 1), (*e, -1)])
        .collect();
    edges.sort_by_key(|&(t, d)| (t, d));
    let (mut up, mut peak) = (0i32, 0i32);
    for (_, d) in edges {
        up += d;
        peak = peak.max(up);
    }
    Offered {
        rate,
        holding_s,
        erlang: rate * holding_s,
        mean_concurrency: held / secs,
        peak_concurrency: peak.max(0) as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_exponential_with_the_rate_asked() {
        let rate = 0.8;
        let at: Vec<f64> = Poisson::new(rate, 7)
            .take(20_000)
            .map(|d| d.as_secs_f64())
            .collect();
        assert!(at.windows(2).all(|w| w[1] >= w[0]), "in order");
        let gaps: Vec<f64> = std::iter::once(at[0])
            .chain(at.windows(2).map(|w| w[1] - w[0]))
            .collect();
        let n = gaps.len() as f64;
        let mean = gaps.iter().sum::<f64>() / n;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n;
        // Exponential: mean 1/λ, standard deviation = mean.
        assert!((mean * rate - 1.0).abs() < 0.03, "mean gap {mean}");
        assert!(
            (var.sqrt() / mean - 1.0).abs() < 0.05,
            "cv {}",
            var.sqrt() / mean
        );
        // Memoryless: as many gaps above the mean as e^-1 predicts.
        let above = gaps.iter().filter(|&&g| g > mean).count() as f64 / n;
        assert!((above - (-1f64).exp()).abs() < 0.02, "{above}");
    }

    #[test]
    fn a_seed_repeats_its_run() {
        let a: Vec<Duration> = Poisson::new(2.0, 42).take(50).collect();
        let b: Vec<Duration> = Poisson::new(2.0, 42).take(50).collect();
        let c: Vec<Duration> = Poisson::new(2.0, 43).take(50).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn offered_load_is_rate_times_holding_time() {
        let s = Duration::from_secs;
        // Four calls of 10 s in 20 s: 0.2 calls/s × 10 s = 2 Erlang.
        let calls = [(s(0), s(10)), (s(5), s(15)), (s(10), s(20)), (s(10), s(20))];
        let o = offered(&calls, s(20));
        assert!((o.rate - 0.2).abs() < 1e-9);
        assert!((o.holding_s - 10.0).abs() < 1e-9);
        assert!((o.erlang - 2.0).abs() < 1e-9);
        assert!((o.mean_concurrency - 2.0).abs() < 1e-9);
        // At 10 s one call ends as two start: three up, never four.
        assert_eq!(o.peak_concurrency, 3);
        assert_eq!(offered(&[], s(5)).erlang, 0.0);
    }
}
