//! The `list` operation.
