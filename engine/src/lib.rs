//! # aiagc-engine — the sans-IO media engine of one call
//!
//! Everything between a UDP datagram from Asterisk's externalMedia channel
//! and 16 kHz PCM for the speech models, and back. This crate opens no
//! socket, reads no clock and spawns no thread: time is an argument, so
//! every network condition can be replayed exactly in tests ([`impair`]).
//!
//! ## The contract
//!
//! [`Call`] takes in datagrams ([`Call::receive`]), the passing of time
//! ([`Call::handle_timeout`]) and reply audio ([`Call::speak`],
//! [`Call::stop_speaking`], [`Call::pause_speaking`],
//! [`Call::resume_speaking`]). It gives out RTP packets to send
//! ([`Call::poll_transmit`]), events ([`Call::poll_event`]: speech started
//! and ended with the utterance audio, barge-in, playout finished, rejected
//! input) and the instant it next needs attention ([`Call::poll_timeout`]).
//!
//! ## The driving loop
//!
//! 1. Wait for a datagram or for `poll_timeout()`, whichever comes first.
//! 2. Feed it: `receive(from, datagram, now)`, or `handle_timeout(now)`.
//! 3. Drain `poll_transmit(now)` until `None`, sending each packet.
//! 4. Drain `poll_event()` until `None`, acting on each event.
//! 5. Go to 1.
//!
//! The one invariant: after every input, drain transmits and events before
//! waiting again. Inbound frames are played on a 20 ms grid that starts at
//! the first packet plus the jitter buffer's initial delay; outbound packets
//! on a 20 ms grid from the call's creation. Both grids are kept by
//! arithmetic on the `now` values given (`t0 + n·20 ms`), never by sleeping.
//!
//! ## The media graph
//!
//! inbound: [`packet`] parse → source/payload-type checks → [`jitter`]
//! buffer → [`codec`] decode (or concealment) → [`resample`] to 16 kHz →
//! [`vad`] → [`endpoint`] → events.
//! outbound: `speak` → [`resample`] to the codec rate → [`playout`] queue →
//! one frame per tick → [`codec`] encode → [`packet`] write.
//!
//! ## What it does not do
//!
//! No sockets, no timers, no threads, no models (a neural VAD plugs in
//! through the [`vad::Vad`] trait), no RTCP, no SRTP, no DTMF over RTP
//! (Asterisk reports DTMF as ARI events), no acoustic echo cancellation
//! (barge-in has a guard instead: see [`endpoint`]).

pub mod amd;
pub mod call;
pub mod codec;
pub mod echo;
pub mod endpoint;
pub mod handoff;
pub mod impair;
pub mod jitter;
pub mod packet;
pub mod playout;
pub mod resample;
pub mod stats;
pub mod vad;

pub use call::{
    BargeInPolicy, Call, CallConfig, CallError, CallEvent, Rejection, SourcePolicy, Transmit,
    Transport, FRAME,
};
pub use codec::Codec;
pub use echo::{EchoConfig, EchoVerdict};
pub use endpoint::{EndpointConfig, MediaPosition, Pause, Utterance};
pub use playout::ResumeFrom;
pub use stats::CallStats;
