//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod lock_oracle;
pub mod s3_oracle;
