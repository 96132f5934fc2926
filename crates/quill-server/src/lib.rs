//! quill-server (in progress)
pub mod control;
pub mod data_plane;
pub mod error;
pub mod ion_codec;
pub mod limits;
pub mod metrics;
pub mod registry;
pub mod session;
pub mod sigv4;
