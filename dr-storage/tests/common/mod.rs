//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod s3_oracle;
