//! # aiagc-models — speech backends on local models
//!
//! Model discovery and integrity ([`manifest`]) and ONNX Runtime loading
//! ([`onnx`]). The speech backends (whisper STT through `whisper-rs`, Silero
//! VAD and TTS voices through `ort`) come with their own issue; the
//! `whisper-rs` dependency is in place for them.

pub mod manifest;
pub mod onnx;

/// The whisper binding in use (re-exported so the binary and tests agree
/// on one version).
pub use whisper_rs;
