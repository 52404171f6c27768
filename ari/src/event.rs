//! Events from the ARI WebSocket, typed for the ones aiagc acts on and
//! kept raw for the rest.
//!
//! [`decode`] never panics and never loses a frame silently: a frame that
//! is not JSON or lacks `type` is an [`EventError`]; a known type whose
//! fields do not fit is an error naming the type; an unknown type becomes
//! [`Event::Unknown`] with its raw JSON.

use crate::model::{Bridge, Channel, Playback};
use serde::Deserialize;

/// Largest event frame accepted (Asterisk's are a few kB).
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// A decoded ARI event.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// A channel entered the app.
    StasisStart {
        /// Stasis arguments from the dialplan or origination.
        #[serde(default)]
        args: Vec<String>,
        /// The channel.
        channel: Channel,
        /// The channel it replaces (masquerade), if any.
        #[serde(default)]
        replace_channel: Option<Channel>,
    },
    /// A channel left the app.
    StasisEnd {
        /// The channel.
        channel: Channel,
    },
    /// Channel state changed (`Ringing`, `Up`, …).
    ChannelStateChange {
        /// The channel.
        channel: Channel,
    },
    /// A DTMF digit.
    ChannelDtmfReceived {
        /// Digit: 0-9, A-E, `#`, `*`.
        digit: String,
        /// Duration.
        #[serde(default)]
        duration_ms: i64,
        /// The channel.
        channel: Channel,
    },
    /// Hangup requested.
    ChannelHangupRequest {
        /// Cause code.
        #[serde(default)]
        cause: Option<i64>,
        /// Soft hangup.
        #[serde(default)]
        soft: Option<bool>,
        /// The channel.
        channel: Channel,
    },
    /// Channel gone.
    ChannelDestroyed {
        /// Cause code.
        #[serde(default)]
        cause: i64,
        /// Cause text.
        #[serde(default)]
        cause_txt: String,
        /// The channel.
        channel: Channel,
    },
    /// Channel joined a bridge.
    ChannelEnteredBridge {
        /// The bridge.
        bridge: Bridge,
        /// The channel.
        #[serde(default)]
        channel: Option<Channel>,
    },
    /// Channel left a bridge.
    ChannelLeftBridge {
        /// The bridge.
        bridge: Bridge,
        /// The channel.
        channel: Channel,
    },
    /// A channel variable was set.
    ChannelVarset {
        /// Variable name.
        variable: String,
        /// New value.
        #[serde(default)]
        value: String,
        /// The channel (absent for global variables).
        #[serde(default)]
        channel: Option<Channel>,
    },
    /// Dialplan location changed.
    ChannelDialplan {
        /// The channel.
        channel: Channel,
        /// Application.
        #[serde(default)]
        dialplan_app: String,
        /// Its data.
        #[serde(default)]
        dialplan_app_data: String,
    },
    /// A playback started.
    PlaybackStarted {
        /// The playback.
        playback: Playback,
    },
    /// A playback finished.
    PlaybackFinished {
        /// The playback.
        playback: Playback,
    },
    /// Dialing state of an originated or dialled channel.
    Dial {
        /// The dialled channel.
        peer: Channel,
        /// The calling channel.
        #[serde(default)]
        caller: Option<Channel>,
        /// Status (`ANSWER`, `BUSY`, … or empty while ringing).
        #[serde(default)]
        dialstatus: String,
        /// Dial string.
        #[serde(default)]
        dialstring: Option<String>,
    },
    /// A bridge was destroyed.
    BridgeDestroyed {
        /// The bridge.
        bridge: Bridge,
    },
    /// Any other event type, kept raw.
    #[serde(skip)]
    Unknown {
        /// Its `type`.
        kind: String,
        /// The whole event.
        raw: serde_json::Value,
    },
}

/// Types decoded into their own variant.
pub const KNOWN_TYPES: &[&str] = &[
    "StasisStart",
    "StasisEnd",
    "ChannelStateChange",
    "ChannelDtmfReceived",
    "ChannelHangupRequest",
    "ChannelDestroyed",
    "ChannelEnteredBridge",
    "ChannelLeftBridge",
    "ChannelVarset",
    "ChannelDialplan",
    "PlaybackStarted",
    "PlaybackFinished",
    "Dial",
    "BridgeDestroyed",
];

/// Why a frame is not an event.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Over [`MAX_EVENT_BYTES`].
    #[error("event frame of {0} bytes exceeds the bound")]
    TooLarge(usize),
    /// Not a JSON object.
    #[error("event frame is not JSON: {0}")]
    NotJson(String),
    /// No string `type`.
    #[error("event without a type")]
    NoType,
    /// A known type with fields that do not fit.
    #[error("malformed {kind} event: {message}")]
    Malformed {
        /// The event type.
        kind: String,
        /// serde's message.
        message: String,
    },
}

/// Envelope fields every event carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    /// Application the event is for.
    pub application: String,
    /// Event time.
    pub timestamp: String,
    /// Asterisk instance.
    pub asterisk_id: String,
}

/// Decodes one WebSocket text frame.
pub fn decode(frame: &str) -> Result<(Event, Envelope), EventError> {
    if frame.len() > MAX_EVENT_BYTES {
        return Err(EventError::TooLarge(frame.len()));
    }
    let value: serde_json::Value =
        serde_json::from_str(frame).map_err(|e| EventError::NotJson(e.to_string()))?;
    decode_value(value)
}

