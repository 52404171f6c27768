//! A private, real Asterisk for one test: built by `scripts/asterisk.sh`
//! (the project's setup) from `../shared/asterisk`, started on loopback with
//! its own configuration directory, a free HTTP port, a bounded lifetime
//! (`timeout`, so a test killed mid-way cannot leave it running) and always
//! stopped on drop. When the test fails, its directory (configuration,
//! `full` log, recordings) is kept and its path printed.

use aiagc_ari::client::AriConfig;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// ARI user and password of every test instance.
pub const ARI_USER: &str = "aiagc";
pub const ARI_PASSWORD: &str = "asterisk-test-secret";

/// Longest an instance lives, whatever happens to the test process.
const LIFETIME_S: u64 = 600;

/// The installed Asterisk prefix, built by the setup if needed. Panics with
/// the failing step when no Asterisk can be had.
pub fn prefix() -> &'static Path {
    static PREFIX: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = PREFIX.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/asterisk.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "scripts/asterisk.sh failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let path = PathBuf::from(text.lines().last().unwrap_or("").trim());
        // AIAGC_ASTERISK names a binary; a build names its prefix.
        let prefix = if path.is_file() {
            path.parent()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .unwrap_or(path)
        } else {
            path
        };
        if prefix.join("sbin/asterisk").is_file() {
            Ok(prefix)
        } else {
            Err(format!(
                "scripts/asterisk.sh printed {}, which holds no sbin/asterisk",
                prefix.display()
            ))
        }
    });
    match result {
        Ok(p) => p,
        Err(e) => panic!("no Asterisk for the real-Asterisk tests: {e}"),
    }
}

/// A free TCP port on loopback (bound, then released for Asterisk).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// What an instance is started with.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// `extensions.conf` (the dialplan); `{dir}` is replaced by the
    /// instance's directory.
    pub dialplan: String,
    /// More files for its `etc/` (name, contents; `{dir}` replaced).
    pub files: Vec<(String, String)>,
    /// Modules not to load (e.g. a codec, to see how aiagc copes).
    pub noload: Vec<String>,
}

/// A running instance.
pub struct Asterisk {
    /// Its directory: `etc/`, `log/full`, `rec/`, `snd/`, `agi/`.
    pub dir: PathBuf,
    /// ARI/HTTP port on 127.0.0.1.
    pub http_port: u16,
    setup: Setup,
    child: Option<Child>,
}

