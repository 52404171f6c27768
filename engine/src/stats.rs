//! Per-call media counters, kept by [`crate::Call`] and read by the runtime
//! for metrics and the per-call record.

use std::time::Duration;

/// Inbound and outbound counters of one call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallStats {
    /// Datagrams handed to `receive`.
    pub datagrams: u64,
    /// RTP packets accepted into the jitter buffer.
    pub received: u64,
    /// Datagrams that were not valid RTP.
    pub malformed: u64,
    /// Packets with a payload type other than the call's.
    pub payload_type_violations: u64,
    /// Datagrams from an address other than the pinned peer.
    pub source_violations: u64,
    /// Packets of an SSRC that is not the stream's.
    pub foreign_ssrc: u64,
    /// Stream restarts (SSRC change, sequence or timestamp jump).
    pub resyncs: u64,
    /// Timestamp discontinuities seen between consecutive packets.
    pub timestamp_jumps: u64,
    /// Packets given up as lost at playout.
    pub lost: u64,
    /// Packets that arrived after their playout time.
    pub late: u64,
    /// Duplicate packets.
    pub duplicate: u64,
    /// Packets stored out of order.
    pub reordered: u64,
    /// Payloads the codec could not decode.
    pub decode_errors: u64,
    /// 20 ms frames filled by concealment (loss or underrun).
    pub concealed_frames: u64,
    /// Ticks with nothing to play while the sender's stream went on (the
    /// delay grew by one frame). Ticks while the far end sent nothing at
    /// all (a pause; its next timestamp moved on) are not underruns.
    pub underruns: u64,
    /// Packets dropped to shrink the playout delay.
    pub dropped_for_delay: u64,
    /// 20 ms frames handed to the VAD (equals elapsed time / 20 ms).
    pub frames_played: u64,
    /// RFC 3550 interarrival jitter.
    pub jitter: Duration,
    /// Current target playout delay.
    pub target_delay: Duration,
    /// RTP packets sent.
    pub sent: u64,
    /// Sent packets that carried reply audio.
    pub sent_audio: u64,
    /// Outbound ticks skipped because the driver polled too late.
    pub send_ticks_skipped: u64,
    /// Replies cut short by barge-in or `stop_speaking`.
    pub replies_interrupted: u64,
    /// Replies paused by barge-in.
    pub replies_paused: u64,
    /// Paused replies played on.
    pub replies_resumed: u64,
    /// Inbound frames the VAD took for speech that were our own echo.
    pub echo_suppressed: u64,
}
