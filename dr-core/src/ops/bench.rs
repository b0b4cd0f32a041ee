//! The `bench` operation.
