//! RTP at the wire: parsing inbound datagrams and writing outbound packets
//! with the `rtp` crate's header codec, into caller-owned buffers.
//!
//! Parsing borrows the payload from the datagram (no copy, no allocation
//! unless the packet carries CSRCs or header extensions, which Asterisk's
//! externalMedia does not send).

use rtp::header::Header;
use webrtc_util::marshal::{Marshal, MarshalSize, Unmarshal};

/// Largest payload the engine accepts; bigger datagrams are rejected, so
/// every buffer fed from the network has a fixed bound.
pub const MAX_PAYLOAD: usize = 1500;
/// Fixed RTP header size without CSRCs or extensions.
pub const HEADER_LEN: usize = 12;

/// Why a datagram is not an RTP packet the engine can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than the header it announces.
    #[error("datagram of {0} bytes is shorter than its RTP header")]
    Truncated(usize),
    /// RTP version other than 2.
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    /// Padding count of zero or larger than the payload.
    #[error("padding of {padding} bytes does not fit a {available}-byte payload")]
    BadPadding {
        /// Padding count from the last byte.
        padding: usize,
        /// Bytes after the header.
        available: usize,
    },
    /// Payload over [`MAX_PAYLOAD`].
    #[error("payload of {0} bytes exceeds the {MAX_PAYLOAD}-byte bound")]
    TooLarge(usize),
    /// Output buffer too small for the packet being written.
    #[error("buffer of {0} bytes too small for the packet")]
    BufferTooSmall(usize),
}

/// The fields of an inbound packet the engine uses, payload borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpView<'a> {
    /// Marker bit.
    pub marker: bool,
    /// Payload type.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Payload without padding.
    pub payload: &'a [u8],
}

/// Parses one datagram as RTP (RFC 3550): version, CSRC list, header
/// extension and padding are all checked against the datagram's length.
pub fn parse(datagram: &[u8]) -> Result<RtpView<'_>, PacketError> {
    if datagram.len() < HEADER_LEN {
        return Err(PacketError::Truncated(datagram.len()));
    }
    let version = datagram[0] >> 6;
    if version != 2 {
        return Err(PacketError::BadVersion(version));
    }
    // The crate parses the fixed header and CSRCs. The extension block is
    // skipped here by its length word: we use none of its elements, and the
    // crate's element walk trusts element lengths that can overrun the block.
    let cc = (datagram[0] & 0x0F) as usize;
    let fixed = HEADER_LEN + 4 * cc;
    if datagram.len() < fixed {
        return Err(PacketError::Truncated(datagram.len()));
    }
    let mut head = [0u8; HEADER_LEN + 4 * 15];
    head[..fixed].copy_from_slice(&datagram[..fixed]);
    let has_extension = head[0] & 0x10 != 0;
    head[0] &= !0x10;
    let header = Header::unmarshal(&mut &head[..fixed])
        .map_err(|_| PacketError::Truncated(datagram.len()))?;
    let mut offset = fixed;
    if has_extension {
        if offset + 4 > datagram.len() {
            return Err(PacketError::Truncated(datagram.len()));
        }
        let words = u16::from_be_bytes([datagram[offset + 2], datagram[offset + 3]]) as usize;
        offset += 4 + 4 * words;
    }
    if offset > datagram.len() {
        return Err(PacketError::Truncated(datagram.len()));
    }
    let mut end = datagram.len();
    if header.padding {
        let available = end - offset;
        let padding = datagram[end - 1] as usize;
        if padding == 0 || padding > available {
            return Err(PacketError::BadPadding { padding, available });
        }
        end -= padding;
    }
    if end - offset > MAX_PAYLOAD {
        return Err(PacketError::TooLarge(end - offset));
    }
    Ok(RtpView {
        marker: header.marker,
        payload_type: header.payload_type,
        sequence: header.sequence_number,
        timestamp: header.timestamp,
        ssrc: header.ssrc,
        payload: &datagram[offset..end],
    })
}

/// Sets the marker bit of a packet that [`write`] produced.
pub fn set_marker(packet: &mut [u8]) {
    if let Some(b) = packet.get_mut(1) {
        *b |= 0x80;
    }
}

