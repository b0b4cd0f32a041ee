//! What every command needs: the configuration with flags applied, and the repository.

use std::sync::Arc;

use dr_core::{Identities, Recipients, Repository};

use crate::cli::Global;
use crate::config::{Config, StoreConfig, as_pairs, store_options};
use crate::exit::{CliError, CliResult, Context};
use crate::output::Bar;

/// The loaded configuration and global flags.
pub struct App {
    pub global: Global,
    pub config: Config,
}

impl App {
    /// Loads the configuration (a missing default `dr.toml` is fine when flags say enough).
    pub fn load(global: Global) -> CliResult<App> {
        let explicit =
            std::env::var_os("DR_CONFIG").is_some() || global.config.as_os_str() != "dr.toml";
        let config = Config::load(&global.config, explicit)?;
        Ok(App { global, config })
    }

    /// The repository URL from the flag, the variable or the configuration.
    pub fn repository_url(&self) -> CliResult<String> {
        self.global
            .repository
            .clone()
            .or_else(|| self.config.repository.as_ref().map(|r| r.url().to_owned()))
            .ok_or_else(|| {
                CliError::usage("no repository: set `repository` in dr.toml, or pass --repository / DR_REPOSITORY")
            })
    }

    /// The repository's store options: its `ca_file` from the flag, the variable or
    /// `[repository]` in the configuration.
    pub fn repository_options(&self) -> Vec<(&'static str, String)> {
        let configured = self.config.repository.as_ref().and_then(|r| r.ca_file());
        store_options(self.global.repository_ca_file.as_deref().or(configured))
    }

    /// The configured copy whose URL is `url`, or `url` alone.
    pub fn copy_store(&self, url: &str) -> StoreConfig {
        self.config
            .copies
            .iter()
            .find(|c| c.url() == url)
            .cloned()
            .unwrap_or_else(|| StoreConfig::Url(url.to_owned()))
    }

    /// The identity file from the flag or the configuration, if any.
    pub fn identity_path(&self) -> Option<std::path::PathBuf> {
        self.global
            .identity
            .clone()
            .or_else(|| self.config.identity.clone())
    }

    /// Loads the identities (none configured: empty, so key-less commands still work).
    pub fn identities(&self) -> CliResult<Identities> {
        let Some(path) = self.identity_path() else {
            return Ok(Identities::default());
        };
        let loaded = match &self.global.identity_passphrase {
            Some(passphrase) => Identities::from_encrypted_file(&path, passphrase),
            None => Identities::from_file(&path),
        };
        loaded.doing(|| format!("loading the identity {}", path.display()))
    }

    /// Recipients for `dr init`: flags, then configuration, then the identity's public key.
    pub fn init_recipients(&self, flags: &[String]) -> CliResult<Recipients> {
        let listed = if flags.is_empty() {
            &self.config.recipients
        } else {
            flags
        };
        if !listed.is_empty() {
            return Recipients::parse(&listed.join("\n"), "the recipients").map_err(CliError::from);
        }
        let identities = self.identities()?;
        if identities.is_empty() {
            return Err(CliError::usage(
                "no recipients: pass --recipient age1..., set `recipients` in dr.toml, or point --identity at a key (dr keygen makes one)",
            ));
        }
        Ok(identities.to_recipients())
    }

    /// The recipients every repository of this configuration must encrypt to: `recipients`
    /// in dr.toml, else the public keys of the identity; `None` when neither is configured.
    pub fn pinned_recipients(&self, identities: &Identities) -> CliResult<Option<Recipients>> {
        if !self.config.recipients.is_empty() {
            return Recipients::parse(
                &self.config.recipients.join("\n"),
                "`recipients` in dr.toml",
            )
            .map(Some)
            .map_err(CliError::from);
        }
        Ok((!identities.is_empty()).then(|| identities.to_recipients()))
    }

    /// Applies identities, pinned recipients, pipeline settings and a progress bar.
    pub fn equip(&self, repo: Repository, bar: Option<Arc<Bar>>) -> CliResult<Repository> {
        let identities = self.identities()?;
        let mut repo = match self.pinned_recipients(&identities)? {
            Some(pinned) => repo.with_pinned_recipients(&pinned),
            None => repo,
        };
        repo = repo
            .with_identities(identities)
            .with_pipeline(self.config.pipeline.options());
        if let Some(bar) = bar {
            repo = repo.with_progress(bar);
        }
        self.with_lock_settings(repo)
    }

