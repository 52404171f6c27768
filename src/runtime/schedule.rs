//! The speech pool's queue: the work a caller is waiting on first, by
//! deadline; speculative work after it, and shed once it can no longer
//! help.
//!
//! A first-come queue makes every caller wait behind every other call's
//! pause transcripts and turn checks when callers speak at the same
//! instants; here a worker takes the job with the earliest deadline, an
//! urgent one (a reply's input, a transcript an ended turn waits for)
//! before a speculative one with the same deadline. Speculative work is
//! not put last outright: a pause transcript is, most of the time, the
//! only decode of its turn (the reply reuses it, and it ends the turn at
//! the pause), and starving it holds every turn open to the ceiling. What
//! cannot help any more (a turn check past its wait) is shed, and in a
//! full queue speculative work gives way to urgent work. Urgency is asked
//! of the job when a worker looks (a pause transcript becomes urgent the
//! moment its turn ends and waits for it), so the queue is scanned, not
//! heaped: it holds tens of jobs, a worker takes one per decode.
//!
//! The queue keeps no clock: `now` is passed in, which lets the tests
//! drive it in simulated time.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// What the queue asks of a job.
pub trait Scheduled {
    /// Whether a caller is waiting on it now (asked again at every look).
    fn urgent(&self) -> bool;
    /// When its result is needed.
    fn deadline(&self) -> Instant;
    /// Whether it is still worth doing at `now`.
    fn verdict(&self, now: Instant) -> Verdict;
}

/// A job's worth when a worker looks at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Do it.
    Keep,
    /// Its turn or call is over: drop it.
    Stale,
    /// Speculative and past the point where its result can help: drop it
    /// (a degradation under load, counted apart from stale jobs).
    Late,
}

/// How the queue orders its jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Earliest deadline first (urgent before speculative at the same
    /// deadline), speculative work shed when late or for urgent work.
    #[default]
    Deadline,
    /// First come, first served, nothing shed but stale jobs (the pool as
    /// it was: kept to measure the difference side by side).
    Arrival,
}

/// What [`Queue::push`] did.
#[derive(Debug)]
pub enum Pushed<T> {
    /// Queued.
    Queued,
    /// Queued in the place of a speculative job, which comes back (the
    /// queue was full and the new job is urgent).
    Displaced(T),
    /// The queue is full of work at least as urgent: the job comes back.
    Full(T),
    /// The queue is closed.
    Closed(T),
}

/// What [`Queue::pop`] found.
#[derive(Debug)]
pub enum Popped<T> {
    /// The next job.
    Job(T),
    /// Nothing within the wait.
    Empty,
    /// Closed and empty.
    Closed,
}

/// Jobs dropped on the way, by why.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Their turn or call was over.
    pub stale: u64,
    /// Speculative and too late to help.
    pub late: u64,
}

struct State<T> {
    jobs: Vec<(u64, T)>,
    seq: u64,
    closed: bool,
}

/// A bounded, deadline-ordered job queue shared by the media tasks (push)
/// and the speech workers (pop).
pub struct Queue<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    capacity: usize,
    order: Order,
}

impl<T: Scheduled> Queue<T> {
    /// An empty queue holding at most `capacity` jobs.
    pub fn new(capacity: usize) -> Self {
        Self::with_order(capacity, Order::Deadline)
    }

