//! The `restore` operation.