    /// `lock_mode` and `lock_margin` of `[repository]`.
    fn with_lock_settings(&self, repo: Repository) -> CliResult<Repository> {
        let Some(table) = self.config.repository.as_ref().and_then(StoreConfig::table) else {
            return Ok(repo);
        };
        let mut repo = repo.with_lock_mode(table.lock_mode);
        if let Some(margin) = &table.lock_margin {
            let margin = humantime::parse_duration(margin).map_err(|e| {
                CliError::usage(format!(
                    "lock_margin {margin:?} in [repository] is not a duration ({e}); e.g. \"7d\""
                ))
            })?;
            repo = repo.with_lock_margin(margin);
        }
        Ok(repo)
    }

    /// Opens the repository with identities, pinned recipients, pipeline settings and a
    /// progress bar.
    pub async fn repository(&self, bar: Option<Arc<Bar>>) -> CliResult<Repository> {
        let url = self.repository_url()?;
        let options = self.repository_options();
        let repo = match (self.global.as_of, added_latency()) {
            (Some(at), _) => {
                dr_storage::as_of::open_repository_as_of(&url, &as_pairs(&options), at).await
            }
            (None, None) => dr_storage::open_repository(&url, &as_pairs(&options)).await,
            (None, Some(latency)) => open_farther(&url, &as_pairs(&options), latency).await,
        }
        .doing(|| "opening the repository".into())?;
        self.equip(repo, bar)
    }

    /// Opens the repository for reading: when it cannot be opened (unreachable store,
    /// missing repository), the copies named in `copies` are tried in order.
    pub async fn read_repository(&self, bar: Option<Arc<Bar>>) -> CliResult<Repository> {
        let primary = match self.repository(bar.clone()).await {
            Ok(repo) => return Ok(repo),
            // A copy holds its current state, not the past one `--as-of` asks for.
            Err(e)
                if self.config.copies.is_empty()
                    || self.global.as_of.is_some()
                    || e.failure == crate::exit::Failure::Usage =>
            {
                return Err(e);
            }
            Err(e) => e,
        };
        for copy in &self.config.copies {
            let (url, options) = (copy.url(), store_options(copy.ca_file()));
            match dr_storage::open_repository(url, &as_pairs(&options)).await {
                Ok(repo) => {
                    eprintln!(
                        "warning: {}; reading from the copy at {}",
                        primary.message,
                        dr_core::redact_url(url)
                    );
                    return self.equip(repo, bar);
                }
                Err(e) => {
                    tracing::warn!(copy = %dr_core::redact_url(url), error = %e, "copy unavailable too")
                }
            }
        }
        Err(primary)
    }

    /// The system of this configuration, every source built by the kind registry of the
    /// facade (`dr::registry()`).
    pub fn system(&self) -> CliResult<dr_core::ops::System> {
        self.config.system(dr::registry(), &self.self_command())
    }

    /// The argv that runs this `dr` again with the same configuration, repository and
    /// identity (for commands a datastore calls back, such as PostgreSQL's
    /// `restore_command`); paths made absolute.
    pub fn self_command(&self) -> Vec<String> {
        let absolute = |p: &std::path::Path| {
            std::path::absolute(p)
                .unwrap_or_else(|_| p.to_owned())
                .display()
                .to_string()
        };
        let program = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "dr".into());
        let mut argv = vec![program, "--config".into(), absolute(&self.global.config)];
        if let Some(repository) = &self.global.repository {
            argv.extend(["--repository".into(), repository.clone()]);
        }
        if let Some(identity) = self.identity_path() {
            argv.extend(["--identity".into(), absolute(&identity)]);
        }
        argv
    }

    /// A progress bar unless `--json`.
    pub fn bar(&self) -> Arc<Bar> {
        Arc::new(Bar::new(!self.global.json))
    }
}

/// For benches only: `DR_BENCH_ADDED_LATENCY_MS` adds that delay to every request of the
/// repository's store ([`dr_core::latency::LatencyStore`]), so that a recovery whose
/// `restore_command` runs `dr wal-fetch` can be timed as against a far store
/// (benches/wal_replay.rs). Unset (always, outside benches): the store as it is.
fn added_latency() -> Option<dr_core::latency::Latency> {
    let ms: u64 = std::env::var("DR_BENCH_ADDED_LATENCY_MS")
        .ok()?
        .parse()
        .ok()?;
    Some(dr_core::latency::Latency::ms(ms))
}

async fn open_farther(
    url: &str,
    options: &[(&str, &str)],
    latency: dr_core::latency::Latency,
) -> dr_core::Result<Repository> {
    let location = dr_storage::open_store(url, options, false)?;
    let far = dr_core::latency::LatencyStore::new(location.store(), latency);
    Repository::open(Arc::new(far), location.url()).await
}