    /// As [`Queue::new`], ordered by `order`.
    pub fn with_order(capacity: usize, order: Order) -> Self {
        Self {
            order,
            state: Mutex::new(State {
                jobs: Vec::with_capacity(capacity.max(1)),
                seq: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Offers a job without blocking. A full queue makes room for an
    /// urgent job by giving back the speculative job needed last.
    pub fn push(&self, job: T) -> Pushed<T> {
        let mut s = self.lock();
        if s.closed {
            return Pushed::Closed(job);
        }
        let mut displaced = None;
        if s.jobs.len() >= self.capacity {
            if !job.urgent() || self.order == Order::Arrival {
                return Pushed::Full(job);
            }
            let victim = s
                .jobs
                .iter()
                .enumerate()
                .filter(|(_, (_, j))| !j.urgent())
                .max_by_key(|(_, (_, j))| j.deadline())
                .map(|(i, _)| i);
            match victim {
                Some(i) => displaced = Some(s.jobs.swap_remove(i).1),
                None => return Pushed::Full(job),
            }
        }
        s.seq += 1;
        let seq = s.seq;
        s.jobs.push((seq, job));
        drop(s);
        self.ready.notify_one();
        match displaced {
            Some(d) => Pushed::Displaced(d),
            None => Pushed::Queued,
        }
    }

    /// Takes the next job at `now` without waiting, dropping (and
    /// counting into `dropped`) what is no longer worth doing.
    pub fn take(&self, now: Instant, dropped: &mut Dropped) -> Option<T> {
        let mut s = self.lock();
        self.next(&mut s, now, dropped)
    }

    /// Takes the next job, waiting up to `wait` for one; `now` gives the
    /// time each look happens at (the workers pass `Instant::now`).
    pub fn pop(
        &self,
        wait: Duration,
        now: impl Fn() -> Instant,
        dropped: &mut Dropped,
    ) -> Popped<T> {
        let mut s = self.lock();
        let until = now() + wait;
        loop {
            if let Some(job) = self.next(&mut s, now(), dropped) {
                return Popped::Job(job);
            }
            if s.closed {
                return Popped::Closed;
            }
            let t = now();
            if t >= until {
                return Popped::Empty;
            }
            s = match self.ready.wait_timeout(s, until - t) {
                Ok((s, _)) => s,
                Err(p) => p.into_inner().0,
            };
        }
    }

    fn next(&self, s: &mut State<T>, now: Instant, dropped: &mut Dropped) -> Option<T> {
        let arrival = self.order == Order::Arrival;
        s.jobs.retain(|(_, j)| match j.verdict(now) {
            Verdict::Keep => true,
            Verdict::Late if arrival => true,
            Verdict::Stale => {
                dropped.stale += 1;
                false
            }
            Verdict::Late => {
                dropped.late += 1;
                false
            }
        });
        if arrival {
            return (!s.jobs.is_empty()).then(|| s.jobs.remove(0).1);
        }
        // The earliest deadline, urgent before speculative, the oldest.
        let best = s
            .jobs
            .iter()
            .enumerate()
            .min_by_key(|(_, (seq, j))| (j.deadline(), !j.urgent(), *seq))
            .map(|(i, _)| i)?;
        Some(s.jobs.remove(best).1)
    }

    /// Jobs waiting now.
    pub fn len(&self) -> usize {
        self.lock().jobs.len()
    }

    /// Whether no job waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Urgent jobs waiting now whose deadline has passed at `now`: the
    /// pool is behind its callers.
    pub fn overdue(&self, now: Instant) -> usize {
        self.lock()
            .jobs
            .iter()
            .filter(|(_, j)| j.urgent() && j.deadline() <= now)
            .count()
    }

    /// How far past its deadline the latest urgent job waiting is at
    /// `now` (zero: none is late): admission control reads it.
    pub fn behind(&self, now: Instant) -> Duration {
        self.lock()
            .jobs
            .iter()
            .filter(|(_, j)| j.urgent())
            .map(|(_, j)| now.saturating_duration_since(j.deadline()))
            .max()
            .unwrap_or_default()
    }

    /// Stops taking jobs; workers drain what is queued, then see `Closed`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[derive(Debug)]
    struct J {
        name: &'static str,
        urgent: Cell<bool>,
        deadline: Instant,
        verdict: Cell<Verdict>,
    }

    impl Scheduled for J {
        fn urgent(&self) -> bool {
            self.urgent.get()
        }
        fn deadline(&self) -> Instant {
            self.deadline
        }
        fn verdict(&self, _: Instant) -> Verdict {
            self.verdict.get()
        }
    }

    fn j(name: &'static str, urgent: bool, at: Instant, ms: u64) -> J {
        J {
            name,
            urgent: Cell::new(urgent),
            deadline: at + Duration::from_millis(ms),
            verdict: Cell::new(Verdict::Keep),
        }
    }

    fn names(q: &Queue<J>, now: Instant) -> Vec<&'static str> {
        let mut d = Dropped::default();
        std::iter::from_fn(|| q.take(now, &mut d).map(|j| j.name)).collect()
    }

    #[test]
    fn earliest_deadline_first_urgent_before_speculative_at_a_tie() {
        let t = Instant::now();
        let q = Queue::new(16);
        for job in [
            j("pause-a", false, t, 400),
            j("reply-b", true, t, 900),
            j("check-c", false, t, 200),
            j("reply-a", true, t, 400),
            j("pause-b", false, t, 400),
        ] {
            assert!(matches!(q.push(job), Pushed::Queued));
        }
        // Same deadline: urgent first, then the older.
        assert_eq!(
            names(&q, t),
            ["check-c", "reply-a", "pause-a", "pause-b", "reply-b"]
        );
    }

    #[test]
    fn urgency_is_asked_when_a_worker_looks() {
        let t = Instant::now();
        let q = Queue::new(16);
        q.push(j("reply", true, t, 900));
        q.push(j("pause", false, t, 900));
        q.push(j("pause-2", false, t, 900));
        // The second pause's turn ended and waits for its transcript.
        q.state.lock().unwrap().jobs[2].1.urgent.set(true);
        assert_eq!(names(&q, t), ["reply", "pause-2", "pause"]);
    }

    #[test]
    fn stale_and_late_jobs_are_dropped_and_counted_apart() {
        let t = Instant::now();
        let q = Queue::new(16);
        let stale = j("stale", true, t, 100);
        stale.verdict.set(Verdict::Stale);
        let late = j("late", false, t, 100);
        late.verdict.set(Verdict::Late);
        q.push(stale);
        q.push(late);
        q.push(j("kept", false, t, 900));
        let mut d = Dropped::default();
        assert_eq!(q.take(t, &mut d).map(|j| j.name), Some("kept"));
        assert_eq!(d, Dropped { stale: 1, late: 1 });
        assert!(q.take(t, &mut d).is_none());
    }

    #[test]
    fn a_full_queue_makes_room_for_urgent_work_only() {
        let t = Instant::now();
        let q = Queue::new(2);
        q.push(j("pause-soon", false, t, 100));
        q.push(j("pause-later", false, t, 800));
        match q.push(j("check", false, t, 50)) {
            Pushed::Full(job) => assert_eq!(job.name, "check"),
            other => panic!("{other:?}"),
        }
        // The speculative job needed last makes room.
        match q.push(j("reply", true, t, 900)) {
            Pushed::Displaced(job) => assert_eq!(job.name, "pause-later"),
            other => panic!("{other:?}"),
        }
        match q.push(j("reply-2", true, t, 900)) {
            Pushed::Displaced(job) => assert_eq!(job.name, "pause-soon"),
            other => panic!("{other:?}"),
        }
        // All urgent now: nothing gives way.
        assert!(matches!(q.push(j("reply-3", true, t, 10)), Pushed::Full(_)));
        assert_eq!(names(&q, t), ["reply", "reply-2"]);
    }

    #[test]
    fn overdue_counts_urgent_jobs_past_their_deadline() {
        let t = Instant::now();
        let q = Queue::new(8);
        q.push(j("reply", true, t, 100));
        q.push(j("reply-late", true, t, 600));
        q.push(j("pause", false, t, 100));
        assert_eq!(q.overdue(t), 0);
        assert_eq!(q.behind(t), Duration::ZERO);
        assert_eq!(q.overdue(t + Duration::from_millis(200)), 1);
        assert_eq!(q.overdue(t + Duration::from_millis(700)), 2);
        // The speculative pause is no caller waiting.
        assert_eq!(
            q.behind(t + Duration::from_millis(700)),
            Duration::from_millis(600)
        );
    }

    #[test]
    fn arrival_order_serves_first_come_and_sheds_nothing_late() {
        let t = Instant::now();
        let q = Queue::with_order(2, Order::Arrival);
        q.push(j("pause", false, t, 400));
        let late = j("check", false, t, 10);
        late.verdict.set(Verdict::Late);
        q.push(late);
        // Full: even urgent work is refused, nothing gives way.
        assert!(matches!(q.push(j("reply", true, t, 100)), Pushed::Full(_)));
        assert_eq!(names(&q, t), ["pause", "check"]);
    }

    #[test]
    fn closed_queue_refuses_jobs_and_drains_what_it_holds() {
        let t = Instant::now();
        let q = Queue::new(4);
        q.push(j("reply", true, t, 100));
        q.close();
        assert!(matches!(q.push(j("late", true, t, 1)), Pushed::Closed(_)));
        let mut d = Dropped::default();
        let now = Instant::now;
        assert!(matches!(q.pop(Duration::ZERO, now, &mut d), Popped::Job(_)));
        assert!(matches!(
            q.pop(Duration::from_millis(10), now, &mut d),
            Popped::Closed
        ));
    }

    #[test]
    fn pop_waits_for_a_push_from_another_thread() {
        let q = std::sync::Arc::new(Queue::<Sent>::new(4));
        let q2 = q.clone();
        let pusher = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            q2.push(Sent(7));
        });
        let mut d = Dropped::default();
        let got = q.pop(Duration::from_secs(5), Instant::now, &mut d);
        assert!(matches!(got, Popped::Job(Sent(7))));
        let _ = pusher.join();
        assert!(matches!(
            q.pop(Duration::from_millis(5), Instant::now, &mut d),
            Popped::Empty
        ));
    }

    /// A job that can cross threads (the `Cell`s above cannot).
    #[derive(Debug)]
    struct Sent(u32);

    impl Scheduled for Sent {
        fn urgent(&self) -> bool {
            true
        }
        fn deadline(&self) -> Instant {
            Instant::now()
        }
        fn verdict(&self, _: Instant) -> Verdict {
            Verdict::Keep
        }
    }
}
