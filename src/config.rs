//! `aiagc.toml`, overridden by environment variables (the names existing
//! deployments use: `ASTERISK_ARI_HOST`, `ASTERISK_ARI_PORT`,
//! `ASTERISK_ARI_USERNAME`, `ASTERISK_ARI_PASSWORD`, `ASTERISK_LANGUAGE`,
//! plus `AIAGC_*`), overridden by CLI flags. A `.env` in the working
//! directory is read first. The password and API key never appear in
//! `Debug` output.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Asterisk REST Interface.
    pub ari: Ari,
    /// RTP and turn-taking.
    pub media: Media,
    /// STT/TTS workers.
    pub speech: Speech,
    /// What the agent says.
    pub dialogue: DialogueConfig,
    /// The long-running app.
    pub serve: Serve,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub metrics: MetricsConfig,
    /// Post-call documents to the operator's webhook.
    pub delivery: DeliverySection,
    /// `[[tools]]`: the operator's endpoints the agent acts through.
    pub tools: Vec<ToolSection>,
    /// Calls we place: who answered, the message for machines.
    pub outbound: OutboundSection,
}

/// `[outbound]`: calls placed by `aiagc originate` / `campaign` that enter
/// the app with the Stasis argument `outbound`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundSection {
    /// Who tells a person from a machine: `aiagc` (our detector on the
    /// media), `asterisk` (`AMD()` in the dialplan, its `AMDSTATUS` the
    /// second Stasis argument) or `off` (always talk).
    pub amd: String,
    /// Said to a machine after its beep, then the call ends (empty: hang
    /// up without a message).
    pub machine_message: String,
    /// Detector settings, as Asterisk's `amd.conf` (ms).
    pub initial_silence_ms: u32,
    /// Voice in the greeting that makes it a machine.
    pub greeting_ms: u32,
    /// Silence after the greeting that makes it a person.
    pub after_greeting_silence_ms: u32,
    /// Longest analysis; then not sure (treated as a person).
    pub total_analysis_time_ms: u32,
    /// More words than this make it a machine (Asterisk: 2; German
    /// persons answer "Hallo, wer ist da?").
    pub maximum_number_of_words: u32,
    /// Mean level (of 32767) below which a frame is silence.
    pub silence_threshold: u32,
    /// Longest wait for a machine's beep, s.
    pub beep_wait_s: u64,
    /// Silence after a machine's greeting that starts the message without a beep, ms.
    pub no_beep_silence_ms: u64,
}

impl Default for OutboundSection {
    fn default() -> Self {
        let d = aiagc::runtime::outbound::OutboundConfig::default();
        Self {
            amd: "aiagc".into(),
            machine_message: String::new(),
            initial_silence_ms: d.detector.initial_silence_ms,
            greeting_ms: d.detector.greeting_ms,
            after_greeting_silence_ms: d.detector.after_greeting_silence_ms,
            total_analysis_time_ms: d.detector.total_analysis_time_ms,
            maximum_number_of_words: d.detector.maximum_number_of_words,
            silence_threshold: d.detector.silence_threshold,
            beep_wait_s: d.beep_wait.as_secs(),
            no_beep_silence_ms: d.no_beep_silence.as_millis() as u64,
        }
    }
}

/// `[[tools]]`: one HTTP endpoint the scenario (`tool = "name"` on a
/// transition) and the LLM can call.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSection {
    /// Name (`[a-zA-Z0-9_-]`).
    pub name: String,
    /// What it does (the LLM reads this).
    #[serde(default)]
    pub description: String,
    /// Endpoint.
    pub url: String,
    /// `POST` (JSON body) or `GET` (query).
    #[serde(default = "post")]
    pub method: String,
    /// Longest wait, ms.
    #[serde(default = "tool_timeout")]
    pub timeout_ms: u64,
    /// JSON schema of the arguments (a TOML table).
    #[serde(default = "empty_object_schema")]
    pub parameters: serde_json::Value,
    /// Header that carries a credential (e.g. `Authorization`) …
    #[serde(default)]
    pub auth_header: String,
    /// … and the environment variable with its value (never in the file).
    #[serde(default)]
    pub auth_env: String,
}

fn post() -> String {
    "POST".into()
}
fn tool_timeout() -> u64 {
    3000
}
fn empty_object_schema() -> serde_json::Value {
    serde_json::json!({"type": "object", "properties": {}})
}

/// `[delivery]`: each finished call's document, signed, to a webhook,
/// through a spool on disk.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySection {
    /// Webhook URL (empty: no delivery).
    pub url: String,
    /// Shared secret of the HMAC signature (prefer `AIAGC_DELIVERY_SECRET`;
    /// empty: unsigned).
    pub secret: String,
    /// Spool directory (empty: `~/.local/state/aiagc/spool`).
    pub spool_dir: String,
    /// Longest wait for the webhook's answer, ms.
    pub timeout_ms: u64,
    /// Documents in flight at once.
    pub concurrency: usize,
    /// Wait after the first failure, ms (doubled per failure).
    pub backoff_first_ms: u64,
    /// Longest wait between attempts, s.
    pub backoff_max_s: u64,
}

impl Default for DeliverySection {
    fn default() -> Self {
        Self {
            url: String::new(),
            secret: String::new(),
            spool_dir: String::new(),
            timeout_ms: 10_000,
            concurrency: 4,
            backoff_first_ms: 1000,
            backoff_max_s: 300,
        }
    }
}

impl std::fmt::Debug for DeliverySection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliverySection")
            .field("url", &self.url)
            .field("secret", &redacted(&self.secret))
            .field("spool_dir", &self.spool_dir)
            .field("timeout_ms", &self.timeout_ms)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the metrics/health HTTP server (empty: off). Loopback by
    /// default: put a proxy or the scraper on the same host.
    pub bind: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:9464".into(),
        }
    }
}

