//! Prometheus metrics and health over HTTP (loopback by default):
//! `/metrics` (text format), `/healthz` (the process answers), `/readyz`
//! (ARI events connected and models loaded). Values are recorded where the
//! work happens: per call when it ends, per turn when it is answered; the
//! speech pool's counters are read at scrape time.

use super::media::CallSummary;
use super::speech::SpeechStats;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Stage {
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Overlap {
    outcome: String,
    why: String,
}

fn latency_histogram() -> Histogram {
    // 5 ms … ~10 s
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

/// The process's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    active_calls: Gauge,
    calls: Family<Outcome, Counter>,
    turns: Counter,
    barge_ins: Counter,
    overlaps: Family<Overlap, Counter>,
    stage_seconds: Family<Stage, Histogram, fn() -> Histogram>,
    rtp: Family<Kind, Counter>,
    speech: Family<Kind, Gauge>,
    speech_stats: Mutex<Option<Arc<SpeechStats>>>,
    errors: Family<Kind, Counter>,
    ari_events: Family<Kind, Counter>,
    rtp_jitter: Histogram,
    queue_depth: Gauge,
    queue_source: Mutex<Option<Arc<dyn Fn() -> usize + Send + Sync>>>,
    ari_source: Mutex<Option<AriCounters>>,
    deliveries: Family<Kind, Counter>,
    delivery_waiting: Gauge,
    delivery_source: Mutex<Option<Arc<crate::delivery::DeliveryStats>>>,
}

/// Reads the ARI controller's counters at scrape time:
/// (connects, disconnects, malformed events, setups failed, callers
/// turned away because the host was full).
pub type AriCounters = Arc<dyn Fn() -> [u64; 5] + Send + Sync>;

/// Raises `counter` to `value` (counts kept elsewhere, read at scrape).
fn catch_up(counter: &Counter, value: u64) {
    let now = counter.get();
    if value > now {
        counter.inc_by(value - now);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("aiagc");
        let active_calls = Gauge::default();
        let calls = Family::<Outcome, Counter>::default();
        let turns = Counter::default();
        let barge_ins = Counter::default();
        let overlaps = Family::<Overlap, Counter>::default();
        let stage_seconds = Family::<Stage, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let rtp = Family::<Kind, Counter>::default();
        let speech = Family::<Kind, Gauge>::default();
        let errors = Family::<Kind, Counter>::default();
        let ari_events = Family::<Kind, Counter>::default();
        // 1 ms … ~1 s
        let rtp_jitter = Histogram::new(exponential_buckets(0.001, 2.0, 11));
        let queue_depth = Gauge::default();
        let deliveries = Family::<Kind, Counter>::default();
        let delivery_waiting = Gauge::default();
        registry.register(
            "deliveries",
            "Post-call documents: delivered, retried (failed attempts), refused (kept in failed/), unspooled (disk refused; held in memory)",
            deliveries.clone(),
        );
        registry.register(
            "delivery_waiting",
            "Post-call documents not yet delivered",
            delivery_waiting.clone(),
        );
        registry.register(
            "rtp_jitter_seconds",
            "Interarrival jitter (RFC 3550) of each call's inbound RTP at its end",
            rtp_jitter.clone(),
        );
        registry.register(
            "speech_queue_depth",
            "Speech jobs waiting for a worker",
            queue_depth.clone(),
        );
        registry.register(
            "active_calls",
            "Calls with media running",
            active_calls.clone(),
        );
        registry.register("calls", "Calls ended, by outcome", calls.clone());
        registry.register("turns", "Turns answered", turns.clone());
        registry.register("barge_ins", "Caller speech over a reply", barge_ins.clone());
        registry.register(
            "overlaps",
            "Sounds over a reply: resumed or dropped, and why (backchannel, noise, echo, short, speech, long, end, keys, timeout)",
            overlaps.clone(),
        );
        registry.register(
            "turn_stage_seconds",
            "Time per turn stage (speech_end_to_first_packet: the turn latency; stt, dialogue, tts_first_audio, handover_to_first_packet; speech_end_to_heard: over the WebSocket, to when Asterisk began to play the reply; cost_cpu: the workers' CPU time for the turn, cost_stt_audio: audio decoded for it)",
            stage_seconds.clone(),
        );
        registry.register(
            "rtp_packets",
            "RTP by kind (packets received/lost/late/sent, frames concealed/underrun, datagrams rejected by cause)",
            rtp.clone(),
        );
        registry.register(
            "speech_jobs",
            "Speech pool counters (rejected: queue full; stale: turn over; answered; late_dropped, displaced, readings_skipped, started_late: degradations under load; decodes_pause/final/sound, turn_model_runs: the work done)",
            speech.clone(),
        );
        registry.register(
            "errors",
            "Errors by kind (stt, tts, call_setup, ari_malformed_event)",
            errors.clone(),
        );
        registry.register(
            "ari_connection",
            "ARI events WebSocket: connects (first + reconnects), disconnects; callers turned away because the host was full (turned_away_full)",
            ari_events.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            active_calls,
            calls,
            turns,
            barge_ins,
            overlaps,
            stage_seconds,
            rtp,
            speech,
            speech_stats: Mutex::new(None),
            errors,
            ari_events,
            rtp_jitter,
            queue_depth,
            queue_source: Mutex::new(None),
            ari_source: Mutex::new(None),
            deliveries,
            delivery_waiting,
            delivery_source: Mutex::new(None),
        }
    }
}

impl Metrics {
    /// Reads the speech pool's counters at scrape time.
    pub fn watch_speech(&self, stats: Arc<SpeechStats>) {
        if let Ok(mut r) = self.registry.lock() {
            r.register(
                "speech_queue_wait_seconds",
                "Time a speech job waited for a worker",
                stats.queue_wait.clone(),
            );
            r.register(
                "stt_real_time_factor",
                "STT decode time over audio time, per transcription",
                stats.stt_rtf.clone(),
            );
            r.register(
                "stt_rescoring_seconds",
                "Time scoring the readings (n-best) of a transcript",
                stats.rescoring.clone(),
            );
        }
        if let Ok(mut s) = self.speech_stats.lock() {
            *s = Some(stats);
        }
    }

    /// Reads the speech queue's length at scrape time.
    pub fn watch_queue(&self, depth: Arc<dyn Fn() -> usize + Send + Sync>) {
        if let Ok(mut s) = self.queue_source.lock() {
            *s = Some(depth);
        }
    }

    /// Reads the ARI controller's counters at scrape time.
    pub fn watch_ari(&self, counters: AriCounters) {
        if let Ok(mut s) = self.ari_source.lock() {
            *s = Some(counters);
        }
    }

    /// Reads the post-call sender's counters at scrape time.
    pub fn set_delivery_source(&self, stats: Arc<crate::delivery::DeliveryStats>) {
        if let Ok(mut s) = self.delivery_source.lock() {
            *s = Some(stats);
        }
    }

    /// A call's media started.
    pub fn call_started(&self) {
        self.active_calls.inc();
    }

    /// A call ended with `summary`.
    pub fn call_ended(&self, summary: &CallSummary) {
        self.active_calls.dec();
        let outcome = summary.outcome.clone().unwrap_or_else(|| "none".into());
        self.calls.get_or_create(&Outcome { outcome }).inc();
        self.barge_ins.inc_by(summary.barge_ins.len() as u64);
        for o in &summary.overlaps {
            self.overlaps
                .get_or_create(&Overlap {
                    outcome: o.outcome.into(),
                    why: o.why.into(),
                })
                .inc();
        }
        for t in summary.turns.iter().filter(|t| t.input != "start") {
            self.turns.inc();
            let observe = |stage: &str, d: std::time::Duration| {
                self.stage_seconds
                    .get_or_create(&Stage {
                        stage: stage.into(),
                    })
                    .observe(d.as_secs_f64());
            };
            observe("stt", t.stt);
            observe("dialogue", t.dialogue);
            observe("tts_first_audio", t.tts_first_audio);
            if let Some(d) = t.to_first_packet {
                observe("handover_to_first_packet", d);
            }
            if let Some(d) = t.from_speech_end {
                observe("speech_end_to_first_packet", d);
            }
            if let Some(d) = t.heard_after {
                observe("speech_end_to_heard", d);
            }
            // What the turn cost the workers (CPU time, not a wait).
            let ms = |v: f64| std::time::Duration::from_secs_f64(v.max(0.0) / 1000.0);
            observe("cost_cpu", ms(t.cost.cpu_ms()));
            observe("cost_stt_audio", ms(t.cost.audio_ms));
        }
        let r = &summary.rtp;
        self.rtp_jitter.observe(r.jitter.as_secs_f64());
        for (kind, n) in [
            ("received", r.received),
            ("lost", r.lost),
            ("late", r.late),
            ("concealed", r.concealed_frames),
            ("sent", r.sent),
            ("underrun", r.underruns),
            ("rejected_source", r.source_violations),
            ("rejected_malformed", r.malformed),
            ("rejected_payload_type", r.payload_type_violations),
            ("rejected_foreign_ssrc", r.foreign_ssrc),
        ] {
            self.rtp
                .get_or_create(&Kind { kind: kind.into() })
                .inc_by(n);
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        if let Some(s) = self.speech_stats.lock().ok().and_then(|s| s.clone()) {
            for (kind, v) in [
                ("rejected", s.rejected.load(Ordering::Relaxed)),
                ("stale", s.stale.load(Ordering::Relaxed)),
                ("answered", s.answered.load(Ordering::Relaxed)),
                ("grammar_held", s.grammar_held.load(Ordering::Relaxed)),
                (
                    "grammar_fell_back",
                    s.grammar_fell_back.load(Ordering::Relaxed),
                ),
                ("late_dropped", s.late.load(Ordering::Relaxed)),
                ("displaced", s.displaced.load(Ordering::Relaxed)),
                (
                    "readings_skipped",
                    s.readings_skipped.load(Ordering::Relaxed),
                ),
                ("started_late", s.started_late.load(Ordering::Relaxed)),
                ("decodes_pause", s.decodes[0].load(Ordering::Relaxed)),
                ("decodes_final", s.decodes[1].load(Ordering::Relaxed)),
                ("decodes_sound", s.decodes[2].load(Ordering::Relaxed)),
                ("turn_model_runs", s.turn_model_runs.load(Ordering::Relaxed)),
            ] {
                self.speech
                    .get_or_create(&Kind { kind: kind.into() })
                    .set(v as i64);
            }
            for (kind, v) in [
                ("stt", s.stt_errors.load(Ordering::Relaxed)),
                ("tts", s.tts_errors.load(Ordering::Relaxed)),
            ] {
                catch_up(&self.errors.get_or_create(&Kind { kind: kind.into() }), v);
            }
        }
        if let Some(depth) = self.queue_source.lock().ok().and_then(|s| s.clone()) {
            self.queue_depth.set(depth() as i64);
        }
        if let Some(ari) = self.ari_source.lock().ok().and_then(|s| s.clone()) {
            let [connects, disconnects, malformed, setups_failed, turned_away] = ari();
            for (family, kind, v) in [
                (&self.ari_events, "connects", connects),
                (&self.ari_events, "disconnects", disconnects),
                (&self.errors, "ari_malformed_event", malformed),
                (&self.errors, "call_setup", setups_failed),
                (&self.ari_events, "turned_away_full", turned_away),
            ] {
                catch_up(&family.get_or_create(&Kind { kind: kind.into() }), v);
            }
        }
        if let Some(d) = self.delivery_source.lock().ok().and_then(|s| s.clone()) {
            for (kind, v) in [
                ("delivered", d.delivered.load(Ordering::Relaxed)),
                ("retried", d.retried.load(Ordering::Relaxed)),
                ("refused", d.refused.load(Ordering::Relaxed)),
                ("unspooled", d.unspooled.load(Ordering::Relaxed)),
            ] {
                catch_up(
                    &self.deliveries.get_or_create(&Kind { kind: kind.into() }),
                    v,
                );
            }
            self.delivery_waiting
                .set(d.waiting.load(Ordering::Relaxed) as i64);
        }
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            if prometheus_client::encoding::text::encode(&mut out, &r).is_err() {
                out.clear();
            }
        }
        out
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr`; returns the bound
/// address. `ready` says whether the app takes a new call now, and if not
/// why (not connected, draining, full).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<dyn Fn() -> Result<(), String> + Send + Sync>,
) -> std::io::Result<SocketAddr> {
    use axum::http::StatusCode;
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.render(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    match ready() {
                        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
                        Err(why) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {why}\n"),
                        ),
                    }
                }
            }),
        );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics server stopped");
        }
    });
    Ok(bound)
}
