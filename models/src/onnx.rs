//! ONNX Runtime, loaded at run time from the shared library the setup
//! fetched (`ort` with `load-dynamic`): one environment per process.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Why ONNX Runtime or a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The shared library is missing or not loadable.
    #[error("ONNX Runtime library {path}: {message}")]
    Library {
        /// Library path tried.
        path: PathBuf,
        /// Loader message.
        message: String,
    },
    /// A model failed to load.
    #[error("model {path}: {message}")]
    Model {
        /// Model path.
        path: PathBuf,
        /// ONNX Runtime's message.
        message: String,
    },
}

static ENVIRONMENT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// The process's ONNX Runtime environment, loading `library` on first use.
pub fn environment(library: &Path) -> Result<&'static ort::environment::Environment, OnnxError> {
    let env = ENVIRONMENT.get_or_init(|| {
        ort::init_from(library)
            .map_err(|e| e.to_string())?
            .with_name("aiagc")
            .build()
            .map_err(|e| e.to_string())
    });
    env.as_ref().map_err(|message| OnnxError::Library {
        path: library.to_owned(),
        message: message.clone(),
    })
}

/// A session for `model` with `threads` intra-op threads.
pub fn session(
    library: &Path,
    model: &Path,
    threads: usize,
) -> Result<ort::session::Session, OnnxError> {
    let env = environment(library)?;
    let err = |e: &dyn std::fmt::Display| OnnxError::Model {
        path: model.to_owned(),
        message: e.to_string(),
    };
    // All graph optimizations, as onnxruntime's Python default: quantized
    // models (Smart Turn) give measurably different outputs at lower levels.
    let mut builder = ort::session::Session::builder(env)
        .map_err(|e| err(&e))?
        .with_optimization_level(ort::session::builder::GraphOptimizationLevel::Level3)
        .map_err(|e| err(&e))?
        .with_intra_threads(threads)
        .map_err(|e| err(&e))?;
    builder.commit_from_file(model).map_err(|e| err(&e))
}

/// Where the setup puts the ONNX Runtime library (a manifest entry).
pub const LIBRARY: &str = "onnxruntime/libonnxruntime.so.1.32.0";

/// The ONNX Runtime library in the models folder `dir`.
pub fn library(dir: &Path) -> PathBuf {
    dir.join(LIBRARY)
}

/// Name and inputs/outputs of a loaded model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Input names.
    pub inputs: Vec<String>,
    /// Output names.
    pub outputs: Vec<String>,
}

/// Opens `model` in a session (one intra-op thread) and lists its ports:
/// proof that the file and the runtime work together.
pub fn probe(library: &Path, model: &Path) -> Result<ModelInfo, OnnxError> {
    let session = self::session(library, model, 1)?;
    Ok(ModelInfo {
        inputs: session
            .inputs()
            .iter()
            .map(|o| o.name().to_owned())
            .collect(),
        outputs: session
            .outputs()
            .iter()
            .map(|o| o.name().to_owned())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::default_dir;

    /// Silero VAD and Smart Turn load through the fetched ONNX Runtime and
    /// show the ports DEVELOPERS.md documents.
    #[test]
    fn fetched_models_load_in_onnx_runtime() {
        let dir = default_dir();
        let lib = library(&dir);
        let silero = probe(&lib, &dir.join("silero_vad.onnx")).unwrap();
        assert_eq!(silero.inputs, vec!["input", "state", "sr"]);
        assert_eq!(silero.outputs, vec!["output", "stateN"]);
        let turn = probe(&lib, &dir.join("smart-turn-v3.2-cpu.onnx")).unwrap();
        assert_eq!(turn.inputs, vec!["input_features"]);
        assert_eq!(turn.outputs, vec!["logits"]);
        let bad = probe(&lib, &dir.join("whisper-base-ct2/config.json"));
        assert!(matches!(bad, Err(OnnxError::Model { .. })));
    }

    #[test]
    fn missing_library_is_a_clear_error() {
        // Only meaningful before the environment exists in this process:
        // the library path is checked by the loader.
        let r = ort::init_from("/nonexistent/libonnxruntime.so");
        assert!(r.is_err());
    }
}
