//! The on-disk spool of post-call documents: a document is written (and
//! synced) to `pending/` before anyone tries to send it, and removed only
//! after the receiver took it, so a webhook that is down or a restart of
//! aiagc loses nothing. Documents the receiver refuses as such (400, 413,
//! 422) move to `failed/`, where `aiagc spool replay --failed` finds them.
//!
//! Each document is `KEY.json`; its delivery attempts, `KEY.meta`. Both are
//! written to a temporary name, synced and renamed, so a crash leaves
//! either the old or the new file, never half of one. The key is the
//! idempotency key the receiver deduplicates by.

use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// What can go wrong with the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file operation failed (full disk, permissions, …).
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Another process delivers from this spool.
    #[error("the spool {} is being delivered by another aiagc process (lock held)", .0.display())]
    Locked(PathBuf),
    /// No document has this key.
    #[error("no document {0} in the spool")]
    Unknown(String),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Where a document stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Queue {
    /// Waiting to be delivered (again).
    Pending,
    /// Refused by the receiver; kept until replayed.
    Failed,
}

impl Queue {
    fn dir(self) -> &'static str {
        match self {
            Queue::Pending => "pending",
            Queue::Failed => "failed",
        }
    }
}

/// The delivery history of one document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempts {
    /// Attempts made.
    pub count: u32,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// When it was made, Unix seconds.
    pub last_at: Option<u64>,
}

/// One document in the spool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Idempotency key (and file name).
    pub key: String,
    /// Which queue.
    pub queue: Queue,
    /// Size of the document, bytes.
    pub bytes: u64,
    /// Delivery history.
    pub attempts: Attempts,
}

/// A spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
}

/// Holds the spool for delivery; released on drop (and by the kernel when
/// the process dies, so a killed sender never locks its successor out).
#[derive(Debug)]
pub struct DeliveryLock {
    _file: fs::File,
}

