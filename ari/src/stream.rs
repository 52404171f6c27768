//! The events WebSocket (`/ari/events?app=…&subscribeAll=false`) with
//! reconnect: exponential backoff with jitter (100 ms doubling, capped at
//! 5 s, reset after a successful connect). Each (re)connect is reported so
//! the controller can reconcile; malformed frames are reported and skipped.

use crate::client::AriConfig;
use crate::event::{decode, Event, MAX_EVENT_BYTES};
use base64::Engine as _;
use futures_util::StreamExt;
use rand::Rng;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// What the stream reports.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// Connected (again): the app is registered; reconcile now.
    Connected,
    /// An event.
    Event(Box<Event>),
    /// A frame that is not a valid event (already logged).
    Malformed(String),
    /// The connection dropped or could not be made.
    Disconnected(String),
}

/// Backoff before reconnect attempt `attempt` (0-based), with ±20 % jitter.
pub fn backoff(attempt: u32, rng: &mut impl Rng) -> Duration {
    let base = Duration::from_millis(100)
        .saturating_mul(1 << attempt.min(6))
        .min(Duration::from_secs(5));
    base.mul_f64(rng.random_range(0.8..1.2))
}

async fn connect(
    config: &AriConfig,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    String,
> {
    let mut request = config
        .events_url()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", config.username, config.password));
    let value = format!("Basic {token}")
        .parse()
        .map_err(|_| "credentials are not a valid header".to_owned())?;
    request.headers_mut().insert("authorization", value);
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(MAX_EVENT_BYTES))
        .max_frame_size(Some(MAX_EVENT_BYTES));
    let connector = config.ws_connector().map_err(|e| e.to_string())?;
    let connecting = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(ws_config),
        false,
        connector,
    );
    match tokio::time::timeout(config.timeout, connecting).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timeout".into()),
    }
}

/// Runs the event stream until `shutdown` turns true, sending what happens
/// to `out`. Never gives up on its own: Asterisk may come back.
pub async fn run(
    config: AriConfig,
    out: mpsc::Sender<StreamEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut rng = rand::rngs::SmallRng::from_os_rng();
    let mut attempt = 0u32;
    while !*shutdown.borrow() {
        match connect(&config).await {
            Ok(mut ws) => {
                attempt = 0;
                tracing::info!(app = %config.app, "ARI events connected");
                if out.send(StreamEvent::Connected).await.is_err() {
                    return;
                }
                let reason = loop {
                    tokio::select! {
                        _ = shutdown.changed() => {
                            let _ = ws.close(None).await;
                            return;
                        }
                        frame = ws.next() => match frame {
                            Some(Ok(Message::Text(text))) => {
                                let item = match decode(&text) {
                                    Ok((event, _)) => StreamEvent::Event(Box::new(event)),
                                    Err(e) => {
                                        tracing::warn!(error = %e, "ARI event skipped");
                                        StreamEvent::Malformed(e.to_string())
                                    }
                                };
                                if out.send(item).await.is_err() {
                                    return;
                                }
                            }
                            Some(Ok(Message::Close(_))) | None => break "closed by Asterisk".to_owned(),
                            Some(Ok(_)) => {}
                            Some(Err(e)) => break e.to_string(),
                        }
                    }
                };
                tracing::warn!(app = %config.app, %reason, "ARI events disconnected");
                if out.send(StreamEvent::Disconnected(reason)).await.is_err() {
                    return;
                }
            }
            Err(reason) => {
                tracing::warn!(app = %config.app, %reason, attempt, "ARI events connect failed");
                if out.send(StreamEvent::Disconnected(reason)).await.is_err() {
                    return;
                }
            }
        }
        let wait = backoff(attempt, &mut rng);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

use rand::SeedableRng;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps_at_five_seconds() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let first = backoff(0, &mut rng);
        assert!(first >= Duration::from_millis(80) && first <= Duration::from_millis(120));
        let third = backoff(2, &mut rng);
        assert!(third >= Duration::from_millis(320) && third <= Duration::from_millis(480));
        for a in [10, 20, u32::MAX] {
            let d = backoff(a, &mut rng);
            assert!(
                d <= Duration::from_secs(6) && d >= Duration::from_secs(4),
                "{d:?}"
            );
        }
    }
}
