//! quill-server (in progress)
