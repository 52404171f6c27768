//! Dead air: when a reply takes longer than its budget (a slow LLM or STT
//! server), a short filler ("Einen Moment bitte.") is played once, so the
//! caller never hears more than about a second and a half of silence.
//! Sans-IO: the media task tells it when a turn was handed over and when
//! its reply started, and asks at its deadline.

use std::time::{Duration, Instant};

/// Watches one call's pending reply.
#[derive(Debug)]
pub struct ReplyWatch {
    budget: Duration,
    armed: Option<(u64, Instant)>,
}

impl ReplyWatch {
    /// Fills after `budget` without a reply.
    pub fn new(budget: Duration) -> Self {
        Self {
            budget,
            armed: None,
        }
    }

    /// The caller's turn `turn` is over, and they have been silent since
    /// `since`: a reply is due within the budget from then.
    pub fn handed_over(&mut self, turn: u64, since: Instant) {
        self.armed = Some((turn, since + self.budget));
    }

    /// Reply audio for `turn` arrived (or the turn was abandoned).
    pub fn replied(&mut self, turn: u64) {
        if self.armed.is_some_and(|(t, _)| t <= turn) {
            self.armed = None;
        }
    }

    /// Forget any pending reply (barge-in, hangup).
    pub fn cancel(&mut self) {
        self.armed = None;
    }

    /// When to ask [`ReplyWatch::poll`] next.
    pub fn deadline(&self) -> Option<Instant> {
        self.armed.map(|(_, at)| at)
    }

    /// The turn to fill now, once per turn.
    pub fn poll(&mut self, now: Instant) -> Option<u64> {
        match self.armed {
            Some((turn, at)) if at <= now => {
                self.armed = None;
                Some(turn)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_once_after_the_budget_unless_the_reply_came() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut w = ReplyWatch::new(Duration::from_millis(1200));
        assert_eq!(w.poll(ms(5000)), None, "nothing pending");
        w.handed_over(3, t0);
        assert_eq!(w.deadline(), Some(ms(1200)));
        assert_eq!(w.poll(ms(1199)), None);
        assert_eq!(w.poll(ms(1200)), Some(3));
        assert_eq!(w.poll(ms(1300)), None, "only once");
        // A reply in time: no filler.
        w.handed_over(4, ms(2000));
        w.replied(4);
        assert_eq!(w.poll(ms(4000)), None);
        // A stale reply (earlier turn) does not disarm a newer one.
        w.handed_over(6, ms(5000));
        w.replied(5);
        assert_eq!(w.poll(ms(6200)), Some(6));
        // Barge-in cancels.
        w.handed_over(7, ms(7000));
        w.cancel();
        assert_eq!(w.deadline(), None);
        assert_eq!(w.poll(ms(9000)), None);
    }
}
