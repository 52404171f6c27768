//! The campaign as a state machine, clock-free: which number to dial next
//! and when (calls per second, calls at once, the time window), and what a
//! result means (answered: done; busy, no answer, congestion: again later,
//! up to the attempts; a number that cannot be dialled: done).

use chrono::{Datelike, NaiveDateTime, NaiveTime};
use std::time::{Duration, Instant};

/// How a dial ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Someone (or something) picked up: the call runs in the app.
    Answered,
    /// Busy (cause 17).
    Busy,
    /// Rang out (causes 18, 19, or the ring timeout).
    NoAnswer,
    /// The network could not (causes 34, 38, 41, 42, …).
    Congestion,
    /// The number cannot be dialled (unallocated, rejected, invalid): not retried.
    Invalid(String),
}

impl Outcome {
    /// From a Q.850 cause of a channel that was never answered.
    pub fn from_cause(cause: i64, text: &str) -> Self {
        match cause {
            17 => Outcome::Busy,
            18 | 19 | 0 | 16 => Outcome::NoAnswer,
            1 | 3 | 21 | 22 | 27 | 28 => Outcome::Invalid(format!("cause {cause} {text}")),
            _ => Outcome::Congestion,
        }
    }

    /// Whether another attempt may go better.
    pub fn retried(&self) -> bool {
        matches!(
            self,
            Outcome::Busy | Outcome::NoAnswer | Outcome::Congestion
        )
    }

    /// A short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Busy => "busy",
            Outcome::NoAnswer => "no_answer",
            Outcome::Congestion => "congestion",
            Outcome::Invalid(_) => "invalid",
        }
    }
}

/// When calls may be placed (the callee's local time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Monday first.
    pub days: [bool; 7],
    /// From …
    pub start: NaiveTime,
    /// … until (exclusive).
    pub end: NaiveTime,
}

impl Window {
    /// `"09:00-18:00"` and `"mon-fri"` (or `"mon,wed,sat"`, `"all"`).
    pub fn parse(hours: &str, days: &str) -> Result<Self, String> {
        let (a, b) = hours
            .split_once('-')
            .ok_or_else(|| format!("--window {hours:?}: use 09:00-18:00"))?;
        let time = |s: &str| {
            NaiveTime::parse_from_str(s.trim(), "%H:%M")
                .map_err(|_| format!("--window {hours:?}: {s:?} is not HH:MM"))
        };
        let (start, end) = (time(a)?, time(b)?);
        if start >= end {
            return Err(format!(
                "--window {hours:?}: the start must be before the end"
            ));
        }
        const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let index = |d: &str| {
            NAMES
                .iter()
                .position(|n| *n == d.trim().to_ascii_lowercase())
                .ok_or_else(|| format!("--days {days:?}: {d:?} is not mon…sun"))
        };
        let mut set = [false; 7];
        if days.trim() == "all" {
            set = [true; 7];
        } else {
            for part in days.split(',') {
                match part.split_once('-') {
                    Some((a, b)) => {
                        let (a, b) = (index(a)?, index(b)?);
                        if a > b {
                            return Err(format!("--days {days:?}: {part:?} runs backwards"));
                        }
                        set[a..=b].iter_mut().for_each(|d| *d = true);
                    }
                    None => set[index(part)?] = true,
                }
            }
        }
        Ok(Self {
            days: set,
            start,
            end,
        })
    }

    /// How long from `now` until calls may be placed (zero: now).
    pub fn wait(&self, now: NaiveDateTime) -> Duration {
        for day in 0..8 {
            let date = now.date() + chrono::Days::new(day);
            if !self.days[date.weekday().num_days_from_monday() as usize] {
                continue;
            }
            let open = date.and_time(self.start);
            let close = date.and_time(self.end);
            if now < close {
                return (open - now).to_std().unwrap_or(Duration::ZERO);
            }
        }
        // No day allowed at all: never (a week, checked again then).
        Duration::from_secs(7 * 86400)
    }
}

