//! The system dr protects: configured sources, groups, policies and the kind registry.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::drill::Objectives;
use crate::error::{Error, Result};
use crate::ops::hooks::Hooks;
use crate::registry::{KindSupport, Registry, Source};
use crate::retention::RetentionPolicy;

/// One configured source.
#[derive(Clone)]
#[non_exhaustive]
pub struct ConfiguredSource {
    /// Its name in the repository.
    pub name: String,
    /// Its backend.
    pub source: Arc<dyn Source>,
    /// Its retention (the system's default without).
    pub retention: Option<RetentionPolicy>,
    /// Its recovery objectives (the system's default without).
    pub objectives: Option<Objectives>,
    /// Its hooks.
    pub hooks: Hooks,
}

impl ConfiguredSource {
    /// The source `name` served by `source`, with the system's defaults.
    pub fn new(name: impl Into<String>, source: Arc<dyn Source>) -> Self {
        ConfiguredSource {
            name: name.into(),
            source,
            retention: None,
            objectives: None,
            hooks: Hooks::default(),
        }
    }

    /// With its own retention.
    pub fn with_retention(mut self, retention: RetentionPolicy) -> Self {
        self.retention = Some(retention);
        self
    }

    /// With its own objectives.
    pub fn with_objectives(mut self, objectives: Objectives) -> Self {
        self.objectives = Some(objectives);
        self
    }

    /// With hooks.
    pub fn with_hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
        self
    }
}

impl std::fmt::Debug for ConfiguredSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfiguredSource")
            .field("name", &self.name)
            .field("kind", &self.source.kind())
            .finish_non_exhaustive()
    }
}

/// A named group of sources, backed up together as one recovery point.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Group {
    /// The member sources.
    pub sources: Vec<String>,
    /// Hooks around the whole group.
    pub hooks: Hooks,
}

impl Group {
    /// A group of `sources`.
    pub fn new(sources: Vec<String>) -> Self {
        Group {
            sources,
            hooks: Hooks::default(),
        }
    }

    /// With hooks.
    pub fn with_hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
        self
    }
}

/// What dr protects: the configured sources and groups, their default policies, and the
/// registry that serves every kind.
#[derive(Debug, Clone, Default)]
pub struct System {
    registry: Arc<Registry>,
    sources: BTreeMap<String, ConfiguredSource>,
    groups: BTreeMap<String, Group>,
    default_retention: RetentionPolicy,
    default_objectives: crate::drill::Objectives,
}

impl System {
    /// A system with no sources yet, served by `registry`.
    pub fn new(registry: Registry) -> Self {
        System {
            registry: Arc::new(registry),
            ..System::default()
        }
    }

    /// Adds a source (replacing one of the same name).
    pub fn with_source(mut self, source: ConfiguredSource) -> Self {
        self.sources.insert(source.name.clone(), source);
        self
    }

    /// Adds a group.
    pub fn with_group(mut self, name: impl Into<String>, group: Group) -> Self {
        self.groups.insert(name.into(), group);
        self
    }

    /// The retention of sources without their own.
    pub fn with_default_retention(mut self, retention: RetentionPolicy) -> Self {
        self.default_retention = retention;
        self
    }

    /// The objectives of sources without their own.
    pub fn with_default_objectives(mut self, objectives: Objectives) -> Self {
        self.default_objectives = objectives;
        self
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The support of manifest kind `kind`, if registered.
    pub fn kind(&self, kind: &str) -> Option<&Arc<dyn KindSupport>> {
        self.registry.kind(kind)
    }

    /// The configured sources, by name.
    pub fn sources(&self) -> impl Iterator<Item = &ConfiguredSource> {
        self.sources.values()
    }

    /// The configured source `name`, if any.
    pub fn get(&self, name: &str) -> Option<&ConfiguredSource> {
        self.sources.get(name)
    }

    /// The configured source `name`.
    ///
    /// # Errors
    /// [`Error::Usage`] naming the configured sources.
    pub fn source(&self, name: &str) -> Result<&ConfiguredSource> {
        self.sources.get(name).ok_or_else(|| {
            Error::Usage(format!(
                "no source named {name:?} is configured (configured: {})",
                self.names_or_none()
            ))
        })
    }

    /// The member sources of `group`: as listed, or for `all` (unless a group is named so)
    /// every source in restore order (databases, caches, files).
    ///
    /// # Errors
    /// [`Error::Usage`] for an unknown group or a member that is not configured.
    pub fn group_sources(&self, group: &str) -> Result<Vec<String>> {
        let members = match self.groups.get(group) {
            Some(g) => g.sources.clone(),
            None if group == "all" => {
                let mut all: Vec<&ConfiguredSource> = self.sources.values().collect();
                all.sort_by_key(|s| s.source.restore_rank());
                return Ok(all.into_iter().map(|s| s.name.clone()).collect());
            }
            None => {
                return Err(Error::Usage(format!(
                    "no group named {group:?} (groups: {})",
                    if self.groups.is_empty() {
                        "none".to_owned()
                    } else {
                        self.groups.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                )));
            }
        };
        for member in &members {
            self.source(member)?;
        }
        Ok(members)
    }

    /// The group `name`, if configured.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.get(name)
    }

    /// The retention of `name`.
    pub fn retention_for(&self, name: &str) -> &RetentionPolicy {
        self.sources
            .get(name)
            .and_then(|s| s.retention.as_ref())
            .unwrap_or(&self.default_retention)
    }

    /// The objectives of `name`.
    pub fn objectives_for(&self, name: &str) -> Objectives {
        self.sources
            .get(name)
            .and_then(|s| s.objectives)
            .unwrap_or(self.default_objectives)
    }

    fn names_or_none(&self) -> String {
        if self.sources.is_empty() {
            "none".into()
        } else {
            self.sources.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    }
}