/// A key for a new document: sortable by time, the call in it, unique.
pub fn new_key(call: &str, at: SystemTime) -> String {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let stamp = chrono::DateTime::from_timestamp(secs as i64, 0)
        .map(|t| t.format("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|| "00000000T000000Z".into());
    let call: String = call
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        .take(48)
        .collect();
    format!("{stamp}-{call}-{:016x}", rand::random::<u64>())
}

/// Keys are file names: nothing that could leave the directory.
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && !key.starts_with('.')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

impl Spool {
    /// Opens (and creates) the spool at `dir`; removes temporary files a
    /// crash left behind (their rename never happened, so the document
    /// they were to become was never acknowledged to anyone).
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, SpoolError> {
        let dir = dir.into();
        for q in [Queue::Pending, Queue::Failed] {
            let d = dir.join(q.dir());
            fs::create_dir_all(&d).map_err(io("creating", &d))?;
            for e in fs::read_dir(&d).map_err(io("reading", &d))?.flatten() {
                if e.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(Self { dir })
    }

    /// The spool's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the delivery lock (one sender per spool, or documents would be
    /// posted twice at once).
    pub fn lock(&self) -> Result<DeliveryLock, SpoolError> {
        let path = self.dir.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("opening", &path))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(SpoolError::Locked(self.dir.clone()));
        }
        Ok(DeliveryLock { _file: file })
    }

    fn path(&self, q: Queue, key: &str, ext: &str) -> PathBuf {
        self.dir.join(q.dir()).join(format!("{key}.{ext}"))
    }

    /// Writes `bytes` to `path` atomically and durably.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), SpoolError> {
        let dir = path.parent().unwrap_or(&self.dir);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let tmp = dir.join(format!(".tmp-{name}"));
        let result = (|| {
            let mut f = fs::File::create(&tmp).map_err(io("creating", &tmp))?;
            f.write_all(bytes).map_err(io("writing", &tmp))?;
            f.sync_all().map_err(io("syncing", &tmp))?;
            fs::rename(&tmp, path).map_err(io("renaming", &tmp))?;
            // The rename is durable once the directory is synced.
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("syncing", dir))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Spools a document under `key` (see [`new_key`]).
    pub fn put(&self, key: &str, body: &[u8]) -> Result<(), SpoolError> {
        if !valid_key(key) {
            return Err(SpoolError::Unknown(key.to_owned()));
        }
        self.write_atomic(&self.path(Queue::Pending, key, "json"), body)
    }

    /// The documents in `queue`, oldest key first.
    pub fn list(&self, queue: Queue) -> Result<Vec<Entry>, SpoolError> {
        let d = self.dir.join(queue.dir());
        let mut out = Vec::new();
        for e in fs::read_dir(&d).map_err(io("reading", &d))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(key) = name.strip_suffix(".json") else {
                continue;
            };
            if !valid_key(key) {
                continue;
            }
            out.push(Entry {
                key: key.to_owned(),
                queue,
                bytes: e.metadata().map(|m| m.len()).unwrap_or(0),
                attempts: self.attempts(queue, key),
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// The keys waiting for delivery, oldest first.
    pub fn pending_keys(&self) -> Result<Vec<String>, SpoolError> {
        let d = self.dir.join(Queue::Pending.dir());
        let mut keys: Vec<String> = fs::read_dir(&d)
            .map_err(io("reading", &d))?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".json")
                    .filter(|k| valid_key(k))
                    .map(str::to_owned)
            })
            .collect();
        keys.sort();
        Ok(keys)
    }

    fn attempts(&self, q: Queue, key: &str) -> Attempts {
        fs::read(self.path(q, key, "meta"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// A pending document's body.
    pub fn read(&self, key: &str) -> Result<Vec<u8>, SpoolError> {
        if !valid_key(key) {
            return Err(SpoolError::Unknown(key.to_owned()));
        }
        let p = self.path(Queue::Pending, key, "json");
        fs::read(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SpoolError::Unknown(key.to_owned()),
            _ => SpoolError::Io {
                what: "reading",
                path: p,
                source: e,
            },
        })
    }

    /// The receiver took `key`: it leaves the spool.
    pub fn delivered(&self, key: &str) -> Result<(), SpoolError> {
        let p = self.path(Queue::Pending, key, "json");
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(SpoolError::Io {
                    what: "removing",
                    path: p,
                    source: e,
                })
            }
        }
        let _ = fs::remove_file(self.path(Queue::Pending, key, "meta"));
        Ok(())
    }

    /// Records a failed attempt; returns the attempts so far.
    pub fn attempt_failed(&self, key: &str, error: &str, now: u64) -> Result<u32, SpoolError> {
        let mut a = self.attempts(Queue::Pending, key);
        a.count += 1;
        a.last_error = Some(error.chars().take(300).collect());
        a.last_at = Some(now);
        let bytes = serde_json::to_vec(&a).unwrap_or_default();
        self.write_atomic(&self.path(Queue::Pending, key, "meta"), &bytes)?;
        Ok(a.count)
    }

    /// The receiver refused `key` as such: it moves to `failed/`.
    pub fn reject(&self, key: &str, error: &str, now: u64) -> Result<(), SpoolError> {
        self.attempt_failed(key, error, now)?;
        self.rename(Queue::Pending, Queue::Failed, key)
    }

    fn rename(&self, from: Queue, to: Queue, key: &str) -> Result<(), SpoolError> {
        let (m_from, m_to) = (self.path(from, key, "meta"), self.path(to, key, "meta"));
        if m_from.exists() {
            fs::rename(&m_from, &m_to).map_err(io("moving", &m_from))?;
        }
        let (from, to) = (self.path(from, key, "json"), self.path(to, key, "json"));
        fs::rename(&from, &to).map_err(io("moving", &from))
    }

    /// Moves every failed document back to `pending/`; how many.
    pub fn requeue_failed(&self) -> Result<usize, SpoolError> {
        let failed = self.list(Queue::Failed)?;
        for e in &failed {
            self.rename(Queue::Failed, Queue::Pending, &e.key)?;
        }
        Ok(failed.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("aiagc-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn documents_stay_until_delivered_and_survive_a_reopen() {
        let dir = temp("reopen");
        let s = Spool::open(&dir).unwrap();
        let k1 = new_key(
            "1733.42",
            UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
        );
        let k2 = new_key(
            "1733.43",
            UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_001),
        );
        assert!(k1.starts_with("20270115T080000Z-1733.42-"), "{k1}");
        s.put(&k2, b"two").unwrap();
        s.put(&k1, b"one").unwrap();
        // A crash between create and rename left a temporary file.
        fs::write(dir.join("pending/.tmp-x.json"), b"half").unwrap();
        drop(s);
        let s = Spool::open(&dir).unwrap();
        assert!(!dir.join("pending/.tmp-x.json").exists());
        assert_eq!(s.pending_keys().unwrap(), vec![k1.clone(), k2.clone()]);
        assert_eq!(s.attempt_failed(&k1, "HTTP 503", 5).unwrap(), 1);
        assert_eq!(s.attempt_failed(&k1, "timeout", 6).unwrap(), 2);
        let listed = s.list(Queue::Pending).unwrap();
        assert_eq!(listed[0].attempts.count, 2);
        assert_eq!(listed[0].attempts.last_error.as_deref(), Some("timeout"));
        assert_eq!(s.read(&k1).unwrap(), b"one");
        s.delivered(&k1).unwrap();
        s.delivered(&k1).unwrap(); // idempotent
        assert_eq!(s.pending_keys().unwrap(), vec![k2.clone()]);
        assert!(!dir.join(format!("pending/{k1}.meta")).exists());
        assert!(matches!(s.read(&k1), Err(SpoolError::Unknown(_))));
    }

    #[test]
    fn refused_documents_wait_in_failed_until_replayed() {
        let dir = temp("failed");
        let s = Spool::open(&dir).unwrap();
        s.put("k1", b"{}").unwrap();
        s.reject("k1", "HTTP 422", 7).unwrap();
        assert!(s.pending_keys().unwrap().is_empty());
        let failed = s.list(Queue::Failed).unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].attempts.last_error.as_deref(), Some("HTTP 422"));
        assert_eq!(s.requeue_failed().unwrap(), 1);
        assert_eq!(s.pending_keys().unwrap(), vec!["k1".to_owned()]);
        assert_eq!(s.list(Queue::Pending).unwrap()[0].attempts.count, 1);
    }

    #[test]
    fn keys_cannot_leave_the_directory_and_strays_are_ignored() {
        let dir = temp("keys");
        let s = Spool::open(&dir).unwrap();
        for bad in ["", "../x", "a/b", ".hidden", "x y"] {
            assert!(s.put(bad, b"x").is_err(), "{bad:?}");
            assert!(s.read(bad).is_err(), "{bad:?}");
        }
        fs::write(dir.join("pending/notes.txt"), b"x").unwrap();
        fs::write(dir.join("pending/bad key.json"), b"x").unwrap();
        assert!(s.pending_keys().unwrap().is_empty());
        assert!(s.list(Queue::Pending).unwrap().is_empty());
    }

    #[test]
    fn a_spool_that_cannot_be_written_says_where_and_why() {
        let dir = temp("blocked");
        let s = Spool::open(&dir).unwrap();
        // `pending` replaced by a file: every write fails, as on a full or
        // broken disk (root ignores permissions, so those cannot test it).
        fs::remove_dir_all(dir.join("pending")).unwrap();
        fs::write(dir.join("pending"), b"").unwrap();
        let e = s.put("k", b"{}").unwrap_err();
        assert!(e.to_string().contains("pending"), "{e}");
    }

    #[test]
    fn one_sender_per_spool() {
        let dir = temp("lock");
        let s = Spool::open(&dir).unwrap();
        let held = s.lock().unwrap();
        assert!(matches!(s.lock(), Err(SpoolError::Locked(_))));
        drop(held);
        s.lock().unwrap();
    }
}
