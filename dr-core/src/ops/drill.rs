//! The `drill` operation.
