//! The ARI REST client: the calls the product makes, typed errors, basic
//! auth, one pooled HTTP client with timeouts.

use crate::model::{Application, AsteriskInfo, Bridge, Channel, Playback, Variable};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Where and how to reach ARI.
#[derive(Clone)]
pub struct AriConfig {
    /// Base URL including the ARI prefix, e.g. `http://127.0.0.1:8088/ari`.
    pub base_url: String,
    /// `ari.conf` user.
    pub username: String,
    /// `ari.conf` password (never printed: see `Debug`).
    pub password: String,
    /// Stasis application name.
    pub app: String,
    /// Per-request timeout.
    pub timeout: Duration,
    /// PEM file with the certificate(s) that sign Asterisk's, for
    /// `https`/`wss` (`None`: the system's roots). Asterisk's name is
    /// checked against it either way.
    pub ca_file: Option<std::path::PathBuf>,
}

impl fmt::Debug for AriConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AriConfig")
            .field("base_url", &self.base_url)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("app", &self.app)
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl AriConfig {
    /// Config for `host:port` with the default `/ari` prefix.
    pub fn new(host: &str, port: u16, username: &str, password: &str, app: &str) -> Self {
        Self {
            base_url: format!("http://{host}:{port}/ari"),
            username: username.to_owned(),
            password: password.to_owned(),
            app: app.to_owned(),
            timeout: Duration::from_secs(5),
            ca_file: None,
        }
    }

    /// The same over TLS (`http.conf` `tlsenable`): ARI at `https://`,
    /// events and media at `wss://`, Asterisk's certificate checked against
    /// `ca_file` (or the system's roots).
    pub fn with_tls(mut self, ca_file: Option<std::path::PathBuf>) -> Self {
        if let Some(rest) = self.base_url.strip_prefix("http://") {
            self.base_url = format!("https://{rest}");
        }
        self.ca_file = ca_file;
        self
    }

    /// Whether ARI is reached over TLS.
    pub fn is_tls(&self) -> bool {
        self.base_url.starts_with("https://")
    }

    fn ca_pem(&self) -> Result<Option<Vec<u8>>, AriError> {
        match &self.ca_file {
            None => Ok(None),
            Some(path) => std::fs::read(path)
                .map(Some)
                .map_err(|e| AriError::Transport(format!("CA file {}: {e}", path.display()))),
        }
    }

    /// The TLS connector for the events and media WebSockets (`None` when
    /// ARI is plain `http`).
    pub fn ws_connector(&self) -> Result<Option<tokio_tungstenite::Connector>, AriError> {
        if !self.is_tls() {
            return Ok(None);
        }
        let bad = |e: native_tls::Error| AriError::Transport(format!("TLS: {e}"));
        let mut builder = native_tls::TlsConnector::builder();
        if let Some(pem) = self.ca_pem()? {
            builder.add_root_certificate(native_tls::Certificate::from_pem(&pem).map_err(bad)?);
        }
        Ok(Some(tokio_tungstenite::Connector::NativeTls(
            builder.build().map_err(bad)?,
        )))
    }

    /// The events WebSocket URL for this app (`ws://…/ari/events?app=…`).
    pub fn events_url(&self) -> String {
        let ws = if let Some(rest) = self.base_url.strip_prefix("https://") {
            format!("wss://{rest}")
        } else {
            format!("ws://{}", self.base_url.trim_start_matches("http://"))
        };
        format!("{ws}/events?app={}&subscribeAll=false", self.app)
    }

    /// Where a `server` WebSocket media connection is taken up:
    /// `ws://…/media/<connection id>`, beside `/ari` under the same HTTP
    /// prefix (`wss` when ARI is `https`).
    pub fn media_url(&self, connection_id: &str) -> String {
        let base = self.base_url.trim_end_matches('/');
        let base = base.strip_suffix("/ari").unwrap_or(base);
        let ws = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else {
            format!("ws://{}", base.trim_start_matches("http://"))
        };
        format!("{ws}/media/{connection_id}")
    }
}

/// An ARI request that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AriError {
    /// 404: the channel, bridge, playback or app does not exist (any more).
    #[error("not found: {0}")]
    NotFound(String),
    /// 409: e.g. the channel is not in a Stasis application.
    #[error("conflict: {0}")]
    Conflict(String),
    /// 401/403: wrong `ari.conf` credentials.
    #[error("unauthorized: check the ARI user and password in ari.conf")]
    Unauthorized,
    /// 400: invalid parameters.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Other 4xx (412 precondition, 422 unprocessable).
    #[error("rejected with {status}: {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Asterisk's message.
        message: String,
    },
    /// 5xx.
    #[error("server error {status}: {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Asterisk's message.
        message: String,
    },
    /// Connection refused, reset, DNS…
    #[error("transport: {0}")]
    Transport(String),
    /// No answer within the timeout.
    #[error("timeout")]
    Timeout,
    /// A success answer whose body is not the expected model.
    #[error("unexpected response body: {0}")]
    Decode(String),
}

