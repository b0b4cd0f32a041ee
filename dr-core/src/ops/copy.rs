//! The `copy` operation.
