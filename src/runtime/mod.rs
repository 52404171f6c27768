//! The runtime: tokio for ARI and the per-call UDP sockets, OS threads for
//! inference. The engine `Call` of each call is driven by its own task
//! ([`media`]); finished utterances go to the speech worker pool
//! ([`speech`]) through a bounded lock-free queue, and replies come back
//! to the call's task, which queues them for the 20 ms packetizer.

pub mod media;
pub mod speech;