static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Asterisk {
    /// Starts an instance and waits until it is fully booted.
    pub fn start(setup: Setup) -> Self {
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("aiagc-asterisk-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in [
            "etc",
            "run",
            "log",
            "spool/recording",
            "lib/keys",
            "agi",
            "rec",
            "snd",
        ] {
            std::fs::create_dir_all(dir.join(sub)).expect("instance directory");
        }
        let mut me = Self {
            dir,
            http_port: free_port(),
            setup,
            child: None,
        };
        me.write_config();
        me.launch();
        me
    }

    fn write_config(&self) {
        let p = prefix();
        let d = self.dir.display().to_string();
        let asterisk_conf = format!(
            "[directories]\nastetcdir => {d}/etc\nastmoddir => {p}/lib/asterisk/modules\n\
             astvarlibdir => {d}/lib\nastdbdir => {d}/lib\nastkeydir => {d}/lib\n\
             astdatadir => {p}/var/lib/asterisk\nastagidir => {d}/agi\n\
             astspooldir => {d}/spool\nastrundir => {d}/run\nastlogdir => {d}/log\n\
             astsbindir => {p}/sbin\n[options]\nverbose = 3\ndebug = 0\n",
            p = p.display()
        );
        let mut modules = String::from("[modules]\nautoload = yes\n");
        for m in &self.setup.noload {
            modules.push_str(&format!("noload => {m}.so\n"));
        }
        let files: Vec<(String, String)> = vec![
            ("asterisk.conf".into(), asterisk_conf),
            ("modules.conf".into(), modules),
            (
                "http.conf".into(),
                format!(
                    "[general]\nenabled = yes\nbindaddr = 127.0.0.1\nbindport = {}\n",
                    self.http_port
                ),
            ),
            (
                "ari.conf".into(),
                format!(
                    "[general]\nenabled = yes\n[{ARI_USER}]\ntype = user\nread_only = no\npassword = {ARI_PASSWORD}\n"
                ),
            ),
            // Apart from aiagc's test ports (3xxxx) so their binds never collide.
            (
                "rtp.conf".into(),
                "[general]\nrtpstart = 40000\nrtpend = 44999\n".into(),
            ),
            (
                "logger.conf".into(),
                "[general]\ndateformat = %F %T.%3q\n[logfiles]\nfull => notice,warning,error,verbose,dtmf\n"
                    .into(),
            ),
            ("extensions.conf".into(), self.setup.dialplan.clone()),
            // Present and empty: Asterisk complains about each one missing.
            ("cdr.conf".into(), "[general]\nenable = no\n".into()),
            ("cel.conf".into(), String::new()),
            ("features.conf".into(), String::new()),
            ("indications.conf".into(), "[general]\ncountry = de\n[de]\ndescription = Germany\nringcadence = 1000,4000\ndial = 425\nbusy = 425/480,0/480\nring = 425/1000,0/4000\ncongestion = 425/240,0/240\ncallwaiting = 425/200,0/200,425/200,0/5000\n".into()),
            ("acl.conf".into(), String::new()),
            ("udptl.conf".into(), String::new()),
            ("websocket_client.conf".into(), String::new()),
            ("chan_websocket.conf".into(), String::new()),
            ("ccss.conf".into(), String::new()),
        ];
        for (name, text) in files.iter().chain(self.setup.files.iter()) {
            std::fs::write(self.dir.join("etc").join(name), text.replace("{dir}", &d))
                .expect("instance config");
        }
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("etc/asterisk.conf")
    }

    fn launch(&mut self) {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(self.dir.join("log/console")).expect("console log");
        let child = Command::new("timeout")
            .args(["--kill-after=5", &LIFETIME_S.to_string()])
            .arg(prefix().join("sbin/asterisk"))
            .args(["-f", "-n", "-C"])
            .arg(self.conf())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("console log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("starting asterisk");
        self.child = Some(child);
        let t = Instant::now();
        loop {
            let out = self.cli_output("core waitfullybooted");
            if out.as_deref().is_ok_and(|o| o.contains("fully booted")) {
                break;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "asterisk exited during start ({status}); logs in {}:\n{}",
                        self.dir.display(),
                        self.log_tail(40)
                    );
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "asterisk did not boot in 60 s: {out:?}; logs in {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// CPU seconds (user + system) the instance's processes have used so
    /// far (its process group, read from `/proc`).
    pub fn cpu_seconds(&self) -> f64 {
        let Some(group) = self.child.as_ref().map(|c| c.id() as i64) else {
            return 0.0;
        };
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let mut total = 0.0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // Fields after the command name (which may hold spaces).
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            // f[2] is the process group; f[11], f[12] utime and stime.
            if f.get(2).and_then(|g| g.parse::<i64>().ok()) == Some(group) {
                let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
                total += (t(11) + t(12)) / ticks;
            }
        }
        total
    }

    /// Replaces the dialplan (`{dir}` expanded) and reloads it.
    pub fn set_dialplan(&self, text: &str) {
        let d = self.dir.display().to_string();
        std::fs::write(
            self.dir.join("etc/extensions.conf"),
            text.replace("{dir}", &d),
        )
        .expect("extensions.conf");
        let out = self.cli("dialplan reload");
        assert!(
            out.contains("reloaded") || out.is_empty() || !out.contains("rror"),
            "{out}"
        );
    }

    /// Runs a CLI command on the instance (`asterisk -rx`).
    pub fn cli(&self, command: &str) -> String {
        self.cli_output(command)
            .unwrap_or_else(|e| panic!("asterisk -rx {command:?}: {e}"))
    }

    fn cli_output(&self, command: &str) -> Result<String, String> {
        let out = Command::new(prefix().join("sbin/asterisk"))
            .arg("-C")
            .arg(self.conf())
            .args(["-rx", command])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(text)
        } else {
            Err(format!("{}: {text}", out.status))
        }
    }

    /// ARI client settings for `app` on this instance.
    pub fn ari(&self, app: &str) -> AriConfig {
        AriConfig::new("127.0.0.1", self.http_port, ARI_USER, ARI_PASSWORD, app)
    }

    /// The last `n` lines of the `full` log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join("log/full"))
            .or_else(|_| std::fs::read_to_string(self.dir.join("log/console")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The whole `full` log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log/full")).unwrap_or_default()
    }

    /// Stops the instance (SIGTERM to its group, SIGKILL after 5 s).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = child.id() as i32;
        // The group: `timeout` and Asterisk under it.
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = child.wait();
    }

    /// Kills the instance at once and starts it again on the same port
    /// with the same configuration: every channel and bridge is gone.
    pub fn restart(&mut self) {
        if let Some(child) = self.child.as_ref() {
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        // The group is killed but the old process may take a moment to go;
        // its control socket must be gone before the new one starts.
        let t = Instant::now();
        while self.cli_output("core show version").is_ok() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "old asterisk still answering"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(self.dir.join("run/asterisk.ctl"));
        let _ = std::fs::remove_file(self.dir.join("run/asterisk.pid"));
        self.launch();
    }

    /// Puts a 16 kHz recording under `snd/` as `name.sln16` and an 8 kHz
    /// copy as `name.sln` (raw, what `Playback(dir/snd/name)` finds without
    /// resampling for either rate). Returns the path to give `Playback()`.
    pub fn add_sound(&self, name: &str, pcm16k: &[i16]) -> String {
        let base = self.dir.join("snd").join(name);
        let bytes = |x: &[i16]| x.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<u8>>();
        std::fs::write(base.with_extension("sln16"), bytes(pcm16k)).expect("sound");
        let pcm8k: Vec<i16> = downsample(pcm16k);
        std::fs::write(base.with_extension("sln"), bytes(&pcm8k)).expect("sound");
        base.display().to_string()
    }
}

/// 16 → 8 kHz through the engine's resampler (the same one aiagc uses).
fn downsample(pcm: &[i16]) -> Vec<i16> {
    let x: Vec<f32> = pcm.iter().map(|&s| s as f32 / 32768.0).collect();
    super::resample(&x, 16000, 8000)
        .iter()
        .map(|&y| (y.clamp(-1.0, 1.0) * 32767.0) as i16)
        .collect()
}

impl Drop for Asterisk {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "asterisk instance kept for inspection: {}\n--- last lines of its log ---\n{}",
                self.dir.display(),
                self.log_tail(60)
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A WAV file's samples and rate.
pub fn read_wav(path: &Path) -> (Vec<i16>, u32) {
    let mut r = hound::WavReader::open(path)
        .unwrap_or_else(|e| panic!("recording {}: {e}", path.display()));
    let rate = r.spec().sample_rate;
    (r.samples::<i16>().map(|s| s.unwrap_or(0)).collect(), rate)
}

/// RMS of samples, as a fraction of full scale.
pub fn rms(x: &[i16]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|&s| (s as f64 / 32768.0).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}
