//! Command-line arguments. Every global flag also reads a `DR_*` environment variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// dr: backups you can restore. Streamed, compressed (zstd), encrypted (age), verified.
///
/// Exit codes: 0 success, 1 operational error, 2 usage error, 3 verification failed.
#[derive(Debug, Parser)]
#[command(name = "dr", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Configuration file.
    #[arg(
        long,
        short = 'c',
        env = "DR_CONFIG",
        default_value = "dr.toml",
        global = true
    )]
    pub config: PathBuf,
    /// Repository URL or path (overrides `repository` in the configuration).
    #[arg(long, short = 'r', env = "DR_REPOSITORY", global = true)]
    pub repository: Option<String>,
    /// PEM file of CA certificates the repository's TLS certificate may chain to, besides
    /// the system's roots (overrides `ca_file` of `[repository]`).
    #[arg(long, env = "DR_REPOSITORY_CA_FILE", global = true)]
    pub repository_ca_file: Option<PathBuf>,
    /// Identity file (secret key) for reading backups (overrides `identity`).
    #[arg(long, short = 'i', env = "DR_IDENTITY", global = true)]
    pub identity: Option<PathBuf>,
    /// Passphrase of a passphrase-protected identity file (prefer the variable).
    #[arg(
        long,
        env = "DR_IDENTITY_PASSPHRASE",
        hide_env_values = true,
        global = true
    )]
    pub identity_passphrase: Option<String>,
    /// Read the repository as it was at this time (RFC 3339), from the object versions of a
    /// versioned S3 bucket: backups deleted or overwritten since come back (`dr list`,
    /// `dr restore`, `dr verify`). Read-only: nothing is deleted or overwritten.
    #[arg(long, env = "DR_AS_OF", global = true, value_parser = parse_time)]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (-v info, -vv debug); logs go to stderr.
    #[arg(long, short = 'v', action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time ({e}); e.g. 2026-11-23T12:30:00Z"))
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a repository (encrypting to --recipient keys, the configuration's, or the identity's).
    Init {
        /// Public key (age1...) backups are encrypted to; repeatable.
        #[arg(long = "recipient")]
        recipients: Vec<String>,
    },
    /// Generate an identity (secret key) file, mode 0600; prints its public key.
    Keygen {
        /// Where to write it (default: the configured identity, else ./dr-key.txt).
        path: Option<PathBuf>,
        /// Encrypt the file with the passphrase from DR_IDENTITY_PASSPHRASE.
        #[arg(long)]
        passphrase: bool,
    },
    /// Back up one source, or every configured source (--all) or a group (--group) as one
    /// recovery point.
    Backup {
        /// Source name from the configuration.
        source: Option<String>,
        /// Back up every configured source and record them as one recovery point.
        #[arg(long, conflicts_with = "source")]
        all: bool,
        /// Back up the sources of [groups.NAME] and record them as one recovery point.
        #[arg(long, conflicts_with_all = ["source", "all"])]
        group: Option<String>,
        /// Label recorded with the backup (repeatable); retention can keep by label.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Directory sources: store every file, not only those changed since the last backup.
        #[arg(long)]
        full: bool,
        /// Then copy the new backups to every repository in `copies`.
        #[arg(long)]
        copy: bool,
    },
    /// Copy committed backups (and WAL archives) to another repository: --to URL, or every
    /// repository in `copies`. Idempotent; every object checked.
    Copy {
        /// Destination repository URL (default: the configured `copies`).
        #[arg(long)]
        to: Option<String>,
    },
    /// List committed backups, newest first (--points: the recovery points).
    List {
        /// Only this source.
        source: Option<String>,
        /// List the recovery points instead, with their member backups.
        #[arg(long, conflicts_with = "source")]
        points: bool,
    },
    /// Show one backup's manifest.
    Show {
        /// Backup id.
        id: String,
    },
    /// Verify backups: the latest of every source, or one backup id.
    Verify {
        /// A backup id or a source name (default: the latest backup of every source).
        target: Option<String>,
        /// quick (objects and sizes), checksums (read and hash everything), restore (test restore and checks).
        #[arg(long, default_value = "checksums")]
        level: String,
        /// Check Object Lock instead: every backup retention keeps is locked at least until
        /// its keep date (exit 3 when one is not, or when the bucket has no Object Lock).
        #[arg(long)]
        locks: bool,
    },
    /// Restore a backup of a source (latest by default).
    Restore(RestoreArgs),
    /// archive_command: archive one WAL file (`dr wal-push %p`), run in the data directory.
    WalPush {
        /// The WAL file (%p).
        path: PathBuf,
        /// The postgres source (default: the only postgres source in the configuration).
        #[arg(long)]
        source: Option<String>,
        /// The data directory (default: the current directory, where archive_command runs).
        #[arg(long, default_value = ".")]
        pgdata: PathBuf,
    },
    /// restore_command: restore one archived WAL file (`dr wal-fetch %f %p`); exit 1 when the
    /// archive does not have it, which tells PostgreSQL the archive ends there.
    WalFetch {
        /// The WAL file name (%f).
        name: String,
        /// Where PostgreSQL wants it (%p).
        dest: PathBuf,
        /// The postgres source (default: the only postgres source in the configuration).
        #[arg(long)]
        source: Option<String>,
        /// Run as the background prefetcher `wal-fetch` starts: fill the spool beside DEST
        /// with the segments archived after NAME.
        #[arg(long, hide = true)]
        prefetch_after: bool,
    },
    /// Restore drill: test-restore the newest backup of each source (or of a recovery point)
    /// into a scratch target, run the checks, measure RTO and RPO against the objectives,
    /// record the result in the repository; exit 3 when a drill fails or misses an objective.
    Drill {
        /// A source name (default: every configured source).
        source: Option<String>,
        /// Every configured source (the default when no source is named).
        #[arg(long, conflicts_with_all = ["source", "point"])]
        all: bool,
        /// Drill the backups of this recovery point (an id or `latest`).
        #[arg(long, conflicts_with = "source")]
        point: Option<String>,
        /// Also write the recovery report here (Markdown) and beside it as .json.
        #[arg(long)]
        report: Option<PathBuf>,
        /// The report covers drills and backups since this long ago.
        #[arg(long, default_value = "90d")]
        since: humantime::Duration,
    },
    /// The recovery report from the recorded drills and backups: RTO and RPO actual against
    /// the objectives, drill and backup success rates, drills per month, trend.
    Report {
        /// Write it here (Markdown) and beside it as .json, instead of printing it.
        #[arg(long)]
        to: Option<PathBuf>,
        /// Cover drills and backups since this long ago.
        #[arg(long, default_value = "90d")]
        since: humantime::Duration,
    },
    /// Is every source protected as its objectives say? Backup age against the RPO, drills
    /// (`drill_every`), size anomalies, overdue retention, WAL gaps, stale copies; exit 3 when
    /// anything is wrong.
    Status {
        /// Print the Prometheus text exposition format instead of the table.
        #[arg(long)]
        prometheus: bool,
        /// Also write the Prometheus format to this file, atomically (node_exporter's
        /// textfile collector: `--textfile /var/lib/node_exporter/textfile/dr.prom`).
        #[arg(long)]
        textfile: Option<PathBuf>,
    },
    /// Run the [[schedules]] of the configuration (cron, UTC): backup, verify, prune; stops
    /// cleanly on SIGTERM. Logs go to stderr (info level unless -v/RUST_LOG say otherwise).
    Daemon,
    /// Measure on this machine and repository: the pipeline for each zstd level and
    /// parallelism, the restore of a backup (null sink and scratch target), and the projected
    /// time to restore the largest backup of each source.
    Bench {
        /// MiB of generated data per pipeline run (written to a scratch prefix, removed after).
        #[arg(long, default_value_t = 256)]
        size_mib: u64,
        /// zstd levels to try, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,3")]
        levels: Vec<i32>,
        /// Parts processed at once, comma-separated (default: the configured value).
        #[arg(long, value_delimiter = ',')]
        threads: Vec<usize>,
        /// The backup whose restore is timed: an id or a source (default: the largest).
        #[arg(long)]
        backup: Option<String>,
        /// Parts processed at once in the timed restore (default: the configured value).
        #[arg(long)]
        restore_threads: Option<usize>,
        /// Also time the restore with this delay added to every request of the store (`50ms`:
        /// as from a store that much farther away) and project each source's restore at it.
        #[arg(long)]
        latency: Option<humantime::Duration>,
    },
    /// Apply the retention policies: delete the backups no rule keeps, and stale orphans.
    Prune {
        /// Only print the plan with its reasons.
        #[arg(long)]
        dry_run: bool,
        /// Orphans (leftovers of failed backups) younger than this are kept.
        #[arg(long, default_value = "1h")]
        orphan_grace: humantime::Duration,
    },
}

