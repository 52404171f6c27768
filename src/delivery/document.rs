//! The post-call document (`schema: "aiagc.call/1"`): what an operator's
//! system needs to act on a call without reading our logs — who called,
//! when, what was said and answered turn by turn with each turn's latency,
//! what the call achieved and with which values, and where its files are.

use super::spool::new_key;
use crate::runtime::media::CallSummary;
use serde_json::{json, Value};
use std::time::SystemTime;

/// The schema name receivers can switch on.
pub const SCHEMA: &str = "aiagc.call/1";

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// The document of a finished call and its idempotency key.
pub fn build(s: &CallSummary) -> (String, Vec<u8>) {
    let key = new_key(&s.call, s.started);
    let body = serde_json::to_vec(&value(s, &key)).unwrap_or_default();
    (key, body)
}

/// The document as JSON (`key` is its idempotency key).
pub fn value(s: &CallSummary, key: &str) -> Value {
    let slots = s
        .turns
        .iter()
        .rev()
        .find(|t| !t.slots.is_empty())
        .map(|t| json!(t.slots))
        .unwrap_or_else(|| json!({}));
    let turns: Vec<Value> = s
        .turns
        .iter()
        .map(|t| {
            json!({
                "turn": t.turn,
                "input": t.input,
                "transcript": t.transcript,
                "reply": t.reply,
                "action": t.action,
                "outcome": t.outcome,
                "interrupted": t.interrupted,
                "latency_ms": {
                    "speech_end_to_reply": t.from_speech_end.map(ms),
                    // Over the WebSocket: when Asterisk began to play it.
                    "speech_end_to_heard": t.heard_after.map(ms),
                    "handover_to_reply": t.to_first_packet.map(ms),
                    "stt": ms(t.stt),
                    "dialogue": ms(t.dialogue),
                    "tts_first_audio": ms(t.tts_first_audio),
                },
            })
        })
        .collect();
    let duration = s
        .ended
        .duration_since(s.started)
        .map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0)
        .unwrap_or(0.0);
    json!({
        "schema": SCHEMA,
        "key": key,
        "call": s.call,
        "caller": {"number": s.party.number, "name": s.party.name},
        "dialled": {"context": s.party.context, "exten": s.party.exten},
        "started_at": rfc3339(s.started),
        "ended_at": rfc3339(s.ended),
        "duration_s": duration,
        "outcome": s.outcome,
        "ended_by": s.ended_by,
        "answered_by": s.answered_by.as_ref().map(|(who, cause)| json!({"answered": who, "cause": cause})),
        "slots": slots,
        "dtmf": s.dtmf,
        "barge_ins": s.barge_ins.len(),
        "fillers": s.fillers,
        "turns": turns,
        "rtp": {
            "received": s.rtp.received,
            "lost": s.rtp.lost,
            "late": s.rtp.late,
            "concealed_frames": s.rtp.concealed_frames,
            "sent": s.rtp.sent,
            "jitter_ms": ms(s.rtp.jitter),
        },
        "files": s.files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    })
}
