//! The media side of calls: one tokio task per call drives its engine
//! `Call` (socket in, 20 ms grid by the call's own deadlines, packets out)
//! and exchanges utterances and replies with the speech pool.

use super::speech::{Job, ReplyAudio, Submitter};
use aiagc_ari::controller::MediaHost;
use aiagc_ari::ports::PortRange;
use aiagc_engine::{Call, CallConfig, CallEvent, Codec};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;

/// Media of all calls of this process.
pub struct EngineMedia {
    ports: PortRange,
    speech: Submitter,
    pending: Mutex<HashMap<String, std::net::UdpSocket>>,
    running: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    seed: AtomicU64,
    barge_ins: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
}

impl EngineMedia {
    /// Media host binding call sockets in `ports`, sending utterances to `speech`.
    pub fn new(ports: PortRange, speech: Submitter) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Self {
            ports,
            speech,
            pending: Mutex::default(),
            running: Mutex::default(),
            seed: AtomicU64::new(seed),
            barge_ins: Arc::default(),
        }
    }

    /// When each barge-in of `call` was detected.
    pub fn barge_ins(&self, call: &str) -> Vec<Instant> {
        self.barge_ins
            .lock()
            .ok()
            .and_then(|m| m.get(call).cloned())
            .unwrap_or_default()
    }

    /// Calls with a socket (bound or running).
    pub fn sockets(&self) -> usize {
        self.pending.lock().map(|m| m.len()).unwrap_or(0)
            + self.running.lock().map(|m| m.len()).unwrap_or(0)
    }
}

impl MediaHost for EngineMedia {
    fn open(&self, call: &str) -> Result<SocketAddr, String> {
        let socket = self.ports.bind().map_err(|e| e.to_string())?;
        let addr = socket.local_addr().map_err(|e| e.to_string())?;
        self.pending
            .lock()
            .map_err(|_| "poisoned".to_owned())?
            .insert(call.to_owned(), socket);
        Ok(addr)
    }

    fn start(&self, call: &str, peer: SocketAddr, codec: Codec) {
        let Some(std_socket) = self.pending.lock().ok().and_then(|mut m| m.remove(call)) else {
            return;
        };
        let socket = match tokio::net::UdpSocket::from_std(std_socket) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(call = %call, error = %e, "RTP socket unusable");
                return;
            }
        };
        let mut config = CallConfig::new(
            codec,
            self.seed
                .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed),
        );
        config.peer = Some(peer);
        let task = tokio::spawn(drive(
            call.to_owned(),
            socket,
            config,
            self.speech.clone(),
            self.barge_ins.clone(),
        ));
        if let Ok(mut running) = self.running.lock() {
            running.insert(call.to_owned(), task);
        }
    }

    fn close(&self, call: &str) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(call);
        }
        if let Some(task) = self.running.lock().ok().and_then(|mut m| m.remove(call)) {
            task.abort();
        }
        if let Ok(mut m) = self.barge_ins.lock() {
            m.remove(call);
        }
    }
}

/// The per-call loop (see `aiagc_engine`'s driving recipe).
async fn drive(
    id: String,
    socket: tokio::net::UdpSocket,
    config: CallConfig,
    speech: Submitter,
    barge_ins: Arc<Mutex<HashMap<String, Vec<Instant>>>>,
) {
    let mut call = match Call::new(config, Instant::now()) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(call = %id, error = %e, "media setup failed");
            return;
        }
    };
    let current = Arc::new(AtomicU64::new(0));
    let (reply_tx, mut replies) = mpsc::unbounded_channel::<ReplyAudio>();
    let mut buf = vec![0u8; aiagc_engine::handoff::MAX_DATAGRAM];
    loop {
        let deadline = tokio::time::Instant::from_std(call.poll_timeout());
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, from)) => call.receive(from, &buf[..n], Instant::now()),
                Err(e) => tracing::debug!(call = %id, error = %e, "RTP receive error"),
            },
            _ = tokio::time::sleep_until(deadline) => call.handle_timeout(Instant::now()),
            Some(reply) = replies.recv() => {
                if reply.turn == current.load(Ordering::SeqCst) {
                    if let Err(e) = call.speak(&reply.samples, reply.sample_rate) {
                        tracing::warn!(call = %id, error = %e, "reply not queued");
                    }
                }
            }
        }
        let now = Instant::now();
        while let Some(t) = call.poll_transmit(now) {
            if let Some(dest) = t.destination {
                let _ = socket.try_send_to(t.data, dest);
            }
        }
        while let Some(event) = call.poll_event() {
            match event {
                CallEvent::SpeechEnded(u) => {
                    let turn = current.fetch_add(1, Ordering::SeqCst) + 1;
                    speech.submit(Job {
                        call: id.clone(),
                        turn,
                        current: current.clone(),
                        audio: u.samples,
                        handed_over: now,
                        replies: reply_tx.clone(),
                    });
                }
                CallEvent::BargeIn { .. } => {
                    // Pending work of the interrupted turn is stale now.
                    current.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut m) = barge_ins.lock() {
                        m.entry(id.clone()).or_default().push(now);
                    }
                    tracing::info!(call = %id, "barge-in");
                }
                CallEvent::InputRejected { kind, count } => {
                    tracing::warn!(call = %id, ?kind, count, "RTP input rejected")
                }
                _ => {}
            }
        }
    }
}