/// `dr restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Source name from the configuration.
    #[arg(required_unless_present = "point")]
    pub source: Option<String>,
    /// Restore every backup of a recovery point (an id or `latest`), in restore order,
    /// each into its source's own place.
    #[arg(long, conflicts_with_all = ["source", "at", "to", "only", "server", "in_place", "swap"])]
    pub point: Option<String>,
    /// Backup id or `latest`.
    #[arg(default_value = "latest")]
    pub backup: String,
    /// The newest backup at or before this time (RFC 3339, e.g. 2026-11-23T12:30:00Z).
    /// Physical PostgreSQL: the recovery target: a time, `latest` (default), or a WAL
    /// position like 0/5000028.
    #[arg(long, conflicts_with = "backup")]
    pub at: Option<String>,
    /// Restore here instead of the source's own location (PostgreSQL: the new database's
    /// name; physical PostgreSQL: the new data directory, which must not exist or be empty).
    #[arg(long)]
    pub to: Option<PathBuf>,
    /// Directory sources: give every path its recorded owner and group (needs root; the
    /// default when run as root, as `tar -x` and `rsync -a` do).
    #[arg(long, conflicts_with = "no_owners")]
    pub owners: bool,
    /// Directory sources: leave owners to the restoring user, even as root.
    #[arg(long)]
    pub no_owners: bool,
    /// Directory sources: restore only these paths or globs (repeatable; a directory
    /// selects everything under it).
    #[arg(long)]
    pub only: Vec<String>,
    /// Physical PostgreSQL: print the plan (base backup, WAL range, bytes to download) only.
    #[arg(long)]
    pub dry_run: bool,
    /// Physical PostgreSQL: start the restored server on 127.0.0.1 and wait until recovery
    /// has finished and it has promoted (run dr as the postgres user).
    #[arg(long, requires = "port")]
    pub start: bool,
    /// Physical PostgreSQL: the port for --start.
    #[arg(long)]
    pub port: Option<u16>,
    /// Physical PostgreSQL: keep the backup's archive settings, so the restored server
    /// archives its new timeline (default: archive_mode is turned off in the copy).
    #[arg(long)]
    pub keep_archiving: bool,
    /// Replace the target even if another process has it open (the previous data is kept);
    /// PostgreSQL: replace an existing target database. Redis `--server`: replay into a
    /// server that holds keys (a safety backup of it, label pre-restore, is taken first).
    /// Redis `rdb_path`: swap the file in although the server at `url` runs and saves to it
    /// (it will overwrite the restored file on its next save or shutdown).
    #[arg(long)]
    pub force: bool,
    /// PostgreSQL: after the checks pass, swap the restored database in by rename (the
    /// original is kept as <db>_pre_restore_<time>).
    #[arg(long)]
    pub swap: bool,
    /// PostgreSQL: restore into the existing database itself (pg_restore --clean in one
    /// transaction), after taking a safety backup of it labelled `pre-restore`.
    #[arg(long, conflicts_with_all = ["swap", "to"])]
    pub in_place: bool,
    /// PostgreSQL: restore on another server (postgres://user:password@host:port), into a new
    /// database named like the source's (or --to NAME). Redis: replay the keys into this
    /// server (redis://...) with RESTORE.
    #[arg(long, conflicts_with_all = ["swap", "in_place"])]
    pub server: Option<String>,
    /// PostgreSQL: apply only the backup's roles (pg_dumpall --globals-only) to the source's
    /// server, or to --server URL: missing roles are created with their attributes, settings
    /// and memberships; existing roles are left as they are and listed.
    #[arg(long, conflicts_with_all = ["swap", "in_place", "to", "point"])]
    pub globals: bool,
    /// PostgreSQL `--globals` and `--server`: also restore the roles' password hashes
    /// (default: roles are created without passwords).
    #[arg(long)]
    pub with_role_passwords: bool,
    /// PostgreSQL: how long `--swap` waits for the sessions connected to the original to
    /// leave (they are named; `--force` ends them instead), and how long `--in-place` waits
    /// for a lock before giving up (naming the relation and who holds it).
    #[arg(long, default_value = "30s")]
    pub wait: humantime::Duration,
}

impl RestoreArgs {
    /// The source named (empty for `--point`, which names none).
    pub fn source_name(&self) -> &str {
        self.source.as_deref().unwrap_or_default()
    }
}