/// Writes one RTP packet (header by the `rtp` crate, then the payload that
/// `fill` writes) into `buf`, returning its total length.
pub fn write(
    buf: &mut [u8],
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    marker: bool,
    fill: impl FnOnce(&mut [u8]) -> usize,
) -> Result<usize, PacketError> {
    let header = Header {
        version: 2,
        padding: false,
        extension: false,
        marker,
        payload_type,
        sequence_number: sequence,
        timestamp,
        ssrc,
        csrc: Vec::new(),
        extension_profile: 0,
        extensions: Vec::new(),
        extensions_padding: 0,
    };
    let len = header.marshal_size();
    if buf.len() < len {
        return Err(PacketError::BufferTooSmall(buf.len()));
    }
    let written = header
        .marshal_to(&mut buf[..len])
        .map_err(|_| PacketError::BufferTooSmall(buf.len()))?;
    let payload = fill(&mut buf[written..]);
    Ok(written + payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(b0: u8, extra: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut v = vec![b0, 0x80, 0x12, 0x34, 0, 0, 0, 160, 0xde, 0xad, 0xbe, 0xef];
        v.extend_from_slice(extra);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn parses_a_plain_packet() {
        let p = packet(0x80, &[], &[1, 2, 3]);
        let v = parse(&p).unwrap();
        assert!(v.marker);
        assert_eq!(v.payload_type, 0);
        assert_eq!(v.sequence, 0x1234);
        assert_eq!(v.timestamp, 160);
        assert_eq!(v.ssrc, 0xdeadbeef);
        assert_eq!(v.payload, &[1, 2, 3]);
    }

    #[test]
    fn skips_csrcs_and_extension_and_strips_padding() {
        // CC=1, X=1, P=1: one CSRC, a 1-word extension, 2 bytes padding.
        let extra = [0, 0, 0, 9, 0xBE, 0xDE, 0, 1, 0x10, 0xAA, 0, 0];
        let p = packet(0x80 | 0x20 | 0x10 | 0x01, &extra, &[7, 8, 9, 0, 2]);
        let v = parse(&p).unwrap();
        assert_eq!(v.payload, &[7, 8, 9]);
    }

    #[test]
    fn rejects_malformed_datagrams() {
        assert_eq!(parse(&[]), Err(PacketError::Truncated(0)));
        assert_eq!(parse(&[0x80; 11]), Err(PacketError::Truncated(11)));
        assert_eq!(
            parse(&packet(0x40, &[], &[1])),
            Err(PacketError::BadVersion(1))
        );
        // CC=15 announces 60 bytes of CSRC that are not there.
        assert!(matches!(
            parse(&packet(0x8F, &[], &[1, 2])),
            Err(PacketError::Truncated(_))
        ));
        // Extension header announcing 100 words.
        assert!(matches!(
            parse(&packet(0x90, &[0xBE, 0xDE, 0, 100], &[])),
            Err(PacketError::Truncated(_))
        ));
        // A one-byte extension element longer than its block is skipped whole.
        let p = packet(0x90, &[0xBE, 0xDE, 0, 1, 0x1F, 0, 0, 0], &[5]);
        assert_eq!(parse(&p).unwrap().payload, &[5]);
        // Extension flag with no room for the extension header.
        assert!(parse(&packet(0x90, &[], &[0xBE])).is_err());
        // Padding count of zero, and larger than the payload.
        assert!(matches!(
            parse(&packet(0xA0, &[], &[1, 0])),
            Err(PacketError::BadPadding { .. })
        ));
        assert!(matches!(
            parse(&packet(0xA0, &[], &[1, 9])),
            Err(PacketError::BadPadding { .. })
        ));
        // Zero-length payload is a valid packet with an empty payload.
        assert_eq!(parse(&packet(0x80, &[], &[])).unwrap().payload.len(), 0);
        // 64 KiB: oversize payload is refused.
        let mut big = packet(0x80, &[], &[]);
        big.resize(65_535, 0x55);
        assert_eq!(parse(&big), Err(PacketError::TooLarge(65_535 - 12)));
    }

    #[test]
    fn writes_what_it_parses() {
        let mut buf = [0u8; 200];
        let n = write(&mut buf, 118, 65535, 0xFFFF_FF00, 42, true, |p| {
            p[..4].copy_from_slice(&[1, 2, 3, 4]);
            4
        })
        .unwrap();
        assert_eq!(n, 16);
        let v = parse(&buf[..n]).unwrap();
        assert_eq!(
            (v.payload_type, v.sequence, v.timestamp, v.ssrc),
            (118, 65535, 0xFFFF_FF00, 42)
        );
        assert!(v.marker);
        assert_eq!(v.payload, &[1, 2, 3, 4]);
        assert_eq!(
            write(&mut [0u8; 8], 0, 0, 0, 0, false, |_| 0),
            Err(PacketError::BufferTooSmall(8))
        );
    }
}
