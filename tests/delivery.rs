//! Post-call delivery against a real loopback webhook: retries through
//! failures, timeouts and a webhook that is down, refusals kept, a spool
//! the disk will not take, and a thousand documents delivered through 30 %
//! failures while the delivering aiagc is killed twice.

mod common;
use common::webhook::{Behaviour, Webhook};

use aiagc::delivery::spool::{new_key, Queue, Spool};
use aiagc::delivery::{Delivery, DeliveryConfig, Mode};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

const SECRET: &[u8] = b"praxis-geheimnis";

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aiagc-delivery-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn config(url: &str, spool: &Path) -> DeliveryConfig {
    DeliveryConfig {
        url: url.to_owned(),
        secret: SECRET.to_vec(),
        spool_dir: spool.to_owned(),
        timeout: Duration::from_millis(500),
        concurrency: 4,
        backoff_first: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
    }
}

fn doc(i: usize) -> (String, Vec<u8>) {
    let key = new_key(&format!("1795.{i}"), SystemTime::now());
    let body = serde_json::to_vec(&serde_json::json!({
        "schema": "aiagc.call/1", "key": key, "call": format!("1795.{i}"), "outcome": "booked",
        "slots": {"date": "2026-12-03", "time": "14:30"},
    }))
    .unwrap();
    (key, body)
}

