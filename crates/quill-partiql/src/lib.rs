//! quill-partiql (in progress)
