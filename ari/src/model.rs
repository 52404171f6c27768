//! ARI resource models (Asterisk 22 `api-docs/`), the subset the product
//! uses, with the field names of the resource description. Fields the
//! description marks optional are `Option`; everything tolerates extra
//! fields, so newer Asterisk versions still decode.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `CallerID`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CallerId {
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Number.
    #[serde(default)]
    pub number: String,
}

/// `DialplanCEP`: context, extension, priority.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DialplanCep {
    /// Context.
    #[serde(default)]
    pub context: String,
    /// Extension.
    #[serde(default)]
    pub exten: String,
    /// Priority.
    #[serde(default)]
    pub priority: i64,
    /// Application running.
    #[serde(default)]
    pub app_name: String,
    /// Its arguments.
    #[serde(default)]
    pub app_data: String,
}

/// `Channel`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Channel {
    /// Unique id (`1795522994.0`).
    pub id: String,
    /// Channel name (`PJSIP/…`, `UnicastRTP/127.0.0.1:PORT-0x…`).
    #[serde(default)]
    pub name: String,
    /// State (`Down`, `Ring`, `Ringing`, `Up`, …).
    #[serde(default)]
    pub state: String,
    /// Protocol id (SIP Call-ID).
    #[serde(default)]
    pub protocol_id: String,
    /// Caller.
    #[serde(default)]
    pub caller: CallerId,
    /// Connected party.
    #[serde(default)]
    pub connected: CallerId,
    /// Account code.
    #[serde(default)]
    pub accountcode: String,
    /// Dialplan location.
    #[serde(default)]
    pub dialplan: DialplanCep,
    /// Creation time.
    #[serde(default)]
    pub creationtime: String,
    /// Language.
    #[serde(default)]
    pub language: String,
    /// Channel variables requested at creation (externalMedia reports
    /// `UNICASTRTP_LOCAL_ADDRESS`/`_PORT` here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channelvars: Option<BTreeMap<String, String>>,
}

impl Channel {
    /// Whether the channel is running `Stasis(app, …)` now. Asterisk's
    /// `GET /applications/{app}` also lists channels the app is merely
    /// subscribed to (the `;2` half of a `Local/` channel it originated,
    /// which runs the dialplan): those are not calls of the app.
    pub fn in_stasis(&self, app: &str) -> bool {
        self.dialplan.app_name.eq_ignore_ascii_case("Stasis")
            && self.dialplan.app_data.split(',').next().map(str::trim) == Some(app)
    }

    /// Whether this is an externalMedia (UnicastRTP) channel, which enters
    /// the app too but is never a caller.
    pub fn is_external_media(&self) -> bool {
        self.name.starts_with("UnicastRTP/") || self.name.starts_with("WebSocket/")
    }

    /// The connection id of a WebSocket media channel Asterisk listens for
    /// (`MEDIA_WEBSOCKET_CONNECTION_ID`): a UUID, the path under `/media/`,
    /// so anything else in it is refused rather than put into a URL.
    pub fn media_connection_id(&self) -> Option<&str> {
        self.channelvars
            .as_ref()?
            .get(crate::media_ws::CONNECTION_ID_VAR)
            .map(String::as_str)
            .filter(|id| {
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    }

    /// The address Asterisk sends RTP from and expects ours at.
    pub fn unicast_rtp_peer(&self) -> Option<std::net::SocketAddr> {
        let vars = self.channelvars.as_ref()?;
        let ip: std::net::IpAddr = vars.get("UNICASTRTP_LOCAL_ADDRESS")?.parse().ok()?;
        let port: u16 = vars.get("UNICASTRTP_LOCAL_PORT")?.parse().ok()?;
        Some(std::net::SocketAddr::new(ip, port))
    }
}

/// `Bridge`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Bridge {
    /// Unique id (a UUID).
    pub id: String,
    /// Technology (`simple_bridge`, `softmix`).
    #[serde(default)]
    pub technology: String,
    /// Type (`mixing`, `holding`).
    #[serde(default)]
    pub bridge_type: String,
    /// Class (`stasis`).
    #[serde(default)]
    pub bridge_class: String,
    /// Creator.
    #[serde(default)]
    pub creator: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Member channel ids.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Creation time.
    #[serde(default)]
    pub creationtime: String,
    /// Video mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_mode: Option<String>,
}

/// `Application`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Application {
    /// Name.
    pub name: String,
    /// Channels in the app.
    #[serde(default)]
    pub channel_ids: Vec<String>,
    /// Bridges of the app.
    #[serde(default)]
    pub bridge_ids: Vec<String>,
    /// Subscribed endpoints.
    #[serde(default)]
    pub endpoint_ids: Vec<String>,
    /// Subscribed devices.
    #[serde(default)]
    pub device_names: Vec<String>,
    /// Event filter (allowed).
    #[serde(default)]
    pub events_allowed: Vec<serde_json::Value>,
    /// Event filter (disallowed).
    #[serde(default)]
    pub events_disallowed: Vec<serde_json::Value>,
}

/// `BuildInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BuildInfo {
    /// OS.
    #[serde(default)]
    pub os: String,
    /// Kernel.
    #[serde(default)]
    pub kernel: String,
    /// Build options.
    #[serde(default)]
    pub options: String,
    /// Machine.
    #[serde(default)]
    pub machine: String,
    /// Build date.
    #[serde(default)]
    pub date: String,
    /// Builder.
    #[serde(default)]
    pub user: String,
}

/// `SystemInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SystemInfo {
    /// Asterisk version (`22.10.1`).
    pub version: String,
    /// Entity id.
    #[serde(default)]
    pub entity_id: String,
}

/// `AsteriskInfo` (`GET /asterisk/info`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AsteriskInfo {
    /// Build information.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildInfo>,
    /// System information.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemInfo>,
}

/// `Variable` (`GET /channels/{id}/variable`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Variable {
    /// Value.
    pub value: String,
}

/// `Playback`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Playback {
    /// Id.
    pub id: String,
    /// Media URI (`sound:…`, `recording:…`).
    #[serde(default)]
    pub media_uri: String,
    /// Target URI (`channel:…`).
    #[serde(default)]
    pub target_uri: String,
    /// Language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// State (`queued`, `playing`, `done`, …).
    #[serde(default)]
    pub state: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(name: &str, app_name: &str, app_data: &str) -> Channel {
        serde_json::from_value(serde_json::json!({
            "id": "1795522994.0", "name": name, "state": "Up",
            "dialplan": {"context": "c", "exten": "s", "priority": 1,
                         "app_name": app_name, "app_data": app_data}
        }))
        .unwrap()
    }

    /// What a real Asterisk lists in `GET /applications/aiagc` during a
    /// call originated into the app (seen on 22.10.1): only the `;1` half
    /// is in Stasis; the `;2` half runs the dialplan.
    #[test]
    fn only_channels_running_our_stasis_app_are_ours() {
        let one = channel("Local/s@caller-00000000;1", "Stasis", "aiagc,inbound");
        let two = channel("Local/s@caller-00000000;2", "Record", "/tmp/x.wav,0,9,qkx");
        let em = channel("UnicastRTP/127.0.0.1:35030-0x7f", "Stasis", "aiagc");
        let other = channel("PJSIP/trunk-1", "Stasis", "aiagc-loadtest");
        assert!(one.in_stasis("aiagc"));
        assert!(!two.in_stasis("aiagc"));
        assert!(em.in_stasis("aiagc") && em.is_external_media());
        assert!(!other.in_stasis("aiagc") && other.in_stasis("aiagc-loadtest"));
    }
}
