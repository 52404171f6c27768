//! # aiagc-ari — Asterisk REST Interface
//!
//! The ARI resource models the product uses ([`model`]) and the typed
//! event stream decoding ([`event`]). The REST client, the events
//! WebSocket with reconnect, the Stasis call controller and the Asterisk
//! simulator build on these. This crate never touches audio samples.

pub mod client;
pub mod controller;
pub mod event;
pub mod media_ws;
pub mod model;
pub mod ports;
pub mod schema;
pub mod sim;
pub mod stream;
