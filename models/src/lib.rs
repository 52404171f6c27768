//! # aiagc-models — speech backends on local models
//!
//! Model discovery and integrity ([`manifest`]) and ONNX Runtime loading
//! ([`onnx`]). The speech backends (whisper STT through `whisper-rs`, Silero
//! VAD and TTS voices through `ort`) come with their own issue; the
//! `whisper-rs` dependency is in place for them.

pub mod audio;
pub mod convert;
pub mod fold;
pub mod grammar;
pub mod http;
pub mod level;
pub mod manifest;
pub mod mel;
pub mod nbest;
pub mod onnx;
pub mod silero;
pub mod smart_turn;
pub mod stt;
pub mod stt_remote;
pub mod tts;

/// File name of the converted whisper base model (f16, the reference
/// layout) in the models folder.
pub const WHISPER_GGML: &str = "ggml-base.bin";

/// The model aiagc transcribes with: whisper base with its weight matrices
/// in q8_0, as accurate as f16 on the labelled German fixtures and 22 %
/// faster (`aiagc eval --model …`, BENCHMARKS.md "German understanding").
pub const WHISPER_DEFAULT: &str = "ggml-base-q8_0.bin";

/// The whisper binding in use (re-exported so the binary and tests agree
/// on one version).
pub use whisper_rs;
