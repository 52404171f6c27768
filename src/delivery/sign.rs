//! Signatures on delivered documents: `X-Aiagc-Signature: t=UNIX,v1=HEX`,
//! HEX being HMAC-SHA256 with the shared secret over `UNIX.` followed by
//! the body. The timestamp is the send time of each attempt, so a receiver
//! can refuse old replays while the body (and the idempotency key) stay the
//! same on every retry.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const HEADER: &str = "x-aiagc-signature";

/// Why a signature does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The header is not `t=…,v1=…`.
    #[error("malformed signature header: {0}")]
    Malformed(String),
    /// The timestamp is too far from now.
    #[error("signature timestamp {at} is {off} s away from now (tolerance {tolerance} s)")]
    Stale {
        /// The signed time.
        at: u64,
        /// Its distance from now, s.
        off: u64,
        /// The accepted distance, s.
        tolerance: u64,
    },
    /// The MAC does not match the body.
    #[error("signature does not match the body")]
    Mismatch,
}

fn mac(secret: &[u8], at: u64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    m.update(at.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The header value for `body` sent at `at` (Unix seconds).
pub fn sign(secret: &[u8], at: u64, body: &[u8]) -> String {
    let tag = mac(secret, at, body).finalize().into_bytes();
    format!("t={at},v1={}", hex::encode(tag))
}

/// Checks a header value against `body`, accepting timestamps within
/// `tolerance` seconds of `now` (the comparison of the MAC is constant-time).
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: u64,
    tolerance: u64,
) -> Result<(), SignatureError> {
    let malformed = || SignatureError::Malformed(header.chars().take(80).collect());
    let mut at = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => at = Some(v.parse::<u64>().map_err(|_| malformed())?),
            Some(("v1", v)) => tags.push(hex::decode(v).map_err(|_| malformed())?),
            // Later schemes may be added beside v1.
            Some(_) => {}
            None => return Err(malformed()),
        }
    }
    let at = at.ok_or_else(malformed)?;
    if tags.is_empty() {
        return Err(malformed());
    }
    let off = now.abs_diff(at);
    if off > tolerance {
        return Err(SignatureError::Stale { at, off, tolerance });
    }
    if tags
        .iter()
        .any(|t| mac(secret, at, body).verify_slice(t).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let h = sign(b"geheim", 1_800_000_000, b"{\"a\":1}");
        assert!(h.starts_with("t=1800000000,v1="));
        assert_eq!(h.len(), "t=1800000000,v1=".len() + 64);
        assert_eq!(
            verify(b"geheim", &h, b"{\"a\":1}", 1_800_000_100, 300),
            Ok(())
        );
        assert_eq!(
            verify(b"geheim", &h, b"{\"a\":2}", 1_800_000_000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"anders", &h, b"{\"a\":1}", 1_800_000_000, 300),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed: moving it breaks the MAC.
        let moved = h.replace("t=1800000000", "t=1800000001");
        assert_eq!(
            verify(b"geheim", &moved, b"{\"a\":1}", 1_800_000_000, 300),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify(b"geheim", &h, b"{\"a\":1}", 1_800_000_301, 300),
            Err(SignatureError::Stale { off: 301, .. })
        ));
    }

    #[test]
    fn malformed_headers_are_refused_not_panicked_on() {
        for bad in [
            "",
            "t=",
            "v1=00",
            "t=12",
            "t=x,v1=00",
            "t=12,v1=zz",
            "garbage",
            "t=99999999999999999999999,v1=00",
        ] {
            assert!(
                matches!(
                    verify(b"k", bad, b"", 12, 300),
                    Err(SignatureError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        // A well-formed but wrong tag is a mismatch, not malformed.
        assert_eq!(
            verify(b"k", "t=12,v1=00", b"", 12, 300),
            Err(SignatureError::Mismatch)
        );
    }
}
