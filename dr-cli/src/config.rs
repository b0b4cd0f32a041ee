//! `dr.toml`: the repository, keys, pipeline tuning, retention and the sources.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dr_core::drill::Objectives;
use dr_core::ops::{ConfiguredSource, Group, Hooks, System};
use dr_core::registry::{Registry, SourceSettings};
use dr_core::{PipelineOptions, RetentionPolicy};
use dr_sqlite::UserCheck;
use serde::Deserialize;

use crate::exit::{CliError, CliResult};

/// The whole configuration file. Every field is optional so that flags and `DR_*`
/// variables can supply or override it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Repository URL or path; or a `[repository]` table with `url` and `ca_file`.
    pub repository: Option<StoreConfig>,
    /// Public keys new backups are encrypted to (`dr init`).
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Identity file for reading backups.
    pub identity: Option<PathBuf>,
    /// Other repositories holding copies of the backups (`dr copy`, `dr backup --copy`);
    /// restores and `wal-fetch` fall back to them in order when the repository is unreachable.
    /// Each a URL, or a table with `url` and `ca_file` (`[[copies]]`).
    #[serde(default)]
    pub copies: Vec<StoreConfig>,
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
}

/// A store dr.toml names (the repository, a copy): its URL, or a table with the URL and a
/// PEM file of extra trusted CA certificates for a store behind a private CA.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(
    untagged,
    expecting = "a URL, or a table with `url` and optionally `ca_file`, `lock_mode` (governance or compliance) and `lock_margin` (a duration such as \"7d\")"
)]
pub enum StoreConfig {
    /// Just the URL (or path).
    Url(String),
    /// `{ url = "s3://...", ca_file = "/etc/dr/ca.pem" }`.
    Table(StoreTable),
}

/// The table form of [`StoreConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreTable {
    /// The store's URL or path.
    pub url: String,
    /// A PEM file of CA certificates trusted besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// On a bucket with Object Lock: `governance` or `compliance` (default: the bucket's
    /// default retention mode, else governance).
    pub lock_mode: Option<dr_core::locks::LockMode>,
    /// On a bucket with Object Lock: how long past its guaranteed keep time a backup stays
    /// locked, and how far ahead prune extends what it keeps (`7d` by default).
    pub lock_margin: Option<String>,
}

impl StoreConfig {
    /// The URL or path.
    pub fn url(&self) -> &str {
        match self {
            StoreConfig::Url(url) | StoreConfig::Table(StoreTable { url, .. }) => url,
        }
    }

    /// The table form's settings, if written as a table.
    pub fn table(&self) -> Option<&StoreTable> {
        match self {
            StoreConfig::Url(_) => None,
            StoreConfig::Table(table) => Some(table),
        }
    }

    /// The extra trusted CA certificates, if any.
    pub fn ca_file(&self) -> Option<&Path> {
        match self {
            StoreConfig::Url(_) => None,
            StoreConfig::Table(table) => table.ca_file.as_deref(),
        }
    }
}

/// The dr_storage options of a store with `ca_file` (none without one).
pub fn store_options(ca_file: Option<&Path>) -> Vec<(&'static str, String)> {
    ca_file
        .map(|p| (dr_storage::CA_FILE_OPTION, p.display().to_string()))
        .into_iter()
        .collect()
}

/// `options` as `open_store` takes them.
pub fn as_pairs<'a>(options: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    options.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// `[groups.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Source names, in restore order.
    pub sources: Vec<String>,
    /// Commands run around the whole group (backup, point restore) and its health check.
    #[serde(default)]
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
    /// MiB of stored parts a restore may fetch ahead (default 128).
    pub read_ahead_mib: Option<u64>,
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
        if let Some(mib) = self.read_ahead_mib {
            options = options.with_read_ahead_bytes(mib * 1024 * 1024);
        }
        options
    }
}

