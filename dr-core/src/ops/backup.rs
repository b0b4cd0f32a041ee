//! The `backup` operation.