impl AriError {
    /// Whether the resource is already gone (for idempotent teardown).
    pub fn is_gone(&self) -> bool {
        matches!(self, AriError::NotFound(_))
            || matches!(self, AriError::BadRequest(m) if m.contains("not found"))
    }
}

/// An error with the errors under it ("error sending request" alone hides
/// a refused certificate or connection).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Largest response body read (bounded: the peer is on the network).
pub const MAX_BODY: usize = 4 << 20;

/// Asterisk puts its reason in `message`, sometimes in `error`.
fn message_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("error"))
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| body.chars().take(200).collect())
}

/// Maps an HTTP status and body to the result of a request.
pub fn classify(status: u16, body: &str) -> Result<(), AriError> {
    let message = || message_of(body);
    match status {
        200..=299 => Ok(()),
        400 => Err(AriError::BadRequest(message())),
        401 | 403 => Err(AriError::Unauthorized),
        404 => Err(AriError::NotFound(message())),
        409 => Err(AriError::Conflict(message())),
        405..=499 => Err(AriError::Rejected {
            status,
            message: message(),
        }),
        _ => Err(AriError::Server {
            status,
            message: message(),
        }),
    }
}

/// Origination parameters (`POST /channels`).
#[derive(Debug, Clone, Default)]
pub struct Originate {
    /// Endpoint to call, e.g. `PJSIP/+4930123@trunk`.
    pub endpoint: String,
    /// Dialplan context (with `extension`/`priority`), or `None` with `app`.
    pub context: Option<String>,
    /// Extension in `context`.
    pub extension: Option<String>,
    /// Priority in `context`.
    pub priority: Option<i64>,
    /// Stasis app to enter on answer (instead of a context).
    pub app: Option<String>,
    /// Arguments for the app.
    pub app_args: Option<String>,
    /// Caller id shown to the callee.
    pub caller_id: Option<String>,
    /// Ring timeout in seconds.
    pub timeout: Option<u32>,
    /// Channel variables.
    pub variables: BTreeMap<String, String>,
    /// Our own id for the channel.
    pub channel_id: Option<String>,
}

/// externalMedia parameters (`POST /channels/externalMedia`).
#[derive(Debug, Clone)]
pub struct ExternalMedia {
    /// Our RTP address as Asterisk should reach it (`host:port`).
    pub external_host: String,
    /// `slin16`, `ulaw`, `alaw`, `opus`.
    pub format: String,
    /// Our id for the channel.
    pub channel_id: Option<String>,
}

/// The ARI REST client.
#[derive(Clone)]
pub struct AriClient {
    http: reqwest::Client,
    config: AriConfig,
}

impl fmt::Debug for AriClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AriClient")
            .field("config", &self.config)
            .finish()
    }
}

type Query<'a> = Vec<(&'a str, String)>;

