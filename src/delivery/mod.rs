//! Post-call delivery: at the end of each call a JSON document (who
//! called, when, every turn with its transcript, reply and latency, the
//! outcome and the slots, the recordings) goes to the operator's webhook —
//! spooled on disk first ([`spool`]), signed ([`sign`]), retried with
//! backoff, and carrying an idempotency key so that the receiver can take
//! each call exactly once although a crash between its answer and our
//! bookkeeping makes us send it again.
//!
//! The sender is one task per process that owns the spool (a file lock
//! keeps a second process from posting the same documents at once).

pub mod document;
pub mod sign;
pub mod spool;

use spool::{Spool, SpoolError};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The header with the idempotency key (also the document's `key`).
pub const KEY_HEADER: &str = "idempotency-key";

/// Where and how documents go.
#[derive(Clone)]
pub struct DeliveryConfig {
    /// The webhook URL (`http://` or `https://`).
    pub url: String,
    /// The shared secret of the signature (empty: unsigned).
    pub secret: Vec<u8>,
    /// The spool directory.
    pub spool_dir: PathBuf,
    /// Longest wait for the receiver's answer.
    pub timeout: Duration,
    /// Documents in flight at once.
    pub concurrency: usize,
    /// Wait after the first failure; doubled per failure …
    pub backoff_first: Duration,
    /// … up to this.
    pub backoff_max: Duration,
}

impl std::fmt::Debug for DeliveryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryConfig")
            .field("url", &self.url)
            .field("signed", &!self.secret.is_empty())
            .field("spool_dir", &self.spool_dir)
            .field("timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

/// What the receiver's answer means for a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Taken (2xx, or 409: it has this key already).
    Delivered,
    /// Try again later (timeouts, 408, 425, 429, 5xx, and 401/403/404,
    /// which a fixed configuration cures: those must not lose the call).
    Retry {
        /// The receiver's `Retry-After`, if any.
        after: Option<Duration>,
        /// Why.
        why: String,
    },
    /// The receiver refuses the document as such (400, 413, 422, other
    /// 4xx): sending it again changes nothing; it waits in `failed/`.
    Refused(String),
}

/// Classifies an HTTP status (and its `Retry-After` header).
pub fn classify(status: u16, retry_after: Option<&str>) -> Verdict {
    let after = retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(3600)));
    match status {
        200..=299 | 409 => Verdict::Delivered,
        401 | 403 | 404 | 408 | 425 | 429 | 500..=599 => Verdict::Retry {
            after,
            why: format!("HTTP {status}"),
        },
        _ => Verdict::Refused(format!("HTTP {status}")),
    }
}

/// The wait before attempt `failures + 1`: `first · 2^(failures−1)`, capped
/// at `max`, spread by `jitter` ∈ [0, 1) over ±25 % so that documents that
/// failed together do not come back together.
pub fn backoff(failures: u32, first: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    let base = first.saturating_mul(1u32 << exp).min(max);
    base.mul_f64(0.75 + 0.5 * jitter.clamp(0.0, 1.0)).min(max)
}

/// Counters of the sender (for metrics and `spool` reports).
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Documents the receiver took.
    pub delivered: AtomicU64,
    /// Failed attempts that will be retried.
    pub retried: AtomicU64,
    /// Documents refused as such (moved to `failed/`).
    pub refused: AtomicU64,
    /// Documents that could not be spooled (disk full or broken) and are
    /// held in memory, delivered from there and spooled when the disk lets.
    pub unspooled: AtomicU64,
    /// Documents waiting now (spooled or held).
    pub waiting: AtomicU64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

enum Item {
    New {
        key: String,
        body: Vec<u8>,
    },
    /// Answered once every document submitted before is spooled.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The handle calls submit their documents to.
#[derive(Clone)]
pub struct Delivery {
    tx: mpsc::UnboundedSender<Item>,
    stats: Arc<DeliveryStats>,
}

/// How the sender runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Until the handle's last clone is dropped (`aiagc serve`).
    Serve,
    /// Until nothing is left to send (`aiagc spool replay`): what is
    /// pending is sent now, backoff only between failures.
    UntilEmpty,
}