/// The rules of a campaign.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Calls started per second, at most.
    pub cps: f64,
    /// Calls ringing or talking at once, at most.
    pub concurrency: usize,
    /// Attempts per number, at most.
    pub attempts: u32,
    /// Wait before trying a busy or unanswered number again.
    pub retry_after: Duration,
    /// When calls may be placed (none: any time).
    pub window: Option<Window>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Waiting { due: Instant },
    Dialing,
    Done(Outcome),
}

/// One number of the list.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The number as in the list.
    pub number: String,
    /// Attempts made.
    pub attempts: u32,
    state: State,
}

impl Entry {
    /// The final outcome, once there is one.
    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.state {
            State::Done(o) => Some(o),
            _ => None,
        }
    }
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Dial entry `i` now.
    Dial(usize),
    /// Nothing before this instant (or an event).
    Sleep(Instant),
    /// Nothing until a call in progress ends.
    AwaitCalls,
    /// Every number has its outcome.
    Finished,
}

/// The campaign's state.
#[derive(Debug)]
pub struct Plan {
    policy: Policy,
    entries: Vec<Entry>,
    last_start: Option<Instant>,
}

impl Plan {
    /// `numbers` in order, all due at `now`.
    pub fn new(policy: Policy, numbers: Vec<String>, now: Instant) -> Self {
        Self {
            entries: numbers
                .into_iter()
                .map(|number| Entry {
                    number,
                    attempts: 0,
                    state: State::Waiting { due: now },
                })
                .collect(),
            policy,
            last_start: None,
        }
    }

