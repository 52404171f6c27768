//! The runtime: tokio for ARI and the per-call media edges (UDP sockets or
//! WebSockets), OS threads for inference (see DESIGN.md, "Principles").

pub mod app;
pub mod conversation;
pub mod deadair;
pub mod edge;
pub mod media;
pub mod metrics;
pub mod outbound;
pub mod schedule;
pub mod speech;