/// `[ari]`
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ari {
    /// Host of Asterisk's HTTP server.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// `ari.conf` user.
    pub username: String,
    /// Its password.
    pub password: String,
    /// Stasis application name.
    pub app: String,
    /// Language of the callers.
    pub language: String,
    /// Reach ARI over TLS (`https`, events and media over `wss`): Asterisk's
    /// `http.conf` `tlsenable = yes`, `port` is then its `tlsbindaddr`'s.
    pub tls: bool,
    /// PEM file of the CA that signed Asterisk's certificate (empty: the
    /// system's roots). Asterisk's name (`host`) is checked against it.
    pub ca_file: String,
}

impl Default for Ari {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8088,
            username: "aiagc".into(),
            password: String::new(),
            app: "aiagc".into(),
            language: "de".into(),
            tls: false,
            ca_file: String::new(),
        }
    }
}

impl std::fmt::Debug for Ari {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ari")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("app", &self.app)
            .field("language", &self.language)
            .finish()
    }
}

/// `[media]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Media {
    /// Address Asterisk sends RTP to (`external_host`); must be reachable from Asterisk.
    pub bind: String,
    /// UDP port range, `"20000-20999"`.
    pub ports: String,
    /// How media reaches Asterisk: `rtp` (externalMedia RTP to `bind` and
    /// `ports`, the default) or `websocket` (Asterisk's WebSocket media
    /// channel, Asterisk 20.16 / 21.11 / 22.6 and later: aiagc connects to
    /// Asterisk's HTTP port, slin16 both ways; `format`, `bind` and `ports`
    /// are then unused).
    pub transport: String,
    /// externalMedia RTP format: `g722` (wideband, the default), `ulaw` or
    /// `alaw`. `slin16`
    /// and `opus` are refused: a real Asterisk plays neither back over RTP.
    pub format: String,
    /// Transcribe at a pause and end the turn there when the words (and
    /// the turn model) say it is complete.
    pub semantic_endpointing: bool,
    /// Ask Smart Turn at pauses (needs its model in the models folder).
    pub turn_model: bool,
    /// Longest silence when the caller is judged not done, ms.
    pub turn_ceiling_ms: u64,
    /// Silence that ends a turn, ms.
    pub hangover_ms: u64,
    /// Silence after a reply before the agent asks again, s.
    pub no_input_s: u64,
    /// Directory for per-call JSON-lines records (empty: none).
    pub records_dir: String,
    /// Also record both directions as WAV files in `records_dir`.
    pub record_audio: bool,
    /// RTP accepted from: `strict` (the address and port Asterisk
    /// reported), `address` (its address, any port), `latch` (the first
    /// source; NAT between Asterisk and aiagc).
    pub rtp_source: String,
    /// Play `filler_text` when a reply has not started this long after the
    /// caller's turn ended, ms (0: never).
    pub filler_after_ms: u64,
    /// The filler.
    pub filler_text: String,
    /// Cancel our own echo in the caller's audio and keep it from counting
    /// as the caller (barge-in, turn start).
    pub echo_cancel: bool,
    /// Caller sound over a reply: `resume` (pause it; play on after a
    /// "mhm", a cough or our own echo; the default) or `stop` (drop it at
    /// the first sound).
    pub barge_in: String,
    /// Where a paused reply plays on: `sentence` (its sentence again) or
    /// `position` (where it paused).
    pub barge_in_resume: String,
    /// Sound that lasts this long without a pause takes the turn, ms.
    pub barge_in_commit_ms: u64,
}

impl Default for Media {
    fn default() -> Self {
        Self {
            rtp_source: "strict".into(),
            filler_after_ms: 1000,
            filler_text: "Einen Moment bitte.".into(),
            echo_cancel: true,
            bind: "127.0.0.1".into(),
            ports: "20000-20999".into(),
            transport: "rtp".into(),
            format: "g722".into(),
            semantic_endpointing: true,
            turn_model: true,
            turn_ceiling_ms: 1500,
            hangover_ms: 500,
            no_input_s: 8,
            records_dir: String::new(),
            record_audio: false,
            barge_in: "resume".into(),
            barge_in_resume: "sentence".into(),
            barge_in_commit_ms: 700,
        }
    }
}

/// `[speech]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Speech {
    /// Worker threads (0: one per two cores).
    pub workers: usize,
    /// CPU threads per whisper decode.
    pub threads: usize,
    /// Jobs waiting at most; more are rejected (counted, logged).
    pub queue: usize,
    /// Model folder (empty: the default, see `aiagc models list`).
    pub models_dir: String,
    /// Loudness of the replies, LUFS (peaks stay below −1 dBFS).
    pub tts_level_lufs: f64,
    /// Speech-to-text: `whisper` (local whisper.cpp) or `openai` (a server's
    /// `/v1/audio/transcriptions`, see `[speech.remote]`).
    pub backend: String,
    /// Hold local decoding to the grammar of the answers the dialogue
    /// expects (yes/no, dates, times, numbers), falling back to free
    /// decoding when the caller says something else.
    pub grammar: bool,
    /// With `grammar`: score the readings of a date, time or yes/no answer
    /// (the transcript with words that sound alike swapped) so the
    /// dialogue can weigh them and ask when two are close.
    pub nbest: bool,
    /// Order of the workers' jobs: `deadline` (what a caller waits on
    /// first, speculative work after it and shed when late) or `arrival`
    /// (first come, first served: to compare).
    pub schedule: String,
    /// `[speech.remote]`
    pub remote: RemoteStt,
}