async fn until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_and_timeouts_are_retried_and_refusals_kept() {
    let hook = Webhook::start(
        SECRET,
        Behaviour {
            script: [503, 429, 500].into(),
            ..Behaviour::default()
        },
    )
    .await;
    let dir = temp("retry");
    let (delivery, _task) = Delivery::start(config(&hook.url(), &dir), Mode::Serve).unwrap();
    let (key, body) = doc(1);
    delivery.submit(key.clone(), body.clone());
    until(
        "delivered after three failures",
        Duration::from_secs(5),
        || hook.stored().contains_key(&key),
    )
    .await;
    let posts = hook.posts();
    assert_eq!(
        posts.iter().map(|p| p.status).collect::<Vec<_>>(),
        [503, 429, 500, 200]
    );
    assert!(posts
        .iter()
        .all(|p| p.signature_ok && p.body == body && p.key == key));
    let spool = Spool::open(&dir).unwrap();
    until("spool emptied", Duration::from_secs(2), || {
        spool.pending_keys().unwrap().is_empty()
    })
    .await;

    // A webhook that never answers: timed out, retried, taken once it answers.
    hook.set(Behaviour {
        hang: true,
        ..Behaviour::default()
    });
    let (slow, body) = doc(2);
    delivery.submit(slow.clone(), body);
    until("attempts time out", Duration::from_secs(5), || {
        spool
            .list(Queue::Pending)
            .unwrap()
            .first()
            .is_some_and(|e| e.attempts.last_error.as_deref() == Some("timed out"))
    })
    .await;
    hook.set(Behaviour::default());
    until(
        "delivered after the timeouts",
        Duration::from_secs(5),
        || hook.stored().contains_key(&slow),
    )
    .await;

    // The receiver refuses the document itself: kept in failed/, not retried.
    hook.set(Behaviour {
        script: [422].into(),
        ..Behaviour::default()
    });
    let (bad, body) = doc(3);
    delivery.submit(bad.clone(), body);
    until("refused into failed/", Duration::from_secs(5), || {
        spool
            .list(Queue::Failed)
            .unwrap()
            .iter()
            .any(|e| e.key == bad)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        hook.posts().iter().filter(|p| p.key == bad).count(),
        1,
        "a refused document is not sent again by itself"
    );
    let stats = delivery.stats();
    assert_eq!(stats.delivered.load(Ordering::Relaxed), 2);
    assert_eq!(stats.refused.load(Ordering::Relaxed), 1);
    assert!(stats.retried.load(Ordering::Relaxed) >= 4);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_is_down_gets_everything_once_it_is_up() {
    // A port nobody listens on (yet).
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dir = temp("down");
    let url = format!("http://{addr}/calls");
    let (delivery, _task) = Delivery::start(config(&url, &dir), Mode::Serve).unwrap();
    let docs: Vec<_> = (0..5).map(doc).collect();
    for (k, b) in &docs {
        delivery.submit(k.clone(), b.clone());
    }
    delivery.flush().await;
    let spool = Spool::open(&dir).unwrap();
    assert_eq!(spool.pending_keys().unwrap().len(), 5, "all on disk first");
    until(
        "connection failures recorded",
        Duration::from_secs(5),
        || {
            spool
                .list(Queue::Pending)
                .unwrap()
                .iter()
                .all(|e| e.attempts.count >= 2)
        },
    )
    .await;
    let hook = Webhook::start_on(addr, SECRET, Behaviour::default()).await;
    until("all five delivered", Duration::from_secs(5), || {
        hook.stored().len() == 5
    })
    .await;
    for (k, b) in &docs {
        assert_eq!(hook.stored()[k], *b);
    }
    until("spool emptied", Duration::from_secs(2), || {
        spool.pending_keys().unwrap().is_empty()
    })
    .await;
    assert!(hook.resent().is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_the_disk_refuses_still_delivers_and_spools_when_it_can() {
    let hook = Webhook::start(
        SECRET,
        Behaviour {
            script: [503].into(),
            ..Behaviour::default()
        },
    )
    .await;
    let dir = temp("disk");
    let (delivery, _task) = Delivery::start(config(&hook.url(), &dir), Mode::Serve).unwrap();
    // The disk stops taking files (a file where `pending/` was: every
    // write fails, as on a full disk).
    std::fs::remove_dir_all(dir.join("pending")).unwrap();
    std::fs::write(dir.join("pending"), b"").unwrap();
    let (key, body) = doc(7);
    delivery.submit(key.clone(), body.clone());
    until("held in memory", Duration::from_secs(2), || {
        delivery.stats().unspooled.load(Ordering::Relaxed) == 1
    })
    .await;
    // The first attempt fails (503): the disk is back by the retry, which
    // spools the held document before it is delivered.
    std::fs::remove_file(dir.join("pending")).unwrap();
    std::fs::create_dir(dir.join("pending")).unwrap();
    until("delivered from memory", Duration::from_secs(5), || {
        hook.stored().get(&key) == Some(&body)
    })
    .await;
    // The webhook has it; the sender counts it once the answer is back.
    until("counted as delivered", Duration::from_secs(2), || {
        delivery.stats().delivered.load(Ordering::Relaxed) >= 1
    })
    .await;
    assert_eq!(delivery.stats().delivered.load(Ordering::Relaxed), 1);
    until("nothing left behind", Duration::from_secs(2), || {
        Spool::open(&dir)
            .unwrap()
            .pending_keys()
            .unwrap()
            .is_empty()
    })
    .await;
    let _ = std::fs::remove_dir_all(dir);
}

/// `aiagc spool replay` on `dir`, killed with the test if it fails.
struct Replay(Child);

impl Replay {
    fn start(url: &str, dir: &Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_aiagc"))
            .args(["spool", "replay", "--max-time", "120"])
            .env("AIAGC_DELIVERY_URL", url)
            .env(
                "AIAGC_DELIVERY_SECRET",
                std::str::from_utf8(SECRET).unwrap(),
            )
            .env("AIAGC_SPOOL_DIR", dir)
            .env("AIAGC_LOG", "error")
            .current_dir(dir.parent().unwrap())
            .spawn()
            .unwrap();
        Self(child)
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_documents_through_failures_and_two_kills_arrive_once_each() {
    let hook = Webhook::start(
        SECRET,
        Behaviour {
            fail_ratio: 0.3,
            ..Behaviour::default()
        },
    )
    .await;
    let dir = temp("thousand");
    let spool = Spool::open(&dir).unwrap();
    let docs: Vec<_> = (0..1000).map(doc).collect();
    for (k, b) in &docs {
        spool.put(k, b).unwrap();
    }
    // Killed (SIGKILL, mid-delivery) twice, then left to finish.
    for stop_at in [300, 650] {
        let mut run = Replay::start(&hook.url(), &dir);
        until("deliveries progress", Duration::from_secs(60), || {
            hook.stored().len() >= stop_at
        })
        .await;
        run.0.kill().unwrap();
        run.0.wait().unwrap();
    }
    let mut last = Replay::start(&hook.url(), &dir);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = last.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "replay did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "replay exit {status}");
    let stored = hook.stored();
    assert_eq!(stored.len(), 1000, "every document arrived");
    for (k, b) in &docs {
        assert_eq!(stored.get(k), Some(b), "{k} arrived as spooled");
    }
    let posts = hook.posts();
    assert!(posts.iter().all(|p| p.signature_ok), "every request signed");
    let failed = posts.iter().filter(|p| p.status == 500).count();
    let resent: u32 = hook.resent().values().sum();
    eprintln!(
        "1000 documents: {} requests, {failed} answered 500, {resent} taken again after a kill (deduplicated by key)",
        posts.len()
    );
    // At most the documents in flight at each kill are sent again.
    assert!(resent <= 2 * 4, "{resent} documents sent again");
    assert!(failed > 300, "the webhook failed ~30 % ({failed})");
    assert!(spool.pending_keys().unwrap().is_empty());
    assert!(spool.list(Queue::Failed).unwrap().is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn spool_list_shows_what_waits_and_replay_refuses_a_held_spool() {
    let dir = temp("cli");
    let spool = Spool::open(&dir).unwrap();
    let (k, b) = doc(9);
    spool.put(&k, &b).unwrap();
    spool.attempt_failed(&k, "HTTP 503", 1).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_aiagc"))
        .args(["spool", "list"])
        .env("AIAGC_SPOOL_DIR", &dir)
        .current_dir(dir.parent().unwrap())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&k) && text.contains("HTTP 503"), "{text}");
    assert!(text.contains("1 pending, 0 failed"), "{text}");

    // While another process holds the spool, replay says so and sends nothing.
    let _held = spool.lock().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_aiagc"))
        .args(["spool", "replay"])
        .env("AIAGC_SPOOL_DIR", &dir)
        .env("AIAGC_DELIVERY_URL", "http://127.0.0.1:9/calls")
        .current_dir(dir.parent().unwrap())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("being delivered by a running aiagc"), "{err}");
    assert_eq!(spool.pending_keys().unwrap(), vec![k]);

    // Without a webhook, replay names the setting.
    let out = Command::new(env!("CARGO_BIN_EXE_aiagc"))
        .args(["spool", "replay"])
        .env("AIAGC_SPOOL_DIR", &dir)
        .current_dir(dir.parent().unwrap())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("AIAGC_DELIVERY_URL"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
