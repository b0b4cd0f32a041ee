# Shared by the seed runbooks (examples/seeds/*/runbook.sh): rendering dr.toml, running
# dr, timing recoveries, checking results and comparing with the seed's objectives.
#
# The runbooks expect, in the environment (dr-cli/tests/seeds.rs sets them after starting
# real servers on 127.0.0.1):
#   DR          the dr binary            WORK        an empty work directory
#   SEED_DIR    the runbook's directory  PGPORT, PGPASSWORD, REDIS_PORT, S3_ENDPOINT as needed
# shellcheck shell=bash

set -euo pipefail

MISSED=0

say() { printf '\n== %s\n' "$*"; }
die() { printf 'RUNBOOK FAILED: %s\n' "$*" >&2; exit 1; }

# render: $SEED_DIR/dr.toml with @WORK@, @PGPORT@, @REDIS_PORT@, @S3_ENDPOINT@ filled in.
render() {
  sed -e "s|@WORK@|$WORK|g" \
      -e "s|@PGPORT@|${PGPORT:-}|g" \
      -e "s|@REDIS_PORT@|${REDIS_PORT:-}|g" \
      -e "s|@S3_ENDPOINT@|${S3_ENDPOINT:-}|g" \
      -e "s|@DR@|$DR|g" \
      "$SEED_DIR/dr.toml" > "$WORK/dr.toml"
}

# dr ARGS: the dr binary on this runbook's configuration.
dr() { "$DR" --config "$WORK/dr.toml" "$@"; }

# timed VAR CMD...: runs CMD, prints its output (kept in $WORK/last.out for expect_healthy),
# stores its wall time in seconds in VAR.
timed() {
  local var=$1; shift
  local start end status=0
  start=$(date +%s.%N)
  "$@" > "$WORK/last.out" || status=$?
  end=$(date +%s.%N)
  cat "$WORK/last.out"
  [ "$status" -eq 0 ] || die "$* exited $status"
  printf -v "$var" '%s' "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')"
}

# latest_backup SOURCE, latest_point: the id of the newest backup of SOURCE, of the newest
# recovery point.
latest_backup() { dr list "$1" --json | jq -r 'sort_by(.started_at) | last | .id'; }
latest_point() { dr list --points --json | jq -r 'sort_by(.created_at) | last | .id'; }

# expect_healthy: the last timed restore waited for its health check and measured its RTO
# until it passed (its last line: a point restore's members print their own before it).
expect_healthy() {
  expect "RTO measured until the health check passed" \
    "$(tail -n 1 "$WORK/last.out" | grep -c 'healthy .* after the restore began (RTO' || true)" 1
}

# expect WHAT ACTUAL EXPECTED: the runbook's validation steps.
expect() {
  if [ "$2" != "$3" ]; then
    die "$1: expected $3, found $2"
  fi
  printf '  ok  %s: %s\n' "$1" "$2"
}

# sql DB QUERY: one value from PostgreSQL (PGPORT, PGPASSWORD from the environment).
sql() {
  psql -X -A -t -q -v ON_ERROR_STOP=1 "postgres://postgres@127.0.0.1:$PGPORT/$1" -c "$2"
}

# sql_on PORT DB QUERY: the same on another server (a recovered cluster).
sql_on() {
  psql -X -A -t -q -v ON_ERROR_STOP=1 "postgres://postgres@127.0.0.1:$1/$2" -c "$3"
}

# rcli ARGS: redis-cli on the seed's server.
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

# objective WHAT MEASURED_SECONDS OBJECTIVE_SECONDS: one line of the final table. Only a
# measurement meets an objective: a missing, empty, non-numeric (jq's "null"), zero or
# negative figure is MISSED, and so is an objective that is not a positive number.
objective() {
  local verdict=met shown=$2
  if ! is_positive "$2" || ! is_positive "$3"; then
    verdict="MISSED (no measurement)"
    MISSED=1
    shown=${2:-missing}
  elif awk -v m="$2" -v o="$3" 'BEGIN { exit !(m > o) }'; then
    verdict=MISSED
    MISSED=1
  fi
  if is_positive "$shown"; then
    printf "  %-48s %10.2f s   objective %8s s   %s\n" "$1" "$shown" "$3" "$verdict"
  else
    printf "  %-48s %12s   objective %8s s   %s\n" "$1" "$shown" "$3" "$verdict"
  fi
}