impl Default for Speech {
    fn default() -> Self {
        Self {
            workers: 0,
            threads: 2,
            queue: 32,
            models_dir: String::new(),
            tts_level_lufs: aiagc_models::level::TARGET_LUFS,
            backend: "whisper".into(),
            grammar: true,
            nbest: true,
            schedule: "deadline".into(),
            remote: RemoteStt::default(),
        }
    }
}

/// `[speech.remote]`: an OpenAI-compatible transcription server.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteStt {
    /// Base URL including `/v1`.
    pub base_url: String,
    /// Model name the server knows.
    pub model: String,
    /// Bearer token (prefer `AIAGC_STT_API_KEY`).
    pub api_key: String,
    /// Longest wait for a transcript, ms.
    pub timeout_ms: u64,
}

impl Default for RemoteStt {
    fn default() -> Self {
        let d = aiagc_models::stt_remote::RemoteSttConfig::default();
        Self {
            base_url: d.base_url,
            model: d.model,
            api_key: String::new(),
            timeout_ms: d.timeout.as_millis() as u64,
        }
    }
}

impl std::fmt::Debug for RemoteStt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStt")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &redacted(&self.api_key))
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// `[dialogue]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DialogueConfig {
    /// `scenario` or `llm`.
    pub backend: String,
    /// Scenario file (empty: the built-in practice scenario).
    pub scenario: String,
    /// `[dialogue.llm]`
    pub llm: Llm,
}

impl Default for DialogueConfig {
    fn default() -> Self {
        Self {
            backend: "scenario".into(),
            scenario: String::new(),
            llm: Llm::default(),
        }
    }
}

/// `[dialogue.llm]`: an OpenAI-compatible server.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Llm {
    /// Base URL including `/v1`.
    pub base_url: String,
    /// Model name.
    pub model: String,
    /// Bearer token (prefer `AIAGC_LLM_API_KEY`).
    pub api_key: String,
    /// System prompt (empty: the built-in German one).
    pub system_prompt: String,
    /// Facts for the model (opening hours, address, …).
    pub context: String,
    /// Wait for the first token, ms.
    pub first_token_timeout_ms: u64,
    /// Longest answer, ms.
    pub total_timeout_ms: u64,
    /// Conversation messages sent with each request (the oldest go first).
    pub max_history: usize,
}

impl Default for Llm {
    fn default() -> Self {
        let d = aiagc_dialogue::llm::LlmConfig::default();
        Self {
            base_url: d.base_url,
            model: d.model,
            api_key: String::new(),
            system_prompt: String::new(),
            context: String::new(),
            first_token_timeout_ms: d.first_token_timeout.as_millis() as u64,
            total_timeout_ms: d.total_timeout.as_millis() as u64,
            max_history: d.max_history,
        }
    }
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &redacted(&self.api_key))
            .field("context", &self.context)
            .finish()
    }
}

/// `[serve]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Serve {
    /// How long SIGINT/SIGTERM waits for calls to finish, s.
    pub drain_grace_s: u64,
    /// While draining, new callers continue here (`context,exten,priority`;
    /// empty: they are hung up with "congestion"). Callers over the
    /// host's limit go here too.
    pub drain_to: String,
    /// Calls taken at once (0: no configured limit); callers beyond it go
    /// to `drain_to` or, without one, hear `busy_message`.
    pub max_calls: usize,
    /// Also turn new callers away while the speech workers are this far
    /// behind the callers they have, ms (0: never).
    pub admit_behind_ms: u64,
    /// What a caller turned away hears before the hangup (empty: hung up
    /// at once).
    pub busy_message: String,
}

impl Default for Serve {
    fn default() -> Self {
        let media = aiagc::runtime::media::MediaConfig::default();
        Self {
            drain_grace_s: 30,
            drain_to: String::new(),
            max_calls: 0,
            admit_behind_ms: 2000,
            busy_message: media.busy_message,
        }
    }
}

/// Where each effective value came from: `section.key` → `file PATH` or
/// `env NAME` (absent: the default). Flags are recorded by the caller.
pub type Sources = std::collections::BTreeMap<String, String>;

/// An externalMedia RTP format that a real Asterisk plays to the caller;
/// the others are refused with the reason and what to use instead.
pub fn rtp_format(name: &str) -> Result<aiagc_engine::Codec> {
    let codec = aiagc_engine::Codec::from_asterisk_format(name)?;
    if let Err(why) = codec.rtp_playback() {
        bail!(
            "{} cannot reach the caller over externalMedia RTP: {why}. \
             Use \"g722\" for wideband (16 kHz audio, static payload type 9, \
             Asterisk's codec_g722) or \"ulaw\"/\"alaw\" (8 kHz)",
            codec.asterisk_format()
        );
    }
    Ok(codec)
}

impl Config {
    /// Reads `path` (or `aiagc.toml` if it exists), then applies the
    /// environment `env` (a lookup, so tests need not touch the process).
    pub fn load(path: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        Ok(Self::load_with_sources(path, env)?.0)
    }

    /// [`Config::load`], also saying where each value came from.
    pub fn load_with_sources(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Self, Sources)> {
        let mut sources = Sources::new();
        let file = match path {
            Some(p) => Some(p.to_owned()),
            None if Path::new("aiagc.toml").exists() => Some("aiagc.toml".into()),
            None => None,
        };
        if let Some(f) = &file {
            if let Ok(table) = std::fs::read_to_string(f)
                .map_err(anyhow::Error::from)
                .and_then(|t| Ok(toml::from_str::<toml::Table>(&t)?))
            {
                collect_keys(&table, "", &mut |k| {
                    sources.insert(k, format!("file {}", f.display()));
                });
            }
        }
        let config = Self::load_env_recorded(path, env, &mut sources)?;
        Ok((config, sources))
    }

