//! `dr.toml`: the repository, keys, pipeline tuning, retention and the sources.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dr_core::drill::Objectives;
use dr_core::ops::{ConfiguredSource, Group, Hooks, System};
use dr_core::registry::{Registry, SourceSettings};
use dr_core::{PipelineOptions, RetentionPolicy};
use dr_postgres::PgConnection;
use dr_sqlite::{Integrity, UserCheck};
use serde::Deserialize;

use crate::exit::{CliError, CliResult};

/// The whole configuration file. Every field is optional so that flags and `DR_*`
/// variables can supply or override it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Repository URL or path.
    pub repository: Option<String>,
    /// Public keys new backups are encrypted to (`dr init`).
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Identity file for reading backups.
    pub identity: Option<PathBuf>,
    /// Other repositories holding copies of the backups (`dr copy`, `dr backup --copy`);
    /// restores and `wal-fetch` fall back to them in order when the repository is unreachable.
    #[serde(default)]
    pub copies: Vec<String>,
    /// Pipeline tuning.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// Default retention for every source.
    #[serde(default)]
    pub retention: RetentionPolicy,
    /// Default recovery objectives of every source (`[objectives]`, compared by drills).
    #[serde(default)]
    pub objectives: Objectives,
    /// Named groups of sources backed up together as one recovery point and restored in
    /// the order listed (`[groups.system] sources = ["db", "cache", "files"]`).
    #[serde(default)]
    pub groups: BTreeMap<String, GroupConfig>,
    /// The sources, by name.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// What `dr daemon` runs when (`[[schedules]]`).
    #[serde(default)]
    pub schedules: Vec<crate::schedule::ScheduleConfig>,
    /// `dr daemon` settings.
    #[serde(default)]
    pub daemon: crate::schedule::DaemonConfig,
    /// Each `[sources.NAME]` table as written: what [`Config::system`] hands to the kind's
    /// factory (without the generic keys).
    #[serde(skip)]
    pub source_tables: BTreeMap<String, toml::Table>,
}

/// `[groups.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Source names, in restore order.
    pub sources: Vec<String>,
    /// Commands run around the whole group (backup, point restore) and its health check.
    #[serde(default)]
    #[cfg_attr(not(test), allow(dead_code))]
    pub hooks: Hooks,
}

/// `[pipeline]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// zstd level.
    pub zstd_level: Option<i32>,
    /// Plain MiB per part.
    pub part_size_mib: Option<usize>,
    /// Parts processed at once.
    pub threads: Option<usize>,
}

impl PipelineConfig {
    /// The pipeline options with these overrides.
    pub fn options(&self) -> PipelineOptions {
        let mut options = PipelineOptions::default();
        if let Some(level) = self.zstd_level {
            options = options.with_zstd_level(level);
        }
        if let Some(mib) = self.part_size_mib {
            options = options.with_part_size(mib * 1024 * 1024);
        }
        if let Some(threads) = self.threads {
            options = options.with_threads(threads);
        }
        options
    }
}

/// `[sources.NAME]`.
#[derive(Debug, Deserialize)]
pub struct SourceConfig {
    /// What kind of source, with its settings.
    #[serde(flatten)]
    pub kind: SourceKind,
    /// Retention for this source (replaces the default one).
    pub retention: Option<RetentionPolicy>,
    /// Checks run on a restored copy (verify --level restore, restore).
    #[serde(default)]
    pub checks: Vec<UserCheck>,
    /// Recovery objectives of this source (replace the default ones).
    pub objectives: Option<Objectives>,
    /// Commands run before and after its backups and restores, and its health check.
    #[serde(default)]
    #[cfg_attr(not(test), allow(dead_code))]
    pub hooks: Hooks,
}

