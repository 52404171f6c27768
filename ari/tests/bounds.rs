//! Buffers fed from the network are bounded: an ARI REST body over
//! `MAX_BODY` is an error, not a 5 MiB allocation kept; an events frame
//! over `MAX_EVENT_BYTES` drops the connection, which reconnects.

use aiagc_ari::client::{AriClient, AriError, MAX_BODY};
use aiagc_ari::event::MAX_EVENT_BYTES;
use aiagc_ari::sim::{Fault, SimConfig, Simulator};
use aiagc_ari::stream::{self, StreamEvent};
use std::time::Duration;

#[tokio::test]
async fn a_rest_body_over_the_bound_is_an_error() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let client = AriClient::new(sim.client_config("aiagc")).unwrap();
    let huge = format!(
        "{{\"build\":{{}},\"pad\":\"{}\"}}",
        "x".repeat(MAX_BODY + 10)
    );
    sim.inject(Fault::Fail {
        method: "GET".into(),
        path_contains: "/asterisk/info".into(),
        status: 200,
        body: huge,
        times: 1,
    });
    match client.info().await {
        Err(AriError::Decode(m)) => assert!(m.contains("body over"), "{m}"),
        other => panic!("expected a bounded-body error, got {other:?}"),
    }
    // The next request is served normally.
    assert!(client.info().await.is_ok());
}

async fn next(rx: &mut tokio::sync::mpsc::Receiver<StreamEvent>) -> StreamEvent {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("stream event within 5 s")
        .expect("stream open")
}

#[tokio::test]
async fn an_events_frame_over_the_bound_drops_the_connection_which_comes_back() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(stream::run(sim.client_config("aiagc"), tx, stop_rx));
    assert!(matches!(next(&mut rx).await, StreamEvent::Connected));
    sim.send_raw_frame(&"a".repeat(MAX_EVENT_BYTES + 1));
    match next(&mut rx).await {
        StreamEvent::Disconnected(why) => assert!(!why.is_empty()),
        other => panic!("expected a disconnect, got {other:?}"),
    }
    assert!(matches!(next(&mut rx).await, StreamEvent::Connected));
    assert_eq!(sim.connections(), 2);
}