    fn load_env_recorded(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        sources: &mut Sources,
    ) -> Result<Self> {
        let mut config = match path {
            Some(p) => Self::from_toml(
                &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            )
            .with_context(|| format!("in {}", p.display()))?,
            None if Path::new("aiagc.toml").exists() => {
                Self::from_toml(&std::fs::read_to_string("aiagc.toml")?).context("in aiagc.toml")?
            }
            None => Self::default(),
        };
        config.apply_env(env)?;
        config.validate()?;
        for (key, name) in ENV_KEYS {
            if env(name).is_some() {
                sources.insert(key.to_string(), format!("env {name}"));
            }
        }
        Ok(config)
    }

    /// The effective configuration as TOML, secrets redacted, each value
    /// annotated with where it came from.
    pub fn explain(&self, sources: &Sources) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        for path in [
            ["ari", "password", ""],
            ["dialogue", "llm", "api_key"],
            ["speech", "remote", "api_key"],
            ["delivery", "secret", ""],
        ] {
            let mut secret = &mut v;
            for p in path.iter().filter(|p| !p.is_empty()) {
                secret = &mut secret[*p];
            }
            if secret.as_str().is_some_and(|s| !s.is_empty()) {
                *secret = serde_json::Value::String("<redacted>".into());
            }
        }
        let mut out = String::new();
        explain_table(&v, "", sources, &mut out);
        out.trim_start().to_owned()
    }

    /// Parses TOML (unknown keys are errors: a typo must not be ignored).
    pub fn from_toml(text: &str) -> Result<Self> {
        Ok(toml::from_str(text)?)
    }

    pub(crate) fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
        let set = |target: &mut String, name: &str| {
            if let Some(v) = env(name) {
                *target = v;
            }
        };
        set(&mut self.ari.host, "ASTERISK_ARI_HOST");
        set(&mut self.ari.username, "ASTERISK_ARI_USERNAME");
        set(&mut self.ari.password, "ASTERISK_ARI_PASSWORD");
        set(&mut self.ari.language, "ASTERISK_LANGUAGE");
        set(&mut self.ari.app, "AIAGC_APP");
        set(&mut self.media.bind, "AIAGC_MEDIA_BIND");
        set(&mut self.media.ports, "AIAGC_MEDIA_PORTS");
        set(&mut self.media.format, "AIAGC_MEDIA_FORMAT");
        set(&mut self.media.transport, "AIAGC_MEDIA_TRANSPORT");
        set(&mut self.media.records_dir, "AIAGC_RECORDS_DIR");
        set(&mut self.speech.models_dir, "AIAGC_MODELS");
        set(&mut self.dialogue.backend, "AIAGC_DIALOGUE");
        set(&mut self.dialogue.llm.base_url, "AIAGC_LLM_URL");
        set(&mut self.dialogue.llm.model, "AIAGC_LLM_MODEL");
        set(&mut self.dialogue.llm.api_key, "AIAGC_LLM_API_KEY");
        set(&mut self.metrics.bind, "AIAGC_METRICS_BIND");
        set(&mut self.speech.backend, "AIAGC_STT");
        set(&mut self.speech.remote.base_url, "AIAGC_STT_URL");
        set(&mut self.speech.remote.model, "AIAGC_STT_MODEL");
        set(&mut self.speech.remote.api_key, "AIAGC_STT_API_KEY");
        set(&mut self.delivery.url, "AIAGC_DELIVERY_URL");
        set(&mut self.delivery.secret, "AIAGC_DELIVERY_SECRET");
        set(&mut self.delivery.spool_dir, "AIAGC_SPOOL_DIR");
        if let Some(p) = env("ASTERISK_ARI_PORT") {
            self.ari.port = p
                .trim()
                .parse()
                .with_context(|| format!("ASTERISK_ARI_PORT={p:?} is not a port number"))?;
        }
        Ok(())
    }

    /// The externalMedia codec (validated).
    pub fn codec(&self) -> Result<aiagc_engine::Codec> {
        rtp_format(&self.media.format)
            .with_context(|| format!("media.format = {:?}", self.media.format))
    }

    /// The media transport (validated).
    pub fn transport(&self) -> Result<aiagc_ari::controller::MediaTransport> {
        self.media
            .transport
            .parse()
            .map_err(|e| anyhow::anyhow!("media.transport = {e}"))
    }

    /// Checks values a file can get wrong.
    pub fn validate(&self) -> Result<()> {
        self.port_range()?;
        self.transport()?;
        rtp_format(&self.media.format)
            .with_context(|| format!("media.format = {:?}", self.media.format))?;
        self.media
            .rtp_source
            .parse::<aiagc_engine::SourcePolicy>()
            .map_err(|e| anyhow::anyhow!("media.rtp_source = {e}"))?;
        self.barge_in()?;
        self.media
            .bind
            .parse::<std::net::IpAddr>()
            .with_context(|| format!("media.bind = {:?} is not an IP address", self.media.bind))?;
        if !matches!(self.dialogue.backend.as_str(), "scenario" | "llm") {
            bail!(
                "dialogue.backend = {:?}: use \"scenario\" or \"llm\"",
                self.dialogue.backend
            );
        }
        if !(-30.0..=-10.0).contains(&self.speech.tts_level_lufs) {
            bail!(
                "speech.tts_level_lufs = {}: use −30 to −10 (−18 suits G.711)",
                self.speech.tts_level_lufs
            );
        }
        if !matches!(self.speech.backend.as_str(), "whisper" | "openai") {
            bail!(
                "speech.backend = {:?}: use \"whisper\" or \"openai\"",
                self.speech.backend
            );
        }
        if self.speech.backend == "openai" {
            self.stt_remote()?;
        }
        if self.ari.app.is_empty() || self.ari.app.contains(['/', '?', '&', ' ']) {
            bail!(
                "ari.app = {:?} is not a usable Stasis app name",
                self.ari.app
            );
        }
        if self.media.hangover_ms < 100 || self.media.hangover_ms > 3000 {
            bail!(
                "media.hangover_ms = {} (use 100–3000)",
                self.media.hangover_ms
            );
        }
        self.drain_to()?;
        self.schedule()?;
        self.delivery()?;
        self.outbound()?;
        aiagc_dialogue::tools::check(&self.tool_specs(&|_| Some(String::new()))?)?;
        if !self.metrics.bind.is_empty() {
            self.metrics
                .bind
                .parse::<std::net::SocketAddr>()
                .with_context(|| {
                    format!("metrics.bind = {:?} is not IP:port", self.metrics.bind)
                })?;
        }
        Ok(())
    }

    /// The RTP port range.
    pub fn port_range(&self) -> Result<std::ops::RangeInclusive<u16>> {
        let bad = || format!("media.ports = {:?}: use \"20000-20999\"", self.media.ports);
        let (a, b) = self.media.ports.split_once('-').with_context(bad)?;
        let (a, b): (u16, u16) = (
            a.trim().parse().with_context(bad)?,
            b.trim().parse().with_context(bad)?,
        );
        if a > b || b - a < 1 {
            bail!(bad());
        }
        Ok(a..=b)
    }

    /// Where new callers go while draining.
    /// `[speech] schedule`.
    pub fn schedule(&self) -> Result<aiagc::runtime::schedule::Order> {
        use aiagc::runtime::schedule::Order;
        match self.speech.schedule.trim() {
            "deadline" | "" => Ok(Order::Deadline),
            "arrival" => Ok(Order::Arrival),
            other => bail!("speech.schedule = {other:?}: use \"deadline\" or \"arrival\""),
        }
    }

    pub fn drain_to(&self) -> Result<Option<(String, String, i64)>> {
        if self.serve.drain_to.trim().is_empty() {
            return Ok(None);
        }
        let parts: Vec<&str> = self.serve.drain_to.split(',').map(str::trim).collect();
        match parts.as_slice() {
            [context, exten, prio] if !context.is_empty() => Ok(Some((
                context.to_string(),
                exten.to_string(),
                prio.parse()
                    .with_context(|| format!("serve.drain_to priority {prio:?}"))?,
            ))),
            _ => bail!(
                "serve.drain_to = {:?}: use \"context,extension,priority\"",
                self.serve.drain_to
            ),
        }
    }

    /// How to reach ARI.
    pub fn ari_config(&self) -> aiagc_ari::client::AriConfig {
        let config = aiagc_ari::client::AriConfig::new(
            &self.ari.host,
            self.ari.port,
            &self.ari.username,
            &self.ari.password,
            &self.ari.app,
        );
        if self.ari.tls {
            config
                .with_tls((!self.ari.ca_file.is_empty()).then(|| PathBuf::from(&self.ari.ca_file)))
        } else {
            config
        }
    }

    /// The models folder.
    pub fn models_dir(&self) -> PathBuf {
        if self.speech.models_dir.is_empty() {
            aiagc_models::manifest::default_dir()
        } else {
            PathBuf::from(&self.speech.models_dir)
        }
    }

    /// Speech workers: configured, or one per `threads` cores for local
    /// whisper; with a remote STT server a worker mostly waits on the
    /// network, so four per core.
    pub fn workers(&self) -> usize {
        if self.speech.workers > 0 {
            return self.speech.workers;
        }
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        if self.speech.backend == "openai" {
            return cores * 4;
        }
        (cores / self.speech.threads.max(1)).max(1)
    }

    /// The transcription server's settings (for `speech.backend = "openai"`).
    pub fn stt_remote(&self) -> Result<aiagc_models::stt_remote::RemoteSttConfig> {
        let r = &self.speech.remote;
        if !r.base_url.starts_with("http://") && !r.base_url.starts_with("https://") {
            bail!(
                "speech.remote.base_url = {:?}: use http://host:port/v1",
                r.base_url
            );
        }
        if r.timeout_ms == 0 {
            bail!("speech.remote.timeout_ms must be above 0");
        }
        Ok(aiagc_models::stt_remote::RemoteSttConfig {
            base_url: r.base_url.clone(),
            model: r.model.clone(),
            api_key: (!r.api_key.is_empty()).then(|| r.api_key.clone()),
            timeout: Duration::from_millis(r.timeout_ms),
        })
    }

    /// What caller sound over a reply does (`[media] barge_in*`).
    pub fn barge_in(&self) -> Result<aiagc::runtime::conversation::BargeIn> {
        use aiagc::runtime::conversation::BargeIn;
        let m = &self.media;
        let from = match m.barge_in_resume.as_str() {
            "sentence" => aiagc_engine::ResumeFrom::SentenceStart,
            "position" => aiagc_engine::ResumeFrom::Position,
            other => bail!("media.barge_in_resume = {other:?}: use \"sentence\" or \"position\""),
        };
        if !(200..=5000).contains(&m.barge_in_commit_ms) {
            bail!(
                "media.barge_in_commit_ms = {}: use 200 to 5000",
                m.barge_in_commit_ms
            );
        }
        match m.barge_in.as_str() {
            "stop" => Ok(BargeIn::Stop),
            "resume" => match BargeIn::default() {
                BargeIn::Resume { min_rest, .. } => Ok(BargeIn::Resume {
                    from,
                    commit_after: std::time::Duration::from_millis(m.barge_in_commit_ms),
                    min_rest,
                }),
                BargeIn::Stop => Ok(BargeIn::Stop),
            },
            other => bail!("media.barge_in = {other:?}: use \"resume\" or \"stop\""),
        }
    }

    /// Outbound call settings.
    pub fn outbound(&self) -> Result<aiagc::runtime::outbound::OutboundConfig> {
        use aiagc::runtime::outbound::{AmdMode, OutboundConfig};
        let o = &self.outbound;
        let amd = match o.amd.as_str() {
            "aiagc" => AmdMode::Aiagc,
            "asterisk" => AmdMode::Asterisk,
            "off" => AmdMode::Off,
            other => bail!("outbound.amd = {other:?}: use \"aiagc\", \"asterisk\" or \"off\""),
        };
        if o.total_analysis_time_ms < 1000 || o.greeting_ms == 0 || o.after_greeting_silence_ms == 0
        {
            bail!("outbound: total_analysis_time_ms (≥ 1000), greeting_ms and after_greeting_silence_ms must be set");
        }
        let base = OutboundConfig::default();
        Ok(OutboundConfig {
            amd,
            detector: aiagc_engine::amd::AmdConfig {
                initial_silence_ms: o.initial_silence_ms,
                greeting_ms: o.greeting_ms,
                after_greeting_silence_ms: o.after_greeting_silence_ms,
                total_analysis_time_ms: o.total_analysis_time_ms,
                maximum_number_of_words: o.maximum_number_of_words,
                silence_threshold: o.silence_threshold,
                ..base.detector
            },
            machine_message: o.machine_message.clone(),
            beep_wait: Duration::from_secs(o.beep_wait_s),
            no_beep_silence: Duration::from_millis(o.no_beep_silence_ms),
        })
    }

    /// The declared tools, credentials read from `env`.
    pub fn tool_specs(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<aiagc_dialogue::tools::ToolSpec>> {
        self.tools
            .iter()
            .map(|t| {
                let mut headers = Vec::new();
                if !t.auth_header.is_empty() {
                    if t.auth_env.is_empty() {
                        bail!(
                            "tools `{}`: auth_header needs auth_env (the variable with its value)",
                            t.name
                        );
                    }
                    let value = env(&t.auth_env).with_context(|| {
                        format!(
                            "tools `{}`: environment variable {} is not set",
                            t.name, t.auth_env
                        )
                    })?;
                    headers.push((t.auth_header.clone(), value));
                }
                if t.timeout_ms == 0 || t.timeout_ms > 30_000 {
                    bail!(
                        "tools `{}`: timeout_ms = {} (use 1–30000)",
                        t.name,
                        t.timeout_ms
                    );
                }
                Ok(aiagc_dialogue::tools::ToolSpec {
                    name: t.name.clone(),
                    description: t.description.clone(),
                    parameters: t.parameters.clone(),
                    url: t.url.clone(),
                    method: t.method.to_ascii_uppercase(),
                    timeout: Duration::from_millis(t.timeout_ms),
                    headers,
                })
            })
            .collect()
    }

    /// The spool directory (also without a webhook: `aiagc spool` reads it).
    pub fn spool_dir(&self) -> PathBuf {
        if !self.delivery.spool_dir.is_empty() {
            return PathBuf::from(&self.delivery.spool_dir);
        }
        let state = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(|| PathBuf::from("."));
        state.join("aiagc").join("spool")
    }

    /// Post-call delivery, if a webhook is configured.
    pub fn delivery(&self) -> Result<Option<aiagc::delivery::DeliveryConfig>> {
        let d = &self.delivery;
        if d.url.trim().is_empty() {
            return Ok(None);
        }
        let url = d.url.trim();
        if !url.starts_with("http://") && !url.starts_with("https://") {
            bail!("delivery.url = {url:?}: use http://… or https://…");
        }
        if d.timeout_ms == 0 || d.concurrency == 0 || d.backoff_first_ms == 0 {
            bail!("delivery.timeout_ms, concurrency and backoff_first_ms must be above 0");
        }
        if d.backoff_max_s * 1000 < d.backoff_first_ms {
            bail!("delivery.backoff_max_s must be at least backoff_first_ms");
        }
        Ok(Some(aiagc::delivery::DeliveryConfig {
            url: url.to_owned(),
            secret: d.secret.as_bytes().to_vec(),
            spool_dir: self.spool_dir(),
            timeout: Duration::from_millis(d.timeout_ms),
            concurrency: d.concurrency,
            backoff_first: Duration::from_millis(d.backoff_first_ms),
            backoff_max: Duration::from_secs(d.backoff_max_s),
        }))
    }

    /// The LLM client settings.
    pub fn llm(&self) -> aiagc_dialogue::llm::LlmConfig {
        let l = &self.dialogue.llm;
        let mut c = aiagc_dialogue::llm::LlmConfig {
            base_url: l.base_url.clone(),
            model: l.model.clone(),
            api_key: (!l.api_key.is_empty()).then(|| l.api_key.clone()),
            first_token_timeout: Duration::from_millis(l.first_token_timeout_ms),
            total_timeout: Duration::from_millis(l.total_timeout_ms),
            max_history: l.max_history.max(1),
            ..Default::default()
        };
        if !l.system_prompt.is_empty() {
            c.system_prompt = l.system_prompt.clone();
        }
        c
    }
}