/// Decodes one event already parsed as JSON.
pub fn decode_value(value: serde_json::Value) -> Result<(Event, Envelope), EventError> {
    let kind = value
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or(EventError::NoType)?
        .to_owned();
    let field = |name: &str| {
        value
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let envelope = Envelope {
        application: field("application"),
        timestamp: field("timestamp"),
        asterisk_id: field("asterisk_id"),
    };
    if !KNOWN_TYPES.contains(&kind.as_str()) {
        return Ok((Event::Unknown { kind, raw: value }, envelope));
    }
    let event = Event::deserialize(&value).map_err(|e| EventError::Malformed {
        kind,
        message: e.to_string(),
    })?;
    Ok((event, envelope))
}

impl Event {
    /// The channel the event is about, if any.
    pub fn channel(&self) -> Option<&Channel> {
        match self {
            Event::StasisStart { channel, .. }
            | Event::StasisEnd { channel }
            | Event::ChannelStateChange { channel }
            | Event::ChannelDtmfReceived { channel, .. }
            | Event::ChannelHangupRequest { channel, .. }
            | Event::ChannelDestroyed { channel, .. }
            | Event::ChannelLeftBridge { channel, .. }
            | Event::ChannelDialplan { channel, .. } => Some(channel),
            Event::ChannelEnteredBridge { channel, .. } | Event::ChannelVarset { channel, .. } => {
                channel.as_ref()
            }
            Event::Dial { peer, .. } => Some(peer),
            _ => None,
        }
    }

    /// The event's type name.
    pub fn kind(&self) -> &str {
        match self {
            Event::Unknown { kind, .. } => kind,
            Event::StasisStart { .. } => "StasisStart",
            Event::StasisEnd { .. } => "StasisEnd",
            Event::ChannelStateChange { .. } => "ChannelStateChange",
            Event::ChannelDtmfReceived { .. } => "ChannelDtmfReceived",
            Event::ChannelHangupRequest { .. } => "ChannelHangupRequest",
            Event::ChannelDestroyed { .. } => "ChannelDestroyed",
            Event::ChannelEnteredBridge { .. } => "ChannelEnteredBridge",
            Event::ChannelLeftBridge { .. } => "ChannelLeftBridge",
            Event::ChannelVarset { .. } => "ChannelVarset",
            Event::ChannelDialplan { .. } => "ChannelDialplan",
            Event::PlaybackStarted { .. } => "PlaybackStarted",
            Event::PlaybackFinished { .. } => "PlaybackFinished",
            Event::Dial { .. } => "Dial",
            Event::BridgeDestroyed { .. } => "BridgeDestroyed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captures() -> Vec<serde_json::Value> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/ari");
        let mut all = Vec::new();
        for name in ["events_ulaw.json", "events_slin16.json", "events_dtmf.json"] {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            let v: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
            all.extend(v);
        }
        all
    }

    /// Every event a real Asterisk 22 sent during the captured calls decodes,
    /// known types into their variant.
    #[test]
    fn every_captured_event_decodes() {
        let events = captures();
        assert!(events.len() > 60);
        for raw in events {
            let kind = raw["type"].as_str().unwrap().to_owned();
            let (event, env) = decode(&raw.to_string()).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(event.kind(), kind);
            assert_eq!(env.application, "aiagc");
            assert_eq!(
                KNOWN_TYPES.contains(&kind.as_str()),
                !matches!(event, Event::Unknown { .. })
            );
        }
    }

    #[test]
    fn captured_call_facts_hold() {
        let events: Vec<Event> = captures()
            .into_iter()
            .map(|v| decode_value(v).unwrap().0)
            .collect();
        let starts: Vec<&Channel> = events
            .iter()
            .filter_map(|e| match e {
                Event::StasisStart { channel, .. } => Some(channel),
                _ => None,
            })
            .collect();
        // Each captured call has a caller and an externalMedia channel entering the app.
        assert!(starts.iter().any(|c| c.is_external_media()));
        assert!(starts.iter().any(|c| !c.is_external_media()));
        let digits: String = events
            .iter()
            .filter_map(|e| match e {
                Event::ChannelDtmfReceived { digit, .. } => Some(digit.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(digits, "12#");
    }

    #[test]
    fn malformed_frames_are_errors_and_unknown_types_are_kept() {
        assert!(matches!(decode("not json"), Err(EventError::NotJson(_))));
        assert!(matches!(
            decode("{\"channel\":{}}"),
            Err(EventError::NoType)
        ));
        assert!(matches!(decode("{\"type\":7}"), Err(EventError::NoType)));
        let e = decode("{\"type\":\"StasisStart\",\"channel\":{\"name\":\"x\"}}").unwrap_err();
        assert!(e.to_string().contains("StasisStart"), "{e}");
        let (event, _) = decode("{\"type\":\"ChannelTalkingStarted\",\"x\":1}").unwrap();
        assert!(
            matches!(event, Event::Unknown { ref kind, .. } if kind == "ChannelTalkingStarted")
        );
        let big = format!(
            "{{\"type\":\"X\",\"pad\":\"{}\"}}",
            "a".repeat(MAX_EVENT_BYTES)
        );
        assert!(matches!(decode(&big), Err(EventError::TooLarge(_))));
    }

    #[test]
    fn external_media_peer_comes_from_channelvars() {
        let json = r#"{"id":"1.2","name":"UnicastRTP/127.0.0.1:49132-0x1","channelvars":{"UNICASTRTP_LOCAL_ADDRESS":"127.0.0.1","UNICASTRTP_LOCAL_PORT":"17388"}}"#;
        let c: Channel = serde_json::from_str(json).unwrap();
        assert!(c.is_external_media());
        assert_eq!(
            c.unicast_rtp_peer(),
            Some("127.0.0.1:17388".parse().unwrap())
        );
        let bad: Channel = serde_json::from_str(r#"{"id":"1","channelvars":{"UNICASTRTP_LOCAL_ADDRESS":"x","UNICASTRTP_LOCAL_PORT":"1"}}"#).unwrap();
        assert_eq!(bad.unicast_rtp_peer(), None);
    }
}
