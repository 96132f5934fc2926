//! quill-server (in progress)
pub mod error;
pub mod ion_codec;
pub mod limits;
pub mod metrics;
pub mod registry;
pub mod sigv4;