/// How a secret shows in `Debug` output: empty, or redacted.
fn redacted(secret: &str) -> &'static str {
    if secret.is_empty() {
        ""
    } else {
        "<redacted>"
    }
}

/// Keys the environment can set, and the variable.
const ENV_KEYS: [(&str, &str); 24] = [
    ("delivery.url", "AIAGC_DELIVERY_URL"),
    ("delivery.secret", "AIAGC_DELIVERY_SECRET"),
    ("delivery.spool_dir", "AIAGC_SPOOL_DIR"),
    ("speech.backend", "AIAGC_STT"),
    ("speech.remote.base_url", "AIAGC_STT_URL"),
    ("speech.remote.model", "AIAGC_STT_MODEL"),
    ("speech.remote.api_key", "AIAGC_STT_API_KEY"),
    ("metrics.bind", "AIAGC_METRICS_BIND"),
    ("ari.host", "ASTERISK_ARI_HOST"),
    ("ari.port", "ASTERISK_ARI_PORT"),
    ("ari.username", "ASTERISK_ARI_USERNAME"),
    ("ari.password", "ASTERISK_ARI_PASSWORD"),
    ("ari.language", "ASTERISK_LANGUAGE"),
    ("ari.app", "AIAGC_APP"),
    ("media.bind", "AIAGC_MEDIA_BIND"),
    ("media.ports", "AIAGC_MEDIA_PORTS"),
    ("media.format", "AIAGC_MEDIA_FORMAT"),
    ("media.transport", "AIAGC_MEDIA_TRANSPORT"),
    ("media.records_dir", "AIAGC_RECORDS_DIR"),
    ("speech.models_dir", "AIAGC_MODELS"),
    ("dialogue.backend", "AIAGC_DIALOGUE"),
    ("dialogue.llm.base_url", "AIAGC_LLM_URL"),
    ("dialogue.llm.model", "AIAGC_LLM_MODEL"),
    ("dialogue.llm.api_key", "AIAGC_LLM_API_KEY"),
];