    /// The numbers and their state.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    fn dialing(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.state == State::Dialing)
            .count()
    }

    /// The next step at `now` (monotonic) and `local` (the wall clock the
    /// window is in).
    pub fn next(&mut self, now: Instant, local: NaiveDateTime) -> Next {
        let waiting: Vec<(usize, Instant)> = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e.state {
                State::Waiting { due } => Some((i, due)),
                _ => None,
            })
            .collect();
        if waiting.is_empty() {
            return if self.dialing() == 0 {
                Next::Finished
            } else {
                Next::AwaitCalls
            };
        }
        if self.dialing() >= self.policy.concurrency.max(1) {
            return Next::AwaitCalls;
        }
        let mut at = waiting.iter().map(|(_, d)| *d).min().unwrap_or(now);
        if let Some(last) = self.last_start {
            let gap = Duration::from_secs_f64(1.0 / self.policy.cps.max(0.001));
            at = at.max(last + gap);
        }
        if let Some(w) = &self.policy.window {
            let wait = w.wait(local);
            if !wait.is_zero() {
                at = at.max(now + wait);
            }
        }
        if at > now {
            return Next::Sleep(at);
        }
        let Some(&(i, _)) = waiting
            .iter()
            .filter(|(_, d)| *d <= now)
            .min_by_key(|(_, d)| *d)
        else {
            return Next::Sleep(at);
        };
        self.entries[i].state = State::Dialing;
        self.entries[i].attempts += 1;
        self.last_start = Some(now);
        Next::Dial(i)
    }

    /// Entry `i`'s dial ended with `outcome` at `now`.
    pub fn finished(&mut self, i: usize, outcome: Outcome, now: Instant) {
        let Some(e) = self.entries.get_mut(i) else {
            return;
        };
        if e.state != State::Dialing {
            return;
        }
        e.state = if outcome.retried() && e.attempts < self.policy.attempts {
            State::Waiting {
                due: now + self.policy.retry_after,
            }
        } else {
            State::Done(outcome)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    fn policy() -> Policy {
        Policy {
            cps: 2.0,
            concurrency: 2,
            attempts: 3,
            retry_after: Duration::from_secs(60),
            window: None,
        }
    }

    #[test]
    fn calls_are_paced_and_bounded_in_number() {
        let t0 = Instant::now();
        let noon = local("2026-12-02 12:00");
        let mut p = Plan::new(policy(), vec!["1".into(), "2".into(), "3".into()], t0);
        assert_eq!(p.next(t0, noon), Next::Dial(0));
        // Two per second: the next one half a second later.
        assert_eq!(
            p.next(t0, noon),
            Next::Sleep(t0 + Duration::from_millis(500))
        );
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(p.next(t1, noon), Next::Dial(1));
        // Two at once: the third waits for a call to end.
        assert_eq!(p.next(t1 + Duration::from_secs(1), noon), Next::AwaitCalls);
        p.finished(0, Outcome::Answered, t1 + Duration::from_secs(1));
        assert_eq!(p.next(t1 + Duration::from_secs(1), noon), Next::Dial(2));
        assert_eq!(p.entries()[0].outcome(), Some(&Outcome::Answered));
    }

    #[test]
    fn busy_numbers_are_tried_again_up_to_the_attempts_and_invalid_ones_not() {
        let t0 = Instant::now();
        let noon = local("2026-12-02 12:00");
        let mut p = Plan::new(
            Policy {
                cps: 100.0,
                ..policy()
            },
            vec!["1".into(), "2".into()],
            t0,
        );
        assert_eq!(p.next(t0, noon), Next::Dial(0));
        let t = t0 + Duration::from_secs(1);
        assert_eq!(p.next(t, noon), Next::Dial(1));
        p.finished(1, Outcome::Invalid("cause 1".into()), t);
        let mut now = t;
        for attempt in 1..=3 {
            p.finished(0, Outcome::Busy, now);
            if attempt == 3 {
                break;
            }
            assert_eq!(
                p.next(now, noon),
                Next::Sleep(now + Duration::from_secs(60))
            );
            now += Duration::from_secs(60);
            assert_eq!(p.next(now, noon), Next::Dial(0));
        }
        assert_eq!(p.entries()[0].attempts, 3);
        assert_eq!(p.entries()[0].outcome(), Some(&Outcome::Busy));
        assert!(matches!(
            p.entries()[1].outcome(),
            Some(Outcome::Invalid(_))
        ));
        assert_eq!(p.entries()[1].attempts, 1);
        assert_eq!(p.next(now, noon), Next::Finished);
    }

    #[test]
    fn outside_the_window_the_campaign_sleeps_until_it_opens() {
        let w = Window::parse("09:00-18:00", "mon-fri").unwrap();
        // Wednesday 2 December 2026.
        assert_eq!(w.wait(local("2026-12-02 12:00")), Duration::ZERO);
        assert_eq!(w.wait(local("2026-12-02 08:30")), Duration::from_secs(1800));
        assert_eq!(
            w.wait(local("2026-12-02 18:00")),
            Duration::from_secs(15 * 3600)
        );
        // Friday evening → Monday 9:00.
        assert_eq!(
            w.wait(local("2026-12-04 19:00")),
            Duration::from_secs((5 + 48 + 9) * 3600)
        );
        let t0 = Instant::now();
        let mut p = Plan::new(
            Policy {
                window: Some(w),
                ..policy()
            },
            vec!["1".into()],
            t0,
        );
        assert_eq!(
            p.next(t0, local("2026-12-02 08:30")),
            Next::Sleep(t0 + Duration::from_secs(1800))
        );
        assert_eq!(p.next(t0, local("2026-12-02 09:00")), Next::Dial(0));
        for bad in [
            ("9-18", "mon"),
            ("18:00-09:00", "mon"),
            ("09:00-18:00", "montag"),
            ("09:00-18:00", "fri-mon"),
        ] {
            assert!(Window::parse(bad.0, bad.1).is_err(), "{bad:?}");
        }
        assert_eq!(
            Window::parse("08:00-12:00", "sat,sun").unwrap().days,
            [false, false, false, false, false, true, true]
        );
    }

    #[test]
    fn causes_mean_what_q850_says() {
        assert_eq!(Outcome::from_cause(17, "User busy"), Outcome::Busy);
        assert_eq!(Outcome::from_cause(19, "No answer"), Outcome::NoAnswer);
        assert_eq!(
            Outcome::from_cause(34, "Circuit congestion"),
            Outcome::Congestion
        );
        assert!(matches!(
            Outcome::from_cause(1, "Unallocated"),
            Outcome::Invalid(_)
        ));
        assert!(!Outcome::from_cause(1, "").retried());
        assert!(Outcome::from_cause(42, "").retried());
    }
}
