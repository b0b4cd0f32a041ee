//! Commands run before and after backups and restores, and health checks.

use serde::{Deserialize, Serialize};

/// The hooks of a source or a group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Hooks {}