fn collect_keys(table: &toml::Table, prefix: &str, add: &mut dyn FnMut(String)) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => collect_keys(t, &key, add),
            _ => add(key),
        }
    }
}

fn explain_table(v: &serde_json::Value, prefix: &str, sources: &Sources, out: &mut String) {
    let Some(map) = v.as_object() else { return };
    if !prefix.is_empty() {
        out.push_str(&format!("\n[{prefix}]\n"));
    }
    for (k, val) in map.iter().filter(|(_, v)| !v.is_object()) {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let text = val.to_string();
        let from = sources.get(&key).map(String::as_str).unwrap_or("default");
        out.push_str(&format!("{:<44} # {from}\n", format!("{k} = {text}")));
    }
    for (k, val) in map.iter().filter(|(_, v)| v.is_object()) {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        explain_table(val, &key, sources, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn file_then_environment() {
        let mut c = Config::from_toml(
            "[ari]\nhost = \"pbx.local\"\npassword = \"s3cret\"\n[media]\nports = \"30000-30099\"\nformat = \"ulaw\"\n",
        )
        .unwrap();
        c.apply_env(&env(&[
            ("ASTERISK_ARI_PORT", "8089"),
            ("ASTERISK_ARI_HOST", "10.0.0.5"),
        ]))
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.ari.host, "10.0.0.5");
        assert_eq!(c.ari.port, 8089);
        assert_eq!(c.port_range().unwrap(), 30000..=30099);
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            ("[media]\nports = \"abc\"", "media.ports"),
            ("[media]\nports = \"3000-2000\"", "media.ports"),
            ("[media]\nformat = \"gsm\"", "media.format"),
            (
                "[media]\nformat = \"slin16\"",
                "payload type 118 is dynamic",
            ),
            ("[media]\nformat = \"opus\"", "no Opus transcoder"),
            ("[media]\nbind = \"localhost:5\"", "media.bind"),
            ("[dialogue]\nbackend = \"gpt\"", "dialogue.backend"),
            ("[ari]\napp = \"a b\"", "ari.app"),
            ("[media]\nhangover_ms = 10", "hangover_ms"),
            ("[serve]\ndrain_to = \"ctx\"", "serve.drain_to"),
            ("[speech]\nschedule = \"lifo\"", "speech.schedule"),
            ("[speech]\nbackend = \"vosk\"", "speech.backend"),
            ("[media]\nrtp_source = \"any\"", "media.rtp_source"),
            ("[media]\nbarge_in = \"pause\"", "media.barge_in"),
            (
                "[media]\nbarge_in_resume = \"word\"",
                "media.barge_in_resume",
            ),
            (
                "[media]\nbarge_in_commit_ms = 50",
                "media.barge_in_commit_ms",
            ),
            ("[speech]\ntts_level_lufs = 0.0", "speech.tts_level_lufs"),
            (
                "[speech]\nbackend = \"openai\"\n[speech.remote]\nbase_url = \"gpu:8000\"",
                "speech.remote.base_url",
            ),
            (
                "[speech]\nbackend = \"openai\"\n[speech.remote]\ntimeout_ms = 0",
                "speech.remote.timeout_ms",
            ),
        ];
        for (text, needle) in cases {
            let err = Config::from_toml(text)
                .and_then(|c| c.validate().map(|_| c))
                .unwrap_err();
            assert!(format!("{err:#}").contains(needle), "{text}: {err:#}");
        }
        assert!(
            Config::from_toml("[ari]\nhots = \"x\"").is_err(),
            "typos are errors"
        );
        assert!(Config::from_toml("[ari\n").is_err());
        let mut c = Config::default();
        let err = c
            .apply_env(&env(&[("ASTERISK_ARI_PORT", "eighty")]))
            .unwrap_err();
        assert!(format!("{err:#}").contains("ASTERISK_ARI_PORT"));
    }

    #[test]
    fn the_example_file_is_the_defaults() {
        let text = include_str!("../aiagc.example.toml");
        let c = Config::from_toml(text).unwrap();
        c.validate().unwrap();
        assert_eq!(format!("{c:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn explain_names_the_source_and_hides_secrets() {
        let dir = std::env::temp_dir().join(format!("aiagc-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("aiagc.toml");
        std::fs::write(
            &file,
            "[ari]\nhost = \"pbx\"\n[dialogue.llm]\nmodel = \"m\"\n",
        )
        .unwrap();
        let (c, sources) = Config::load_with_sources(
            Some(&file),
            &env(&[
                ("ASTERISK_ARI_PASSWORD", "s3cret"),
                ("ASTERISK_ARI_PORT", "8089"),
            ]),
        )
        .unwrap();
        let text = c.explain(&sources);
        assert!(
            text.contains("host = \"pbx\"") && text.contains(&format!("# file {}", file.display())),
            "{text}"
        );
        assert!(
            text.contains("port = 8089") && text.contains("# env ASTERISK_ARI_PORT"),
            "{text}"
        );
        assert!(
            text.contains("password = \"<redacted>\"") && !text.contains("s3cret"),
            "{text}"
        );
        assert!(
            text.contains("[dialogue.llm]") && text.contains("model = \"m\""),
            "{text}"
        );
        assert!(
            text.contains("app = \"aiagc\"") && text.contains("# default"),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn delivery_from_the_environment_checked_and_its_secret_hidden() {
        let mut c = Config::default();
        assert!(c.delivery().unwrap().is_none(), "off without a URL");
        c.apply_env(&env(&[
            ("AIAGC_DELIVERY_URL", "https://crm.example/aiagc"),
            ("AIAGC_DELIVERY_SECRET", "hmac-geheim"),
            ("AIAGC_SPOOL_DIR", "/var/spool/aiagc"),
        ]))
        .unwrap();
        c.validate().unwrap();
        let d = c.delivery().unwrap().unwrap();
        assert_eq!(d.url, "https://crm.example/aiagc");
        assert_eq!(d.secret, b"hmac-geheim");
        assert_eq!(d.spool_dir, PathBuf::from("/var/spool/aiagc"));
        assert_eq!(d.backoff_max, Duration::from_secs(300));
        let shown = format!("{c:?} {d:?} {}", c.explain(&Sources::default()));
        assert!(!shown.contains("hmac-geheim"), "{shown}");
        for (key, value, says) in [
            ("url", "\"ftp://x\"", "delivery.url"),
            ("url", "\"crm.example\"", "delivery.url"),
            ("concurrency", "0", "concurrency"),
            ("timeout_ms", "0", "timeout_ms"),
        ] {
            let text = format!("[delivery]\nurl = \"http://h/x\"\n{key} = {value}\n")
                .replace("url = \"http://h/x\"\nurl", "url");
            let c = Config::from_toml(&text).unwrap();
            let err = format!("{:#}", c.validate().unwrap_err());
            assert!(err.contains(says), "{text}: {err}");
        }
        assert!(Config::from_toml("[delivery]\nurl = 5\n").is_err());
        assert!(Config::from_toml("[delivery]\nsecrets = \"x\"\n").is_err());
    }

    #[test]
    fn tools_are_read_checked_and_take_their_credential_from_the_environment() {
        let text = r#"
[[tools]]
name = "book"
url = "https://kalender.example/book"
method = "post"
auth_header = "Authorization"
auth_env = "KALENDER_TOKEN"
parameters = { type = "object", properties = { date = { type = "string" } }, required = ["date"] }
"#;
        let c = Config::from_toml(text).unwrap();
        c.validate().unwrap();
        let specs = c
            .tool_specs(&env(&[("KALENDER_TOKEN", "Bearer k-123")]))
            .unwrap();
        assert_eq!(specs[0].method, "POST");
        assert_eq!(
            specs[0].headers,
            [("Authorization".to_owned(), "Bearer k-123".to_owned())]
        );
        assert_eq!(specs[0].parameters["required"][0], "date");
        let err = format!("{:#}", c.tool_specs(&env(&[])).unwrap_err());
        assert!(err.contains("KALENDER_TOKEN"), "{err}");
        for (bad, says) in [
            (
                text.replace("name = \"book\"", "name = \"hang_up\""),
                "built-in",
            ),
            (text.replace("https://kalender", "ftp://kalender"), "url"),
            (
                text.replace("type = \"object\"", "type = \"array\""),
                "object schema",
            ),
            (
                text.replace("auth_env = \"KALENDER_TOKEN\"\n", ""),
                "auth_env",
            ),
            (format!("{text}timeout_ms = 0\n"), "timeout_ms"),
        ] {
            let err = match Config::from_toml(&bad) {
                Ok(c) => format!("{:#}", c.validate().unwrap_err()),
                Err(e) => format!("{e:#}"),
            };
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert!(
            Config::from_toml("[[tools]]\nname = \"x\"\n").is_err(),
            "url required"
        );
    }

    #[test]
    fn remote_stt_from_the_environment_with_the_key_hidden() {
        let mut c = Config::default();
        c.apply_env(&env(&[
            ("AIAGC_STT", "openai"),
            ("AIAGC_STT_URL", "http://gpu-pool:8000/v1"),
            ("AIAGC_STT_MODEL", "Systran/faster-whisper-large-v3"),
            ("AIAGC_STT_API_KEY", "sk-geheim"),
        ]))
        .unwrap();
        c.validate().unwrap();
        let r = c.stt_remote().unwrap();
        assert_eq!(r.base_url, "http://gpu-pool:8000/v1");
        assert_eq!(r.model, "Systran/faster-whisper-large-v3");
        assert_eq!(r.api_key.as_deref(), Some("sk-geheim"));
        // A remote backend waits on the network: more workers than cores.
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        assert_eq!(c.workers(), cores * 4);
        let shown = format!("{c:?} {r:?} {}", c.explain(&Sources::default()));
        assert!(!shown.contains("sk-geheim"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn drain_target() {
        let c = Config::from_toml("[serve]\ndrain_to = \"incoming-agi, s, 1\"").unwrap();
        assert_eq!(
            c.drain_to().unwrap(),
            Some(("incoming-agi".into(), "s".into(), 1))
        );
        assert_eq!(Config::default().drain_to().unwrap(), None);
    }
}
