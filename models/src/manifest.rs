//! The model files aiagc uses: which exist, where they live, whether they
//! are intact. The list is `models/manifest.toml`, shared with the setup's
//! fetcher (`scripts/fetch_models.py`), embedded here at build time.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The manifest as shipped with this build.
pub const EMBEDDED: &str = include_str!("../manifest.toml");

/// One registry package model files come from.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Package {
    /// PyPI name.
    pub name: String,
    /// Pinned version.
    pub version: String,
}

/// One model file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ModelFile {
    /// Path under the models folder.
    pub path: String,
    /// What it is for (`vad`, `onnxruntime`, `whisper-ct2`, `piper-voice`, `end-of-turn`).
    pub role: String,
    /// Package it comes from.
    pub package: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex sha256.
    pub sha256: String,
}

/// The parsed manifest.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Source packages.
    #[serde(rename = "package")]
    pub packages: Vec<Package>,
    /// Files.
    #[serde(rename = "file")]
    pub files: Vec<ModelFile>,
}

/// Why the manifest or a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The TOML does not parse or lacks fields.
    #[error("model manifest: {0}")]
    Parse(#[from] toml::de::Error),
}

/// State of one file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// Present with the right size and hash.
    Ok,
    /// Not there.
    Missing,
    /// Present but with another size.
    WrongSize(u64),
    /// Right size, other content.
    WrongHash(String),
    /// Could not be read.
    Unreadable(String),
}

impl Manifest {
    /// Parses a manifest.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        Ok(toml::from_str(text)?)
    }

    /// The manifest embedded in this build.
    pub fn embedded() -> Result<Self, ManifestError> {
        Self::parse(EMBEDDED)
    }

    /// The file with `role` whose path ends with `suffix`.
    pub fn find(&self, role: &str, suffix: &str) -> Option<&ModelFile> {
        self.files
            .iter()
            .find(|f| f.role == role && f.path.ends_with(suffix))
    }
}

/// The models folder: `$AIAGC_MODELS`, else `$AIAGC_CACHE/models`, else
/// `~/.cache/aiagc/models` (the same rule as `scripts/setup.sh`).
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("AIAGC_MODELS") {
        return PathBuf::from(dir);
    }
    if let Some(cache) = std::env::var_os("AIAGC_CACHE") {
        return PathBuf::from(cache).join("models");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/aiagc/models")
}

/// Checks one file's presence, size and (when `hash` is set) sha256.
pub fn check(dir: &Path, file: &ModelFile, hash: bool) -> FileState {
    let path = dir.join(&file.path);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return FileState::Missing,
        Err(e) => return FileState::Unreadable(e.to_string()),
    };
    if meta.len() != file.size {
        return FileState::WrongSize(meta.len());
    }
    if !hash {
        return FileState::Ok;
    }
    match sha256_file(&path) {
        Ok(h) if h == file.sha256 => FileState::Ok,
        Ok(h) => FileState::WrongHash(h),
        Err(e) => FileState::Unreadable(e.to_string()),
    }
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_manifest_lists_every_model_once() {
        let m = Manifest::embedded().unwrap();
        for role in [
            "vad",
            "onnxruntime",
            "whisper-ct2",
            "piper-voice",
            "end-of-turn",
        ] {
            assert!(m.files.iter().any(|f| f.role == role), "no {role}");
        }
        for f in &m.files {
            assert_eq!(f.sha256.len(), 64);
            assert!(
                m.packages.iter().any(|p| p.name == f.package),
                "{} has no package",
                f.path
            );
        }
        let mut paths: Vec<_> = m.files.iter().map(|f| &f.path).collect();
        paths.dedup();
        assert_eq!(paths.len(), m.files.len());
        assert!(m.find("vad", "silero_vad.onnx").is_some());
        assert!(m
            .files
            .iter()
            .any(|f| f.path == crate::onnx::LIBRARY && f.role == "onnxruntime"));
    }

    #[test]
    fn malformed_manifest_is_a_clear_error() {
        let err = Manifest::parse("[[file]]\npath = 3").unwrap_err();
        assert!(err.to_string().contains("model manifest"), "{err}");
    }

    #[test]
    fn check_tells_missing_size_and_hash_apart() {
        let dir = std::env::temp_dir().join(format!("aiagc-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.bin"), b"abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let file = |size, sha: &str| ModelFile {
            path: "a.bin".into(),
            role: "x".into(),
            package: "p".into(),
            size,
            sha256: sha.into(),
        };
        assert_eq!(check(&dir, &file(3, abc), true), FileState::Ok);
        assert_eq!(check(&dir, &file(4, abc), true), FileState::WrongSize(3));
        assert!(matches!(
            check(&dir, &file(3, &"0".repeat(64)), true),
            FileState::WrongHash(_)
        ));
        let mut missing = file(3, abc);
        missing.path = "nope.bin".into();
        assert_eq!(check(&dir, &missing, true), FileState::Missing);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The files the setup fetched are intact (the setup runs before tests).
    #[test]
    fn installed_models_match_the_manifest() {
        let dir = default_dir();
        let m = Manifest::embedded().unwrap();
        for f in &m.files {
            assert_eq!(
                check(&dir, f, false),
                FileState::Ok,
                "{} in {} (run scripts/setup.sh)",
                f.path,
                dir.display()
            );
        }
    }
}