/// The sender task; await it to know it has finished.
pub type SenderTask = tokio::task::JoinHandle<Result<(), SpoolError>>;

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("stats", &self.stats)
            .finish()
    }
}

impl Delivery {
    /// Opens the spool, takes its lock and starts the sender with what is
    /// pending from before (a restart resumes where the last run stopped).
    pub fn start(config: DeliveryConfig, mode: Mode) -> Result<(Self, SenderTask), SpoolError> {
        let spool = Spool::open(&config.spool_dir)?;
        let lock = spool.lock()?;
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(concat!("aiagc/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SpoolError::Io {
                what: "building the HTTP client for",
                path: config.spool_dir.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(DeliveryStats::default());
        let sender = Sender {
            spool: Arc::new(spool),
            client,
            config,
            stats: stats.clone(),
            due: HashMap::new(),
            held: HashMap::new(),
            inflight: HashSet::new(),
            mode,
        };
        let task = tokio::spawn(async move {
            let _lock = lock;
            sender.run(rx).await
        });
        Ok((Self { tx, stats }, task))
    }

    /// Hands over a finished call's document (see [`document`]).
    pub fn submit(&self, key: String, body: Vec<u8>) {
        self.stats.waiting.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(Item::New { key, body }).is_err() {
            tracing::error!("post-call delivery has stopped: document not spooled");
        }
    }

    /// Returns once every document submitted so far is on disk (or held,
    /// where the disk refused it): before the process exits.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Item::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// The sender's counters.
    pub fn stats(&self) -> Arc<DeliveryStats> {
        self.stats.clone()
    }
}

struct Sender {
    spool: Arc<Spool>,
    client: reqwest::Client,
    config: DeliveryConfig,
    stats: Arc<DeliveryStats>,
    /// Key → when its next attempt is due.
    due: HashMap<String, Instant>,
    /// Documents not on disk (the spool refused the write).
    held: HashMap<String, Arc<Vec<u8>>>,
    inflight: HashSet<String>,
    mode: Mode,
}

/// How often the spool directory is read again for documents put back by
/// `aiagc spool replay --failed` from another process.
const RESCAN: Duration = Duration::from_secs(30);

impl Sender {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Item>) -> Result<(), SpoolError> {
        if let Err(e) = self.rescan() {
            // New documents still go out (held in memory if need be).
            tracing::error!(error = %e, "spool not readable: earlier documents wait for the next rescan");
        }
        let mut attempts: JoinSet<(String, Verdict)> = JoinSet::new();
        let mut open = true;
        let mut next_rescan = Instant::now() + RESCAN;
        loop {
            let now = Instant::now();
            self.launch(now, &mut attempts);
            if self.mode == Mode::UntilEmpty && self.due.is_empty() && attempts.is_empty() {
                break;
            }
            if !open && attempts.is_empty() && self.mode == Mode::Serve {
                break;
            }
            let wake = self
                .due
                .iter()
                .filter(|(k, _)| !self.inflight.contains(*k))
                .map(|(_, at)| *at)
                .min()
                .unwrap_or(now + RESCAN)
                .min(next_rescan);
            tokio::select! {
                item = rx.recv(), if open => match item {
                    Some(Item::New { key, body }) => self.spool_new(key, body).await,
                    Some(Item::Flush(done)) => { let _ = done.send(()); }
                    None => open = false,
                },
                Some(done) = attempts.join_next() => {
                    match done {
                        Ok((key, verdict)) => self.settle(key, verdict),
                        Err(e) => tracing::error!(error = %e, "delivery attempt panicked"),
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= next_rescan {
                        next_rescan = Instant::now() + RESCAN;
                        if let Err(e) = self.rescan() {
                            tracing::warn!(error = %e, "spool not readable");
                        }
                    }
                }
            }
        }
        // Closing: what could not be delivered stays on disk; held
        // documents get one more try at the disk.
        self.spool_held();
        if !self.held.is_empty() {
            tracing::error!(
                documents = self.held.len(),
                "post-call documents lost at exit: the spool could not be written"
            );
        }
        Ok(())
    }

    /// Adds keys on disk that are not known yet (due now).
    fn rescan(&mut self) -> Result<(), SpoolError> {
        let now = Instant::now();
        for key in self.spool.pending_keys()? {
            self.due.entry(key).or_insert(now);
        }
        self.stats
            .waiting
            .store(self.due.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn spool_new(&mut self, key: String, body: Vec<u8>) {
        let spool = self.spool.clone();
        let body = Arc::new(body);
        let (k, b) = (key.clone(), body.clone());
        let written = tokio::task::spawn_blocking(move || spool.put(&k, &b))
            .await
            .unwrap_or_else(|e| {
                Err(SpoolError::Io {
                    what: "spooling",
                    path: PathBuf::new(),
                    source: std::io::Error::other(e.to_string()),
                })
            });
        if let Err(e) = written {
            self.stats.unspooled.fetch_add(1, Ordering::Relaxed);
            tracing::error!(key = %key, error = %e, "post-call document not spooled: held in memory");
            self.held.insert(key.clone(), body);
        }
        self.due.insert(key, Instant::now());
    }

    /// Held documents go to disk where it takes them again.
    fn spool_held(&mut self) {
        let keys: Vec<String> = self.held.keys().cloned().collect();
        for key in keys {
            if let Some(body) = self.held.get(&key) {
                if self.spool.put(&key, body).is_ok() {
                    tracing::info!(key = %key, "held post-call document spooled");
                    self.held.remove(&key);
                }
            }
        }
    }

    fn launch(&mut self, now: Instant, attempts: &mut JoinSet<(String, Verdict)>) {
        while self.inflight.len() < self.config.concurrency.max(1) {
            let Some(key) = self
                .due
                .iter()
                .filter(|(k, at)| **at <= now && !self.inflight.contains(*k))
                .min_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)))
                .map(|(k, _)| k.clone())
            else {
                return;
            };
            let body = match self.held.get(&key) {
                Some(b) => b.clone(),
                None => match self.spool.read(&key) {
                    Ok(b) => Arc::new(b),
                    Err(SpoolError::Unknown(_)) => {
                        // Delivered or moved by another process.
                        self.due.remove(&key);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(key = %key, error = %e, "spooled document not readable");
                        self.due.insert(key, now + self.config.backoff_max);
                        continue;
                    }
                },
            };
            self.inflight.insert(key.clone());
            let (client, url, secret) = (
                self.client.clone(),
                self.config.url.clone(),
                self.config.secret.clone(),
            );
            attempts.spawn(async move {
                let verdict = post(&client, &url, &secret, &key, &body).await;
                (key, verdict)
            });
        }
    }

    fn settle(&mut self, key: String, verdict: Verdict) {
        self.inflight.remove(&key);
        let now = unix_now();
        match verdict {
            Verdict::Delivered => {
                self.due.remove(&key);
                if self.held.remove(&key).is_none() {
                    if let Err(e) = self.spool.delivered(&key) {
                        // Sent again after a restart; the key makes that harmless.
                        tracing::warn!(key = %key, error = %e, "delivered document not removed");
                    }
                }
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                tracing::info!(key = %key, "post-call document delivered");
            }
            Verdict::Retry { after, why } => {
                self.stats.retried.fetch_add(1, Ordering::Relaxed);
                let failures = if self.held.contains_key(&key) {
                    1
                } else {
                    self.spool.attempt_failed(&key, &why, now).unwrap_or(1)
                };
                let wait = backoff(
                    failures,
                    self.config.backoff_first,
                    self.config.backoff_max,
                    rand::random::<f64>(),
                )
                .max(after.unwrap_or_default());
                tracing::warn!(key = %key, attempt = failures, error = %why, retry_in_ms = wait.as_millis() as u64, "post-call delivery failed; will retry");
                self.due.insert(key, Instant::now() + wait);
                self.spool_held();
            }
            Verdict::Refused(why) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::error!(key = %key, error = %why, "post-call document refused by the receiver: kept in failed/");
                if self.held.contains_key(&key) {
                    // Nowhere to keep it but memory: try again much later.
                    self.due
                        .insert(key, Instant::now() + self.config.backoff_max);
                } else {
                    self.due.remove(&key);
                    if let Err(e) = self.spool.reject(&key, &why, now) {
                        tracing::error!(key = %key, error = %e, "refused document not moved");
                    }
                }
            }
        }
        self.stats
            .waiting
            .store(self.due.len() as u64, Ordering::Relaxed);
    }
}

