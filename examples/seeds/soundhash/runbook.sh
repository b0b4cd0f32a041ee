#!/usr/bin/env bash
# SoundHash (seed 003) as dr: base backups + the WAL archive for point-in-time recovery, a
# logical dump, copies in two more places. Scenarios: database corruption (full restore from
# the dump), accidental data deletion (PITR to the second before the DELETE), complete server
# failure (PITR to the newest archived WAL), region failure (the repository is lost: recover
# from the copies); then the monthly test-restore report and the measured RTO and RPO
# against RTO < 1 h and RPO < 15 min.
#
# Run by dr-cli/tests/seeds.rs, which starts PostgreSQL with archive_command calling dr, and
# an S3-compatible server; it runs this as the postgres user.
source "$SEED_DIR/../lib.sh"

RECOVERED=$WORK/recovered
trap 'stop_cluster "$RECOVERED"' EXIT

say "building a small SoundHash instance"
render
dr keygen
dr init
sql postgres "CREATE DATABASE soundhash"
sql soundhash "
  CREATE TABLE tracks (id serial PRIMARY KEY, title text NOT NULL, added_at timestamptz NOT NULL DEFAULT clock_timestamp());
  CREATE TABLE fingerprints (track_id int NOT NULL REFERENCES tracks(id) ON DELETE CASCADE, hash bigint NOT NULL);
  INSERT INTO tracks (title) SELECT 'track ' || i FROM generate_series(1, 1000) i;
  INSERT INTO fingerprints SELECT id, (random() * 1e15)::bigint FROM tracks, generate_series(1, 5);"

say "the nightly base backup and dump, copied offsite"
dr backup db
dr backup db-dump
DUMPED=$(pg_digest "$PGPORT" soundhash)
DUMPED_SEQUENCES=$(pg_sequences "$PGPORT" soundhash)
sql soundhash "INSERT INTO tracks (title) SELECT 'added after the backup ' || i FROM generate_series(1, 200) i"
archive_now
dr copy
dr list

say "scenario 1: database corruption: full restore from the dump into a new database, swapped in"
sql soundhash "UPDATE fingerprints SET hash = 0"
timed T_FULL dr restore db-dump --swap
expect "API and worker stopped and started again by the dump's hooks" "$(cat "$WORK/services.state")" "started $(latest_backup db-dump)"
expect_healthy
expect "tracks as dumped" "$(sql soundhash 'SELECT count(*) FROM tracks')" 1000
expect_db "database as dumped (every table's rows, the schema)" "$(pg_digest "$PGPORT" soundhash)" "$DUMPED"
expect "sequences as dumped" "$(pg_sequences "$PGPORT" soundhash)" "$DUMPED_SEQUENCES"
expect "fingerprints intact" "$(sql soundhash 'SELECT count(*) FROM fingerprints WHERE hash = 0')" 0
sql postgres "DROP DATABASE IF EXISTS $(sql postgres "SELECT string_agg(quote_ident(datname), ', ') FROM pg_database WHERE datname LIKE 'soundhash_pre_restore_%'")"
sql soundhash "INSERT INTO tracks (title) SELECT 'added after the backup ' || i FROM generate_series(1, 200) i"

say "scenario 2: accidental data deletion at a known time"
AT_T=$(pg_digest "$PGPORT" soundhash)
T=$(now_utc)
sql soundhash "INSERT INTO tracks (title) SELECT 'added after T ' || i FROM generate_series(1, 30) i"
sql soundhash "DELETE FROM tracks WHERE title LIKE 'track %'"
archive_now
dr restore db --at "$T" --dry-run
timed T_PITR dr restore db --at "$T" --to "$RECOVERED" --start --port "$SPARE_PORT"
expect "tracks at T" "$(sql_on "$SPARE_PORT" soundhash 'SELECT count(*) FROM tracks')" 1200
expect "none written after T" "$(sql_on "$SPARE_PORT" soundhash "SELECT count(*) FROM tracks WHERE title LIKE 'added after T%'")" 0
expect "fingerprints at T" "$(sql_on "$SPARE_PORT" soundhash 'SELECT count(*) FROM fingerprints')" 5000
expect_db "database as at T (every table's rows, the schema)" "$(pg_digest "$SPARE_PORT" soundhash)" "$AT_T"
stop_cluster "$RECOVERED"; rm -rf "$RECOVERED"

say "scenario 3: complete server failure: recover to the newest archived WAL"
sql soundhash "INSERT INTO tracks (title) VALUES ('the last track before the failure')"
archive_now
LAST=$(pg_digest "$PGPORT" soundhash)
timed T_LATEST dr restore db --at latest --to "$RECOVERED" --start --port "$SPARE_PORT"
expect "the last write is there" "$(sql_on "$SPARE_PORT" soundhash "SELECT count(*) FROM tracks WHERE title = 'the last track before the failure'")" 1
expect_db "database as at the failure" "$(pg_digest "$SPARE_PORT" soundhash)" "$LAST"
stop_cluster "$RECOVERED"; rm -rf "$RECOVERED"

say "scenario 4: region failure: the repository is lost, the copies are not"
dr copy
mv "$WORK/backups" "$WORK/backups.lost"
dr list
timed T_REGION dr restore db --at latest --to "$RECOVERED" --start --port "$SPARE_PORT"
expect_db "recovered from the copy" "$(pg_digest "$SPARE_PORT" soundhash)" "$LAST"
stop_cluster "$RECOVERED"; rm -rf "$RECOVERED"
mv "$WORK/backups.lost" "$WORK/backups"

say "monthly test restore with the report (WAL continuity, pg_verifybackup, the dump restored)"
sql soundhash "INSERT INTO tracks (title) VALUES ('a write just before the drill')"
archive_now
dr verify db
dr drill --report "$WORK/drill-report.md"
cat "$WORK/drill-report.md"

say "measured against the seed's objectives"
objective "RTO: database corruption (full restore)" "$T_FULL" 3600
objective "RTO: accidental deletion (PITR to T)" "$T_PITR" 3600
objective "RTO: complete server failure (PITR latest)" "$T_LATEST" 3600
objective "RTO: region failure (from the copy)" "$T_REGION" 3600
objective "RTO: monthly drill (recovery on a scratch server)" "$(figure db rto_actual_s)" 3600
objective "RPO: WAL archive at the drill" "$(figure db rpo_actual_s)" 900
finish