/// The kinds of sources and their settings.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceKind {
    /// A SQLite database file.
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Record exact row counts (default true).
        #[serde(default = "yes")]
        count_rows: bool,
        /// Where the temporary snapshot goes.
        temp_dir: Option<PathBuf>,
        /// Check run on a restored copy before the swap: `quick` (default) or `full`.
        #[serde(default = "quick")]
        restore_integrity: Integrity,
    },
    /// A PostgreSQL database, backed up logically with pg_dump.
    Postgres {
        /// `postgres://user@host:port/dbname` (a password here works, `password_env` is better).
        url: String,
        /// Name of an environment variable holding the password.
        password_env: Option<String>,
        /// Exact row counts (default) or the planner's estimates.
        #[serde(default = "yes")]
        exact_counts: bool,
        /// Also dump roles and tablespaces (needs a superuser; default true).
        #[serde(default = "yes")]
        globals: bool,
        /// `"schema.table" = "column"`: the newest value of each is recorded and checked after
        /// a restore (e.g. `"public.orders" = "created_at"`).
        #[serde(default)]
        timestamp_columns: BTreeMap<String, String>,
        /// `logical` (pg_dump of one database, default) or `physical` (pg_basebackup of the
        /// whole cluster, for point-in-time recovery with the WAL archive).
        #[serde(default)]
        method: PgMethod,
        /// Physical: start the base backup with a fast checkpoint (default) or a spread one.
        #[serde(default = "yes")]
        fast_checkpoint: bool,
    },
    /// A directory tree (uploads, configuration), backed up incrementally.
    Directory {
        /// The root of the tree.
        path: PathBuf,
        /// Only files matching one of these globs (relative paths; `*`, `?`, `**`).
        #[serde(default)]
        include: Vec<String>,
        /// Leave out paths matching one of these globs (e.g. `"cache"`, `"*.tmp"`).
        #[serde(default)]
        exclude: Vec<String>,
        /// Also descend into other filesystems mounted below `path`.
        #[serde(default)]
        cross_filesystems: bool,
    },
    /// A bucket or prefix of an object store (`s3://bucket/media`, `gs://...`, `az://...`,
    /// a local directory), backed up incrementally by ETag.
    Bucket {
        /// Where the objects are.
        url: String,
        /// object_store options (endpoint, region...); credentials come from the environment.
        #[serde(default)]
        options: BTreeMap<String, String>,
    },
    /// A Redis server (every database).
    Redis {
        /// `redis://[:password@]host:port` (`password_env` is better than a password here).
        url: String,
        /// Name of an environment variable holding the password.
        password_env: Option<String>,
        /// `rdb` (the server's snapshot over the replication protocol, default) or `logical`
        /// (SCAN + DUMP, for managed servers that refuse SYNC).
        #[serde(default)]
        mode: RedisModeConfig,
        /// Restore RDB backups as this file (the server's `dump.rdb`); without it, restores
        /// replay the keys into the server at `url` with RESTORE.
        rdb_path: Option<PathBuf>,
        /// Run before the restored file is swapped in (e.g. `systemctl stop redis-server`).
        stop_command: Option<String>,
        /// Run after it (e.g. `systemctl start redis-server`).
        start_command: Option<String>,
    },
}

/// `mode` of a Redis source.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisModeConfig {
    /// RDB over the replication protocol.
    #[default]
    Rdb,
    /// SCAN + DUMP + PTTL.
    Logical,
}

/// How a PostgreSQL source is backed up.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PgMethod {
    /// pg_dump of one database.
    #[default]
    Logical,
    /// pg_basebackup of the cluster plus the WAL archive.
    Physical,
}

fn yes() -> bool {
    true
}

fn quick() -> Integrity {
    Integrity::Quick
}

/// The password held by the environment variable named in `password_env`, if one is named.
fn password_from_env(var: Option<&str>) -> CliResult<Option<String>> {
    var.map(|var| {
        std::env::var(var).map_err(|_| {
            CliError::usage(format!(
                "the environment variable {var} (password_env) is not set"
            ))
        })
    })
    .transpose()
}


impl SourceConfig {
    /// The PostgreSQL connection of a `postgres` source.
    pub fn postgres(&self) -> CliResult<PgConnection> {
        let SourceKind::Postgres {
            url, password_env, ..
        } = &self.kind
        else {
            return Err(CliError::usage("not a postgres source"));
        };
        let conn = PgConnection::from_url(url).map_err(CliError::from)?;
        Ok(match password_from_env(password_env.as_deref())? {
            Some(password) => conn.with_password(password),
            None => conn,
        })
    }

    /// Whether this is a physical PostgreSQL source (restored by point-in-time recovery).
    pub fn is_physical(&self) -> bool {
        matches!(
            self.kind,
            SourceKind::Postgres {
                method: PgMethod::Physical,
                ..
            }
        )
    }

}

