pub mod codec;
pub mod endpoint;
pub mod jitter;
pub mod packet;
pub mod resample;
pub mod vad;
