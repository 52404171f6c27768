//! The `aiagc` application: the runtime that joins ARI, the media engine
//! and the speech core. The binary (`src/main.rs`) is its command line.

pub mod campaign;
pub mod delivery;
pub mod runtime;
