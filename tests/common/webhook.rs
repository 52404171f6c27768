//! A loopback webhook (real HTTP, axum) that records what it is sent,
//! verifies signatures, stores each idempotency key once, and fails,
//! delays or hangs on request. It stops when dropped.

use aiagc::delivery::sign;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the webhook answers.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Share of requests answered 500 before anything is stored.
    pub fail_ratio: f64,
    /// Statuses for the next requests, in order (before `fail_ratio`).
    pub script: VecDeque<u16>,
    /// Wait before answering.
    pub delay: Duration,
    /// Never answer (the client must time out).
    pub hang: bool,
    /// Take requests without a signature (a tool endpoint).
    pub unsigned: bool,
    /// Body of a 200 answer (default: none).
    pub answer: Option<String>,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Post {
    pub key: String,
    pub body: Vec<u8>,
    pub signature_ok: bool,
    pub status: u16,
}

#[derive(Default)]
struct State {
    behaviour: Behaviour,
    posts: Vec<Post>,
    stored: HashMap<String, Vec<u8>>,
    /// Keys answered 2xx more than once (sent again after a crash).
    resent: HashMap<String, u32>,
    rng: u64,
}

pub struct Webhook {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// xorshift: a fixed sequence of failures for a seed.
fn next(rng: &mut u64) -> f64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    (*rng >> 11) as f64 / (1u64 << 53) as f64
}

impl Webhook {
    /// Listens on a free loopback port (or `addr`), verifying with `secret`.
    pub async fn start(secret: &[u8], behaviour: Behaviour) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), secret, behaviour).await
    }

    pub async fn start_on(addr: SocketAddr, secret: &[u8], behaviour: Behaviour) -> Self {
        let state = Arc::new(Mutex::new(State {
            behaviour,
            rng: 0x9E37_79B9_7F4A_7C15,
            ..State::default()
        }));
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (s, secret) = (state.clone(), secret.to_vec());
        let app = axum::Router::new().route(
            "/calls",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (s, secret) = (s.clone(), secret.clone());
                async move {
                    let status = answer(&s, &secret, &headers, &body).await;
                    let text = s
                        .lock()
                        .unwrap()
                        .behaviour
                        .answer
                        .clone()
                        .unwrap_or_default();
                    let text = if status == StatusCode::OK {
                        text
                    } else {
                        String::new()
                    };
                    (status, [("content-type", "application/json")], text)
                }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/calls", self.addr)
    }

    pub fn set(&self, behaviour: Behaviour) {
        self.state.lock().unwrap().behaviour = behaviour;
    }

    pub fn posts(&self) -> Vec<Post> {
        self.state.lock().unwrap().posts.clone()
    }

    /// Documents stored, by key.
    pub fn stored(&self) -> HashMap<String, Vec<u8>> {
        self.state.lock().unwrap().stored.clone()
    }

    /// Keys the webhook took again (2xx) after it had stored them.
    pub fn resent(&self) -> HashMap<String, u32> {
        self.state.lock().unwrap().resent.clone()
    }
}

async fn answer(
    state: &Mutex<State>,
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
) -> StatusCode {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signature_ok = headers
        .get(sign::HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|h| sign::verify(secret, h, body, now, 300).is_ok());
    let (delay, hang, unsigned) = {
        let s = state.lock().unwrap();
        (s.behaviour.delay, s.behaviour.hang, s.behaviour.unsigned)
    };
    if hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    tokio::time::sleep(delay).await;
    let mut s = state.lock().unwrap();
    let ratio = s.behaviour.fail_ratio;
    let scripted = s.behaviour.script.pop_front();
    let fails = scripted.is_none() && next(&mut s.rng) < ratio;
    let status = if let Some(code) = scripted {
        code
    } else if fails {
        500
    } else if !(signature_ok || unsigned) || key.is_empty() {
        401
    } else {
        200
    };
    if status == 200 {
        if s.stored.contains_key(&key) {
            *s.resent.entry(key.clone()).or_default() += 1;
        } else {
            s.stored.insert(key.clone(), body.to_vec());
        }
    }
    s.posts.push(Post {
        key,
        body: body.to_vec(),
        signature_ok,
        status,
    });
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
