//! The `status` operation.
