//! The `prune` operation.