# is_positive VALUE: VALUE is a decimal number greater than zero.
is_positive() {
  [[ "$1" =~ ^[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$ ]] && awk -v v="$1" 'BEGIN { exit !(v > 0) }'
}

# figure SOURCE FIELD: a figure of the drill report written by `dr drill --report`.
figure() {
  jq -r --arg s "$1" ".sources[] | select(.source == \$s) | .$2" "$WORK/drill-report.json"
}

# finish: the verdict over every objective line.
finish() {
  if [ "$MISSED" -ne 0 ]; then
    die "an objective was missed (see above)"
  fi
  printf '\nall objectives met\n'
}

# s3 METHOD KEY [CURL ARGS]: a signed request to the S3-compatible server for the bucket
# `dr-test` (S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION).
s3() {
  local method=$1 key=$2; shift 2
  curl -sf --aws-sigv4 "aws:amz:${AWS_REGION:-us-east-1}:s3" \
       --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -X "$method" "$@" "$S3_ENDPOINT/dr-test/$key"
}

# s3_count PREFIX: how many objects the bucket holds under PREFIX.
s3_count() {
  s3 GET "?list-type=2&prefix=$1" | grep -o '<Key>' | wc -l
}

# archive_now: switches PostgreSQL to a new WAL segment and waits until the finished one is
# archived (by archive_command = dr wal-push).
archive_now() {
  local segment last
  segment=$(sql postgres "SELECT pg_walfile_name(pg_current_wal_lsn())")
  sql postgres "SELECT pg_switch_wal()" > /dev/null
  for _ in $(seq 1 600); do
    last=$(sql postgres "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
    # Only a plain segment name (not a .backup or .history file) at or past ours counts.
    if [ "${#last}" -eq 24 ] && [[ ! "${last:8}" < "${segment:8}" ]]; then return 0; fi
    sleep 0.1
  done
  die "WAL segment $segment was not archived within a minute"
}

# now_utc: the server's clock, a second away from the commits around it (a PITR target).
now_utc() {
  sleep 1.1
  sql postgres "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
  sleep 1.1
}

# stop_cluster DIR: stops a cluster `dr restore --start` started (fast shutdown).
stop_cluster() {
  "$PG_BIN/pg_ctl" -D "$1" -m fast -w stop > /dev/null 2>&1 || true
}

# --- Digests of the whole thing, computed by the datastores' own tools (never by dr) -------
# A runbook takes them from the source before the backup and compares them after each
# recovery: equal digests mean the same data, not merely the same number of rows.

# pg_digest PORT DB: every user table's content (md5 of its rows, sorted) and the schema
# (`pg_dump --schema-only` without comments and without the random key of its `\restrict`
# lines), one line each.
pg_digest() {
  local port=$1 db=$2 table
  for table in $(sql_on "$port" "$db" "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"); do
    printf 'table %s %s\n' "$table" \
      "$(sql_on "$port" "$db" "SELECT md5(coalesce(string_agg(t::text, E'\n' ORDER BY t::text), '')) FROM $table t")"
  done
  local schema digest
  schema=$(mktemp "$WORK/schema.XXXXXX")
  "$PG_BIN/pg_dump" --schema-only -h 127.0.0.1 -p "$port" -U postgres "$db" \
    | grep -v -e '^--' -e '^\\restrict ' -e '^\\unrestrict ' > "$schema"
  digest=$(sha256sum < "$schema" | cut -c1-64)
  mv "$schema" "$WORK/schema-$digest.sql"   # kept: `diff` two of them when digests differ
  printf 'schema %s\n' "$digest"
}

# expect_db WHAT ACTUAL EXPECTED: expect for two pg_digest results; on a difference, shows
# the diff of the two schemas.
expect_db() {
  if [ "$2" != "$3" ]; then
    local a b
    a=$(sed -n 's/^schema //p' <<< "$3"); b=$(sed -n 's/^schema //p' <<< "$2")
    [ "$a" = "$b" ] || diff "$WORK/schema-$a.sql" "$WORK/schema-$b.sql" >&2 || true
  fi
  expect "$@"
}

# pg_sequences PORT DB: every sequence's value. Apart from pg_digest: a physical recovery
# legitimately moves sequences ahead (PostgreSQL logs them 32 values in advance).
pg_sequences() {
  sql_on "$1" "$2" "SELECT coalesce(string_agg(format('%I.%I=%s', schemaname, sequencename, coalesce(last_value::text, 'unset')), ' ' ORDER BY schemaname, sequencename), 'none') FROM pg_sequences"
}

# sqlite_digest DB: content (`.sha3sum`), page size, journal mode, user_version,
# application_id, owner and mode of the file.
sqlite_digest() {
  printf '%s page_size=%s journal_mode=%s user_version=%s application_id=%s owner=%s\n' \
    "$(sqlite3 "$1" .sha3sum)" "$(sqlite3 "$1" 'PRAGMA page_size')" "$(sqlite3 "$1" 'PRAGMA journal_mode')" \
    "$(sqlite3 "$1" 'PRAGMA user_version')" "$(sqlite3 "$1" 'PRAGMA application_id')" "$(stat -c '%u:%g:%a' "$1")"
}

# redis_digest: `DEBUG DIGEST` of every database and the key count of each.
redis_digest() {
  printf '%s %s\n' "$(rcli DEBUG DIGEST)" "$(rcli INFO keyspace | grep '^db' | cut -d, -f1,2 | tr -d '\r' | tr '\n' ' ')"
}

# tree_digest DIR [FIND ARGS]: every entry's path, type, mode, symlink target, and every
# file's size, mtime and SHA-256, as `find` and `sha256sum` see them.
tree_digest() {
  local dir=$1; shift
  (cd "$dir" && {
    find . "$@" -printf '%P %y %m %l\n' | LC_ALL=C sort
    find . "$@" -type f -printf '%P %s %T@\n' | LC_ALL=C sort
    find . "$@" -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
  }) | sha256sum | cut -c1-64
}