impl AriClient {
    /// A client for `config` (connections are pooled and reused).
    pub fn new(config: AriConfig) -> Result<Self, AriError> {
        let mut builder = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(3)))
            .pool_max_idle_per_host(16);
        if config.is_tls() {
            if let Some(pem) = config.ca_pem()? {
                let cert = reqwest::Certificate::from_pem(&pem)
                    .map_err(|e| AriError::Transport(format!("CA file: {e}")))?;
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| AriError::Transport(e.to_string()))?;
        Ok(Self { http, config })
    }

    /// The configuration.
    pub fn config(&self) -> &AriConfig {
        &self.config
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &Query<'_>,
        body: Option<serde_json::Value>,
    ) -> Result<String, AriError> {
        let url = format!("{}{}", self.config.base_url, path);
        let mut req = self
            .http
            .request(method, &url)
            .basic_auth(&self.config.username, Some(&self.config.password))
            .query(query);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                AriError::Timeout
            } else {
                AriError::Transport(with_causes(&e.without_url()))
            }
        })?;
        let status = resp.status().as_u16();
        if resp.content_length().is_some_and(|l| l as usize > MAX_BODY) {
            return Err(AriError::Decode(format!("body over {MAX_BODY} bytes")));
        }
        let bytes = resp.bytes().await.map_err(|e| {
            if e.is_timeout() {
                AriError::Timeout
            } else {
                AriError::Transport(e.without_url().to_string())
            }
        })?;
        if bytes.len() > MAX_BODY {
            return Err(AriError::Decode(format!("body over {MAX_BODY} bytes")));
        }
        let body = String::from_utf8_lossy(&bytes).into_owned();
        classify(status, &body)?;
        Ok(body)
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: Query<'_>,
        body: Option<serde_json::Value>,
    ) -> Result<T, AriError> {
        let text = self.send(method, path, &query, body).await?;
        serde_json::from_str(&text).map_err(|e| AriError::Decode(e.to_string()))
    }

    async fn unit(
        &self,
        method: reqwest::Method,
        path: &str,
        query: Query<'_>,
    ) -> Result<(), AriError> {
        self.send(method, path, &query, None).await.map(|_| ())
    }

    /// `GET /asterisk/info`.
    pub async fn info(&self) -> Result<AsteriskInfo, AriError> {
        self.json(reqwest::Method::GET, "/asterisk/info", vec![], None)
            .await
    }

    /// `GET /applications/{app}` for our app.
    pub async fn application(&self) -> Result<Application, AriError> {
        let path = format!("/applications/{}", self.config.app);
        self.json(reqwest::Method::GET, &path, vec![], None).await
    }

    /// `GET /channels`.
    pub async fn channels(&self) -> Result<Vec<Channel>, AriError> {
        self.json(reqwest::Method::GET, "/channels", vec![], None)
            .await
    }

    /// `GET /channels/{id}`.
    pub async fn channel(&self, id: &str) -> Result<Channel, AriError> {
        self.json(
            reqwest::Method::GET,
            &format!("/channels/{id}"),
            vec![],
            None,
        )
        .await
    }

    /// `POST /channels` (originate).
    pub async fn originate(&self, o: &Originate) -> Result<Channel, AriError> {
        let mut q: Query = vec![("endpoint", o.endpoint.clone())];
        let opt = [
            ("context", &o.context),
            ("extension", &o.extension),
            ("app", &o.app),
            ("appArgs", &o.app_args),
            ("callerId", &o.caller_id),
            ("channelId", &o.channel_id),
        ];
        for (k, v) in opt {
            if let Some(v) = v {
                q.push((k, v.clone()));
            }
        }
        if let Some(p) = o.priority {
            q.push(("priority", p.to_string()));
        }
        if let Some(t) = o.timeout {
            q.push(("timeout", t.to_string()));
        }
        let body =
            (!o.variables.is_empty()).then(|| serde_json::json!({ "variables": o.variables }));
        self.json(reqwest::Method::POST, "/channels", q, body).await
    }

    /// Dials `endpoint`; when it answers, the channel runs
    /// `context,extension,1` (e.g. `outbound-calls-ari`, which enters
    /// `Stasis(aiagc)`). Returns the new channel's id.
    pub async fn originate_call(
        &self,
        endpoint: &str,
        context: &str,
        extension: &str,
    ) -> Result<String, AriError> {
        let o = Originate {
            endpoint: endpoint.to_owned(),
            context: Some(context.to_owned()),
            extension: Some(extension.to_owned()),
            priority: Some(1),
            ..Originate::default()
        };
        Ok(self.originate(&o).await?.id)
    }

    /// `POST /channels/{id}/answer`.
    pub async fn answer(&self, id: &str) -> Result<(), AriError> {
        self.unit(
            reqwest::Method::POST,
            &format!("/channels/{id}/answer"),
            vec![],
        )
        .await
    }

    /// `DELETE /channels/{id}?reason=…` (`normal`, `busy`, `congestion`, …).
    pub async fn hangup(&self, id: &str, reason: &str) -> Result<(), AriError> {
        self.unit(
            reqwest::Method::DELETE,
            &format!("/channels/{id}"),
            vec![("reason", reason.to_owned())],
        )
        .await
    }

    /// `POST /channels/externalMedia` with RTP over UDP, both directions.
    pub async fn external_media(&self, m: &ExternalMedia) -> Result<Channel, AriError> {
        let mut q: Query = vec![
            ("app", self.config.app.clone()),
            ("external_host", m.external_host.clone()),
            ("format", m.format.clone()),
            ("encapsulation", "rtp".to_owned()),
            ("transport", "udp".to_owned()),
            ("direction", "both".to_owned()),
        ];
        if let Some(id) = &m.channel_id {
            q.push(("channelId", id.clone()));
        }
        self.json(reqwest::Method::POST, "/channels/externalMedia", q, None)
            .await
    }

    /// `POST /channels/externalMedia` over Asterisk's WebSocket media
    /// channel, Asterisk listening (`connection_type=server`): the answer's
    /// [`Channel::media_connection_id`] names the connection to open at
    /// [`AriConfig::media_url`]. Control messages in JSON (`f(json)`).
    pub async fn external_media_websocket(
        &self,
        format: &str,
        channel_id: Option<&str>,
    ) -> Result<Channel, AriError> {
        let mut q: Query = vec![
            ("app", self.config.app.clone()),
            ("format", format.to_owned()),
            ("encapsulation", "none".to_owned()),
            ("transport", "websocket".to_owned()),
            ("connection_type", "server".to_owned()),
            ("transport_data", "f(json)".to_owned()),
        ];
        if let Some(id) = channel_id {
            q.push(("channelId", id.to_owned()));
        }
        self.json(reqwest::Method::POST, "/channels/externalMedia", q, None)
            .await
    }

    /// `POST /channels/{id}/continue`: leave Stasis into the dialplan
    /// (transfer to a human queue, for instance).
    pub async fn continue_in_dialplan(
        &self,
        id: &str,
        context: &str,
        extension: &str,
        priority: i64,
    ) -> Result<(), AriError> {
        let q = vec![
            ("context", context.to_owned()),
            ("extension", extension.to_owned()),
            ("priority", priority.to_string()),
        ];
        self.unit(
            reqwest::Method::POST,
            &format!("/channels/{id}/continue"),
            q,
        )
        .await
    }

    /// `POST /channels/{id}/dtmf?dtmf=…`: plays tones into the channel
    /// (`0-9*#A-D`, `,` a pause), e.g. to an IVR the call reached.
    pub async fn send_dtmf(&self, id: &str, digits: &str) -> Result<(), AriError> {
        self.unit(
            reqwest::Method::POST,
            &format!("/channels/{id}/dtmf"),
            vec![("dtmf", digits.to_owned())],
        )
        .await
    }

    /// `POST /channels/{id}/redirect?endpoint=…`.
    pub async fn redirect(&self, id: &str, endpoint: &str) -> Result<(), AriError> {
        self.unit(
            reqwest::Method::POST,
            &format!("/channels/{id}/redirect"),
            vec![("endpoint", endpoint.to_owned())],
        )
        .await
    }

    /// `POST /channels/{id}/play?media=…&lang=…` (`sound:…`, `recording:…`).
    pub async fn play(
        &self,
        id: &str,
        media: &str,
        lang: Option<&str>,
    ) -> Result<Playback, AriError> {
        let mut q: Query = vec![("media", media.to_owned())];
        if let Some(l) = lang {
            q.push(("lang", l.to_owned()));
        }
        self.json(
            reqwest::Method::POST,
            &format!("/channels/{id}/play"),
            q,
            None,
        )
        .await
    }

    /// `POST /channels/{id}/snoop?spy=…&app=…`: a channel in `app` that
    /// hears `id` (`spy`: `in` = what the channel receives from its peer,
    /// `out` = what is sent to it, `both`). For recording what a caller
    /// hears, e.g. in quality checks and tests.
    pub async fn snoop(&self, id: &str, spy: &str, app: &str) -> Result<Channel, AriError> {
        let q = vec![("spy", spy.to_owned()), ("app", app.to_owned())];
        self.json(
            reqwest::Method::POST,
            &format!("/channels/{id}/snoop"),
            q,
            None,
        )
        .await
    }

    /// `POST /channels/{id}/record?name=…&format=…&maxDurationSeconds=…`:
    /// records the channel into Asterisk's recordings folder.
    pub async fn record(
        &self,
        id: &str,
        name: &str,
        format: &str,
        max_seconds: u32,
    ) -> Result<(), AriError> {
        let q = vec![
            ("name", name.to_owned()),
            ("format", format.to_owned()),
            ("maxDurationSeconds", max_seconds.to_string()),
            ("ifExists", "overwrite".to_owned()),
        ];
        self.send(
            reqwest::Method::POST,
            &format!("/channels/{id}/record"),
            &q,
            None,
        )
        .await
        .map(|_| ())
    }

    /// `DELETE /playbacks/{id}`.
    pub async fn stop_playback(&self, id: &str) -> Result<(), AriError> {
        self.unit(reqwest::Method::DELETE, &format!("/playbacks/{id}"), vec![])
            .await
    }

    /// `GET /channels/{id}/variable?variable=…`.
    pub async fn get_variable(&self, id: &str, name: &str) -> Result<String, AriError> {
        let v: Variable = self
            .json(
                reqwest::Method::GET,
                &format!("/channels/{id}/variable"),
                vec![("variable", name.to_owned())],
                None,
            )
            .await?;
        Ok(v.value)
    }

    /// `POST /channels/{id}/variable?variable=…&value=…`.
    pub async fn set_variable(&self, id: &str, name: &str, value: &str) -> Result<(), AriError> {
        let q = vec![("variable", name.to_owned()), ("value", value.to_owned())];
        self.unit(
            reqwest::Method::POST,
            &format!("/channels/{id}/variable"),
            q,
        )
        .await
    }

    /// `POST /bridges?type=mixing`.
    pub async fn create_bridge(&self, name: Option<&str>) -> Result<Bridge, AriError> {
        let mut q: Query = vec![("type", "mixing".to_owned())];
        if let Some(n) = name {
            q.push(("name", n.to_owned()));
        }
        self.json(reqwest::Method::POST, "/bridges", q, None).await
    }

    /// `GET /bridges`.
    pub async fn bridges(&self) -> Result<Vec<Bridge>, AriError> {
        self.json(reqwest::Method::GET, "/bridges", vec![], None)
            .await
    }

    /// `POST /bridges/{id}/addChannel?channel=…`.
    pub async fn add_channel(&self, bridge: &str, channel: &str) -> Result<(), AriError> {
        self.unit(
            reqwest::Method::POST,
            &format!("/bridges/{bridge}/addChannel"),
            vec![("channel", channel.to_owned())],
        )
        .await
    }

    /// [`AriClient::add_channel`] for a channel that was just created and
    /// is still on its way into Stasis: Asterisk answers the externalMedia
    /// request before that channel has entered the app, and an
    /// `addChannel` right after it can meet 422 "Channel not in Stasis
    /// application" (seen on 22.10.1 when `aiagc check` ran twice in a
    /// row). Retried for up to about a second; any other error at once.
    pub async fn add_new_channel(&self, bridge: &str, channel: &str) -> Result<(), AriError> {
        let mut attempt = 0u32;
        loop {
            match self.add_channel(bridge, channel).await {
                Err(AriError::Rejected {
                    status: 422,
                    message,
                }) if attempt < 8 && message.contains("not in Stasis") => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(15 << attempt.min(5)))
                        .await;
                }
                other => return other,
            }
        }
    }

    /// `POST /bridges/{id}/removeChannel?channel=…`.
    pub async fn remove_channel(&self, bridge: &str, channel: &str) -> Result<(), AriError> {
        self.unit(
            reqwest::Method::POST,
            &format!("/bridges/{bridge}/removeChannel"),
            vec![("channel", channel.to_owned())],
        )
        .await
    }

    /// `DELETE /bridges/{id}`.
    pub async fn destroy_bridge(&self, id: &str) -> Result<(), AriError> {
        self.unit(reqwest::Method::DELETE, &format!("/bridges/{id}"), vec![])
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error answers observed on a real Asterisk 22 (shared/asterisk/README.md).
    #[test]
    fn classifies_the_answers_asterisk_gives() {
        assert_eq!(
            classify(404, r#"{"message":"Channel not found"}"#),
            Err(AriError::NotFound("Channel not found".into()))
        );
        let e = classify(400, r#"{"message":"Channel not found"}"#).unwrap_err();
        assert!(e.is_gone());
        assert_eq!(
            classify(500, r#"{"error":"Allocation failed"}"#),
            Err(AriError::Server {
                status: 500,
                message: "Allocation failed".into()
            })
        );
        assert_eq!(
            classify(401, r#"{"message":"Authentication required"}"#),
            Err(AriError::Unauthorized)
        );
        assert_eq!(
            classify(409, r#"{"message":"Channel not in Stasis application"}"#),
            Err(AriError::Conflict(
                "Channel not in Stasis application".into()
            ))
        );
        assert_eq!(
            classify(422, "plain text"),
            Err(AriError::Rejected {
                status: 422,
                message: "plain text".into()
            })
        );
        assert_eq!(
            classify(503, "<html>"),
            Err(AriError::Server {
                status: 503,
                message: "<html>".into()
            })
        );
        assert_eq!(classify(204, ""), Ok(()));
    }

    #[test]
    fn password_never_shows_in_debug_output() {
        let c = AriConfig::new("127.0.0.1", 8088, "aiagc", "s3cr3t-pw", "aiagc");
        let client = AriClient::new(c.clone()).unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t-pw"));
        assert!(!format!("{client:?}").contains("s3cr3t-pw"));
        assert_eq!(
            c.events_url(),
            "ws://127.0.0.1:8088/ari/events?app=aiagc&subscribeAll=false"
        );
    }
}
