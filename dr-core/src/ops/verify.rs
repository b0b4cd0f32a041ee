//! The `verify` operation.