impl Config {
    /// Reads `path`; a missing file is an empty configuration unless `required`.
    pub fn load(path: &Path, required: bool) -> CliResult<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Config::default());
            }
            Err(e) => {
                return Err(CliError::usage(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        Config::parse(&text)
            .map_err(|e| CliError::usage(format!("invalid {}: {e}", path.display())))
    }

    /// Parses a configuration, keeping each source's table as written.
    ///
    /// # Errors
    /// The TOML parser's error (unknown keys, wrong types).
    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        let mut config: Config = toml::from_str(text)?;
        let mut table: toml::Table = toml::from_str(text)?;
        if let Some(toml::Value::Table(sources)) = table.remove("sources") {
            for (name, value) in sources {
                if let toml::Value::Table(t) = value {
                    config.source_tables.insert(name, t);
                }
            }
        }
        Ok(config)
    }

    // Called by the commands once the backends register their kinds (the lead's merge).
    #[cfg_attr(not(test), allow(dead_code))]
    /// The system this configuration describes: every `[sources.NAME]` built by the
    /// registry's factory for its `kind` from the table without the generic keys (`kind`,
    /// `retention`, `checks`, `objectives`, `hooks`; factories refuse unknown keys), the
    /// groups with their hooks, the default retention and objectives. `self_command` is
    /// the argv that runs this `dr` again with the same configuration.
    ///
    /// # Errors
    /// A usage error naming the source whose settings the factory refused, or whose kind
    /// this build does not have.
    pub fn system(&self, registry: Registry, self_command: &[String]) -> CliResult<System> {
        let mut sources = Vec::new();
        for (name, config) in &self.sources {
            sources.push(self.configured_source(&registry, name, config, self_command)?);
        }
        let mut system = System::new(registry)
            .with_default_retention(self.retention.clone())
            .with_default_objectives(self.objectives);
        for source in sources {
            system = system.with_source(source);
        }
        for (name, group) in &self.groups {
            let members = Group::new(group.sources.clone()).with_hooks(group.hooks.clone());
            system = system.with_group(name, members);
        }
        Ok(system)
    }

    // Called by the commands once the backends register their kinds (the lead's merge).
    #[cfg_attr(not(test), allow(dead_code))]
    fn configured_source(
        &self,
        registry: &Registry,
        name: &str,
        config: &SourceConfig,
        self_command: &[String],
    ) -> CliResult<ConfiguredSource> {
        let mut table = self.source_tables.get(name).cloned().unwrap_or_default();
        let kind = match table.remove("kind") {
            Some(toml::Value::String(kind)) => kind,
            _ => return Err(CliError::usage(format!("source {name}: `kind` is missing"))),
        };
        for generic in ["retention", "checks", "objectives", "hooks"] {
            table.remove(generic);
        }
        let values = serde_json::to_value(&table)
            .map_err(|e| CliError::usage(format!("source {name}: {e}")))?;
        let settings = SourceSettings::new(values)
            .with_checks(config.checks.clone())
            .with_self_command(self_command.to_vec());
        let built = registry
            .build_source(&kind, &settings)
            .map_err(|e| CliError::from(e).context(&format!("configuring source {name}")))?;
        let mut source = ConfiguredSource::new(name, built).with_hooks(config.hooks.clone());
        if let Some(retention) = &config.retention {
            source = source.with_retention(retention.clone());
        }
        if let Some(objectives) = config.objectives {
            source = source.with_objectives(objectives);
        }
        Ok(source)
    }

    /// The source named `name`.
    pub fn source(&self, name: &str) -> CliResult<&SourceConfig> {
        self.sources.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.sources.keys().map(String::as_str).collect();
            CliError::usage(format!(
                "no source named {name:?} in the configuration (known: {})",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    /// The named postgres source, or the only one configured.
    pub fn postgres_source(&self, name: Option<&str>) -> CliResult<String> {
        if let Some(name) = name {
            self.source(name)?;
            return Ok(name.to_owned());
        }
        let postgres: Vec<&String> = self
            .sources
            .iter()
            .filter(|(_, s)| matches!(s.kind, SourceKind::Postgres { .. }))
            .map(|(name, _)| name)
            .collect();
        match postgres.as_slice() {
            [only] => Ok((*only).clone()),
            [] => Err(CliError::usage(
                "no postgres source in the configuration: pass --source NAME",
            )),
            _ => Err(CliError::usage(
                "several postgres sources: pass --source NAME",
            )),
        }
    }

    /// The retention policy of a source.
    #[cfg(test)]
    pub fn retention_for(&self, name: &str) -> &RetentionPolicy {
        self.sources
            .get(name)
            .and_then(|s| s.retention.as_ref())
            .unwrap_or(&self.retention)
    }

    /// The objectives of source `name`: its own, else the default ones.
    pub fn objectives_for(&self, name: &str) -> Objectives {
        self.sources
            .get(name)
            .and_then(|s| s.objectives)
            .unwrap_or(self.objectives)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_configuration() {
        let config: Config = toml::from_str(
            r#"
            repository = "s3://bucket/dr"
            identity = "/etc/dr/key.txt"
            [pipeline]
            zstd_level = 1
            part_size_mib = 8
            [retention]
            keep_daily = 30
            keep_within = "2days"
            [sources.app]
            kind = "sqlite"
            path = "/srv/app.db"
            restore_integrity = "full"
            [sources.app.retention]
            keep_last = 3
            [[sources.app.checks]]
            name = "rows"
            sql = "SELECT 1"
            expect = ">= 1"
            "#,
        )
        .unwrap();
        assert_eq!(config.pipeline.options().part_size, 8 * 1024 * 1024);
        assert_eq!(
            config.retention.keep_within,
            Some(std::time::Duration::from_secs(2 * 86400))
        );
        assert_eq!(config.retention_for("app").keep_last, 3);
        assert_eq!(config.retention_for("other").keep_daily, 30);
        let app = config.source("app").unwrap();
        assert!(matches!(
            app.kind,
            SourceKind::Sqlite {
                restore_integrity: Integrity::Full,
                ..
            }
        ));
        assert_eq!(app.checks.len(), 1);
    }

    #[test]
    fn the_readme_sample_parses() {
        let readme = include_str!("../../README.md");
        let start = readme.find("```toml\n").unwrap() + "```toml\n".len();
        let end = start + readme[start..].find("```").unwrap();
        let config: Config = toml::from_str(&readme[start..end]).unwrap();
        assert_eq!(config.sources.len(), 2);
        assert_eq!(config.retention_for("app").keep_last, 48);
        assert_eq!(config.retention_for("shop").keep_daily, 30);
    }

    #[test]
    fn every_readme_toml_sample_parses() {
        let readme = include_str!("../../README.md");
        let samples: Vec<&str> = readme
            .split("```toml\n")
            .skip(1)
            .filter_map(|rest| rest.split("```").next())
            .collect();
        assert!(samples.len() >= 2);
        for sample in samples {
            let config: Config = toml::from_str(sample).unwrap_or_else(|e| panic!("{e}\n{sample}"));
            assert!(
                !config.sources.is_empty()
                    || !config.copies.is_empty()
                    || !config.schedules.is_empty()
            );
            for schedule in &config.schedules {
                crate::schedule::Schedule::parse(schedule.clone()).unwrap();
            }
        }
        let pitr: Config = toml::from_str(
            readme
                .split("```toml\n")
                .nth(2)
                .unwrap()
                .split("```")
                .next()
                .unwrap(),
        )
        .unwrap();
        assert!(pitr.source("shop-pitr").unwrap().is_physical());
    }

    #[test]
    fn typos_are_refused() {
        let err = toml::from_str::<Config>("[retention]\nkeep_dayly = 3\n").unwrap_err();
        assert!(err.to_string().contains("keep_dayly"), "{err}");
        let err = toml::from_str::<Config>("[sources.x]\nkind = \"oracle\"\npath = \"/x\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("oracle"), "{err}");
    }

    struct Recording;

    impl dr_core::registry::SourceFactory for Recording {
        fn source_type(&self) -> &str {
            "sqlite"
        }
        fn build(
            &self,
            settings: &SourceSettings,
        ) -> dr_core::Result<std::sync::Arc<dyn dr_core::registry::Source>> {
            // The factory sees only the kind-specific keys; refuse anything else, as real ones do.
            let keys: Vec<&String> = settings.values.as_object().unwrap().keys().collect();
            if keys != ["path", "restore_integrity"] {
                return Err(dr_core::Error::Usage(format!("unexpected keys {keys:?}")));
            }
            assert_eq!(settings.checks.len(), 1);
            assert_eq!(settings.self_command, ["dr", "--config", "/etc/dr.toml"]);
            Err(dr_core::Error::Usage("built".into()))
        }
    }

    #[test]
    fn sources_go_to_their_factory_without_the_generic_keys() {
        let config = Config::parse(
            r#"
            [sources.app]
            kind = "sqlite"
            path = "/srv/app.db"
            restore_integrity = "full"
            hooks = { before_restore = [["systemctl", "stop", "app"]] }
            [sources.app.retention]
            keep_last = 3
            [[sources.app.checks]]
            name = "rows"
            sql = "SELECT 1"
            expect = ">= 1"
            [groups.sys]
            sources = ["app"]
            hooks = { after_restore = [["systemctl", "start", "app"]] }
            "#,
        )
        .unwrap();
        assert_eq!(config.source("app").unwrap().hooks.before_restore.len(), 1);
        assert_eq!(config.groups["sys"].hooks.after_restore.len(), 1);
        let mut registry = Registry::new();
        registry.register_source_type(std::sync::Arc::new(Recording));
        let self_command = ["dr", "--config", "/etc/dr.toml"].map(String::from);
        let err = config.system(registry, &self_command).unwrap_err();
        // "built" proves the factory got exactly the kind-specific keys.
        assert!(err.message.contains("built"), "{}", err.message);
        assert!(
            err.message.contains("configuring source app"),
            "{}",
            err.message
        );
        let empty = config.system(Registry::new(), &self_command).unwrap_err();
        assert!(
            empty.message.contains("no source kind \"sqlite\""),
            "{}",
            empty.message
        );
    }
}