/// `[sources.NAME]`.
#[derive(Debug, Deserialize)]
pub struct SourceConfig {
    /// The source type (`sqlite`, `postgres`, `redis`, `directory`, `bucket`, or one a
    /// front end registered): its factory in the registry checks the settings.
    pub kind: String,
    /// Retention for this source (replaces the default one).
    pub retention: Option<RetentionPolicy>,
    /// Checks run on a restored copy (verify --level restore, restore).
    #[serde(default)]
    pub checks: Vec<UserCheck>,
    /// Recovery objectives of this source (replace the default ones).
    pub objectives: Option<Objectives>,
    /// Commands run before and after its backups and restores, and its health check.
    #[serde(default)]
    pub hooks: Hooks,
    /// Everything else in the table: the type's own settings, handed to its factory as
    /// written (which refuses keys it does not know).
    #[serde(flatten)]
    pub settings: toml::Table,
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
        toml::from_str(text)
    }

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
            self.check_members(name, &group.sources)?;
            let members = Group::new(group.sources.clone()).with_hooks(group.hooks.clone());
            system = system.with_group(name, members);
        }
        Ok(system)
    }

    /// Refuses a group naming a source that is not configured (a typo would otherwise
    /// leave that source out of every group backup, point and drill without a word).
    fn check_members(&self, group: &str, members: &[String]) -> CliResult<()> {
        match members
            .iter()
            .find(|m| !self.sources.contains_key(m.as_str()))
        {
            None => Ok(()),
            Some(missing) => Err(CliError::usage(format!(
                "group {group} names source {missing:?}, which is not configured (sources: {})",
                self.source_names()
            ))),
        }
    }

    fn configured_source(
        &self,
        registry: &Registry,
        name: &str,
        config: &SourceConfig,
        self_command: &[String],
    ) -> CliResult<ConfiguredSource> {
        let kind = config.kind.as_str();
        let values = serde_json::to_value(&config.settings)
            .map_err(|e| CliError::usage(format!("source {name}: {e}")))?;
        let settings = SourceSettings::new(values)
            .with_checks(config.checks.clone())
            .with_self_command(self_command.to_vec());
        let built = registry
            .build_source(kind, &settings)
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
            CliError::usage(format!(
                "no source named {name:?} in the configuration (known: {})",
                self.source_names()
            ))
        })
    }

    /// The configured source names, comma-separated, or `none`.
    fn source_names(&self) -> String {
        if self.sources.is_empty() {
            return "none".into();
        }
        self.sources.keys().cloned().collect::<Vec<_>>().join(", ")
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
            .filter(|(_, s)| s.kind == "postgres")
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_are_urls_or_tables_with_ca_file() {
        let config = Config::parse(
            r#"
            copies = ["./copy", { url = "s3://b/c", ca_file = "/ca.pem" }]
            [repository]
            url = "s3://b/dr"
            ca_file = "/etc/dr/ca.pem"
            "#,
        )
        .unwrap();
        let repo = config.repository.unwrap();
        assert_eq!(repo.url(), "s3://b/dr");
        assert_eq!(repo.ca_file(), Some(Path::new("/etc/dr/ca.pem")));
        assert_eq!(config.copies[0], StoreConfig::Url("./copy".into()));
        assert_eq!(config.copies[1].ca_file(), Some(Path::new("/ca.pem")));
        assert_eq!(
            store_options(config.copies[1].ca_file()),
            vec![("ca_file", "/ca.pem".to_owned())]
        );
        let tables = Config::parse("[[copies]]\nurl = \"s3://b/c\"\n").unwrap();
        assert_eq!(tables.copies[0].url(), "s3://b/c");
        let err = Config::parse("[repository]\nurl = \"x\"\nca = \"y\"\n").unwrap_err();
        assert!(
            err.to_string().contains("a URL, or a table with `url`"),
            "{err}"
        );
    }

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
        assert_eq!(app.kind, "sqlite");
        assert_eq!(app.settings["restore_integrity"].as_str(), Some("full"));
        assert_eq!(app.checks.len(), 1);
        let system = config.system(dr::registry(), &[]).unwrap();
        assert_eq!(system.source("app").unwrap().source.kind(), "sqlite");
    }

    #[test]
    fn a_group_naming_an_unconfigured_source_is_refused() {
        let config = Config::parse(
            r#"
            [groups.system]
            sources = ["app", "uploadz"]
            [sources.app]
            kind = "sqlite"
            path = "/srv/app.db"
            [sources.uploads]
            kind = "directory"
            path = "/srv/uploads"
            "#,
        )
        .unwrap();
        let err = config.system(dr::registry(), &[]).unwrap_err().message;
        assert!(
            err.contains("group system names source \"uploadz\""),
            "{err}"
        );
        assert!(err.contains("sources: app, uploads"), "{err}");
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
                    || config.repository.is_some()
                    || !config.schedules.is_empty()
            );
            for schedule in &config.schedules {
                crate::schedule::Schedule::parse(schedule.clone()).unwrap();
            }
            // Every source's settings are accepted by its type's factory.
            if let Err(e) = config.system(dr::registry(), &[]) {
                panic!("{}\n{sample}", e.message);
            }
        }
        let sample = readme
            .split("```toml\n")
            .filter_map(|rest| rest.split("```").next())
            .find(|sample| sample.contains("[sources.shop-pitr]"))
            .unwrap();
        let pitr: Config = toml::from_str(sample).unwrap();
        let system = pitr.system(dr::registry(), &[]).unwrap();
        let physical = &system.source("shop-pitr").unwrap().source;
        assert!(physical.restores_by_point_in_time());
    }

    #[test]
    fn typos_are_refused() {
        let err = toml::from_str::<Config>("[retention]\nkeep_dayly = 3\n").unwrap_err();
        assert!(err.to_string().contains("keep_dayly"), "{err}");
        let system = |text: &str| {
            let config: Config = toml::from_str(text).unwrap();
            config
                .system(dr::registry(), &[])
                .map(|_| ())
                .unwrap_err()
                .message
        };
        let err = system("[sources.x]\nkind = \"oracle\"\npath = \"/x\"\n");
        assert!(err.contains("oracle"), "{err}");
        let err = system("[sources.x]\nkind = \"sqlite\"\npathh = \"/x\"\n");
        assert!(err.contains("pathh"), "{err}");
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
