//! What the whisper tests share (also included by the dialogue crate's
//! tests of answers heard by whisper).

use aiagc_models::manifest::default_dir;
use aiagc_models::stt::WhisperModel;
use std::path::PathBuf;
use std::sync::OnceLock;

/// whisper.cpp uses both cores and its threads spin-wait: tests that run it
/// take this lock so `cargo test`'s parallel threads do not oversubscribe.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/generated")
}

pub fn model() -> &'static WhisperModel {
    static MODEL: OnceLock<WhisperModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        WhisperModel::load(&default_dir().join(aiagc_models::WHISPER_GGML))
            .expect("converted model (run scripts/setup.sh)")
    })
}
