//! Lock-free hand-off types between the runtime's socket task, the media
//! state and the speech workers.
//!
//! Datagrams travel by value in fixed-size buffers through bounded
//! `crossbeam-channel` queues (array-backed, preallocated at creation), so
//! moving a packet from the socket to its [`crate::Call`] takes no lock and
//! no allocation. A full queue is an explicit outcome the caller counts and
//! handles by policy, never a blocking send.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::net::SocketAddr;
use std::time::Instant;

/// Largest UDP datagram carried (larger ones are counted and dropped).
pub const MAX_DATAGRAM: usize = 1600;

/// One received datagram in a fixed buffer.
#[derive(Clone)]
pub struct Datagram {
    /// Sender address.
    pub from: SocketAddr,
    /// Arrival time.
    pub at: Instant,
    len: u16,
    buf: [u8; MAX_DATAGRAM],
}

impl Datagram {
    /// Copies `bytes` into a datagram; `None` when over [`MAX_DATAGRAM`].
    pub fn new(from: SocketAddr, at: Instant, bytes: &[u8]) -> Option<Self> {
        if bytes.len() > MAX_DATAGRAM {
            return None;
        }
        let mut buf = [0u8; MAX_DATAGRAM];
        buf[..bytes.len()].copy_from_slice(bytes);
        Some(Self {
            from,
            at,
            len: bytes.len() as u16,
            buf,
        })
    }

    /// The datagram's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

/// Result of offering an item to a bounded queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer<T> {
    /// Queued.
    Queued,
    /// The queue was full: the item comes back (count it, decide).
    Full(T),
    /// The receiving side is gone (the call ended): the item comes back.
    Closed(T),
}

/// The sending half of a bounded hand-off queue.
pub struct HandoffSender<T>(Sender<T>);

impl<T> Clone for HandoffSender<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> HandoffSender<T> {
    /// Offers `item` without blocking.
    pub fn offer(&self, item: T) -> Offer<T> {
        match self.0.try_send(item) {
            Ok(()) => Offer::Queued,
            Err(TrySendError::Full(item)) => Offer::Full(item),
            Err(TrySendError::Disconnected(item)) => Offer::Closed(item),
        }
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A bounded, lock-free queue of `capacity` items.
pub fn bounded<T>(capacity: usize) -> (HandoffSender<T>, Receiver<T>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    (HandoffSender(tx), rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_drops_instead_of_blocking() {
        let (tx, rx) = bounded::<Datagram>(2);
        let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let d = Datagram::new(from, Instant::now(), &[1, 2, 3]).unwrap();
        assert!(matches!(tx.offer(d.clone()), Offer::Queued));
        assert!(matches!(tx.offer(d.clone()), Offer::Queued));
        assert!(matches!(tx.offer(d.clone()), Offer::Full(back) if back.bytes() == [1, 2, 3]));
        assert_eq!(rx.recv().unwrap().bytes(), &[1, 2, 3]);
        drop(rx);
        assert!(matches!(tx.offer(d), Offer::Closed(_)));
        assert!(Datagram::new(from, Instant::now(), &[0; MAX_DATAGRAM + 1]).is_none());
    }
}
