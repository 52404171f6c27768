//! The Stasis app assembled: speech pool, media host, ARI controller and
//! the events stream, as `aiagc serve`, the demo and the tests run it.

use super::media::{CallSummary, DialogueFactory, EngineMedia, MediaConfig};
use super::metrics::Metrics;
use super::speech::SpeechPool;
use aiagc_ari::client::{AriClient, AriConfig, AriError};
use aiagc_ari::controller::{Controller, ControllerConfig};
use aiagc_ari::ports::PortRange;
use aiagc_ari::stream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A running app.
pub struct App {
    /// The ARI controller.
    pub controller: Controller<EngineMedia>,
    /// The media host.
    pub media: Arc<EngineMedia>,
    pool: Option<SpeechPool>,
    stop: watch::Sender<bool>,
}

impl App {
    /// Starts the app for `ari`: media on `ports`, speech on `pool`, a
    /// dialogue per call from `dialogues`.
    pub fn start(
        ari: AriConfig,
        ports: PortRange,
        media: MediaConfig,
        controller: ControllerConfig,
        pool: SpeechPool,
        dialogues: DialogueFactory,
        summaries: Option<crossbeam_channel::Sender<CallSummary>>,
    ) -> Result<Self, AriError> {
        Self::start_with_metrics(
            ari, ports, media, controller, pool, dialogues, summaries, None,
        )
    }

    /// [`App::start`], recording into `metrics`.
    #[allow(clippy::too_many_arguments)]
    pub fn start_with_metrics(
        ari: AriConfig,
        ports: PortRange,
        media: MediaConfig,
        controller: ControllerConfig,
        pool: SpeechPool,
        dialogues: DialogueFactory,
        summaries: Option<crossbeam_channel::Sender<CallSummary>>,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, AriError> {
        let client = AriClient::new(ari.clone())?;
        let mut engine = EngineMedia::new(
            ports,
            media,
            pool.submitter(),
            dialogues,
            Some(client.clone()),
            summaries,
        );
        if let Some(m) = &metrics {
            m.watch_speech(pool.stats.clone());
            let submitter = pool.submitter();
            m.watch_queue(Arc::new(move || submitter.queued()));
            engine = engine.with_metrics(m.clone());
        }
        let media = Arc::new(engine);
        let controller = Controller::new(client, media.clone(), controller);
        if let Some(m) = &metrics {
            let c = controller.clone();
            m.watch_ari(Arc::new(move || {
                let s = c.stats();
                let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                [
                    get(&s.connects),
                    get(&s.disconnects),
                    get(&s.malformed_events),
                    get(&s.setups_failed),
                    get(&s.turned_away),
                ]
            }));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(stream::run(ari, tx, stop_rx));
        tokio::spawn(controller.clone().run(rx));
        Ok(Self {
            controller,
            media,
            pool: Some(pool),
            stop,
        })
    }

    /// Stops taking calls and waits up to `grace` for those in progress to
    /// end; then tears down what is left, stops the events stream and the
    /// workers. Returns the calls that had to be cut.
    pub async fn drain(mut self, grace: Duration) -> usize {
        self.controller.drain();
        let deadline = Instant::now() + grace;
        while self.controller.active_calls() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let cut = self.controller.active_calls();
        if cut > 0 {
            tracing::warn!(
                calls = cut,
                "drain grace over: hanging up the remaining calls"
            );
            self.controller.shutdown().await;
        }
        let t = Instant::now();
        while (self.controller.tasks() > 0 || self.media.sockets() > 0)
            && t.elapsed() < Duration::from_secs(5)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.stop.send(true);
        if let Some(pool) = self.pool.take() {
            let _ = tokio::task::spawn_blocking(move || pool.shutdown()).await;
        }
        cut
    }
}
