//! RTP ports: binding a call's UDP socket inside the configured range
//! (what `rtp.conf`-style firewalls on media hosts expect).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU32, Ordering};

/// A port range with a rotating start, so consecutive calls do not reuse
/// the port a just-ended call released (late packets of the old call).
#[derive(Debug)]
pub struct PortRange {
    ip: IpAddr,
    range: RangeInclusive<u16>,
    next: AtomicU32,
}

/// No port of the range could be bound.
#[derive(Debug, thiserror::Error)]
#[error("no free UDP port in {ip}:{first}-{last}: {last_error}")]
pub struct PortsExhausted {
    /// Bind address.
    pub ip: IpAddr,
    /// First port.
    pub first: u16,
    /// Last port.
    pub last: u16,
    /// The last bind error.
    pub last_error: String,
}

impl PortRange {
    /// A range on `ip`; even ports only, as RTP convention has it.
    pub fn new(ip: IpAddr, range: RangeInclusive<u16>) -> Self {
        Self {
            ip,
            range,
            next: AtomicU32::new(0),
        }
    }

    /// Binds the next free even port (non-blocking socket).
    pub fn bind(&self) -> Result<UdpSocket, PortsExhausted> {
        let (first, last) = (*self.range.start() & !1, *self.range.end());
        let slots = (u32::from(last.saturating_sub(first)) / 2) + 1;
        let mut last_error = String::from("empty range");
        for _ in 0..slots {
            let k = self.next.fetch_add(1, Ordering::Relaxed) % slots;
            let port = first as u32 + 2 * k;
            if port > last as u32 {
                continue;
            }
            match UdpSocket::bind(SocketAddr::new(self.ip, port as u16)) {
                Ok(s) => match s.set_nonblocking(true) {
                    Ok(()) => return Ok(s),
                    Err(e) => last_error = e.to_string(),
                },
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(PortsExhausted {
            ip: self.ip,
            first,
            last,
            last_error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_even_ports_inside_the_range_and_reports_exhaustion() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // Find a free block by probing.
        let base = (30000..60000)
            .step_by(16)
            .find(|p| UdpSocket::bind((ip, *p)).is_ok() && UdpSocket::bind((ip, p + 2)).is_ok())
            .unwrap();
        let range = PortRange::new(ip, base..=base + 3);
        let a = range.bind().unwrap();
        let b = range.bind().unwrap();
        let ports = [
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        ];
        for p in ports {
            assert!(p % 2 == 0 && (base..=base + 3).contains(&p), "{p}");
        }
        assert_ne!(ports[0], ports[1]);
        let err = range.bind().unwrap_err();
        assert!(err.to_string().contains("no free UDP port"), "{err}");
        drop(a);
        assert!(range.bind().is_ok(), "a released port is reused");
    }
}