/// One attempt: sign, post, classify.
async fn post(
    client: &reqwest::Client,
    url: &str,
    secret: &[u8],
    key: &str,
    body: &[u8],
) -> Verdict {
    let mut req = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(KEY_HEADER, key)
        .body(body.to_vec());
    if !secret.is_empty() {
        req = req.header(sign::HEADER, sign::sign(secret, unix_now(), body));
    }
    match req.send().await {
        Ok(resp) => {
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            classify(resp.status().as_u16(), retry_after.as_deref())
        }
        Err(e) => Verdict::Retry {
            after: None,
            why: if e.is_timeout() {
                "timed out".into()
            } else if e.is_connect() {
                "connection refused or unreachable".into()
            } else {
                format!("{e}")
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_decide_between_done_again_and_kept() {
        assert_eq!(classify(200, None), Verdict::Delivered);
        assert_eq!(classify(204, None), Verdict::Delivered);
        assert_eq!(classify(409, None), Verdict::Delivered);
        for s in [401, 403, 404, 408, 425, 429, 500, 502, 503, 504] {
            assert!(matches!(classify(s, None), Verdict::Retry { .. }), "{s}");
        }
        for s in [400, 405, 413, 422, 301, 100] {
            assert!(matches!(classify(s, None), Verdict::Refused(_)), "{s}");
        }
        assert_eq!(
            classify(503, Some(" 7 ")),
            Verdict::Retry {
                after: Some(Duration::from_secs(7)),
                why: "HTTP 503".into()
            }
        );
        // A date or garbage is no number of seconds: ignored, not fatal.
        for bad in ["Wed, 21 Oct 2015 07:28:00 GMT", "-1", "soon", ""] {
            assert!(
                matches!(classify(503, Some(bad)), Verdict::Retry { after: None, .. }),
                "{bad}"
            );
        }
        assert!(matches!(
            classify(429, Some("999999")),
            Verdict::Retry { after: Some(d), .. } if d == Duration::from_secs(3600)
        ));
    }

    #[test]
    fn backoff_doubles_spreads_and_stops_at_the_cap() {
        let (f, m) = (Duration::from_secs(1), Duration::from_secs(300));
        assert_eq!(backoff(1, f, m, 0.5), Duration::from_secs(1));
        assert_eq!(backoff(2, f, m, 0.5), Duration::from_secs(2));
        assert_eq!(backoff(5, f, m, 0.5), Duration::from_secs(16));
        assert_eq!(backoff(1, f, m, 0.0), Duration::from_millis(750));
        assert_eq!(backoff(1, f, m, 1.0), Duration::from_millis(1250));
        assert_eq!(backoff(40, f, m, 0.9), m);
        assert_eq!(backoff(0, f, m, 0.5), Duration::from_secs(1));
    }
}
