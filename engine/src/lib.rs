pub mod codec;
pub mod packet;
pub mod resample;
