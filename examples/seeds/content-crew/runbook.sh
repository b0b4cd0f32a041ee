#!/usr/bin/env bash
# Content Crew (seed 002) as dr: PostgreSQL restored into a new database and swapped in,
# verified by counts, foreign-key orphans and the newest job; Redis; file storage. Goes
# through the runbook's scenarios (database loss, accidental data deletion, file storage
# loss, Redis loss, full system loss), recovers each with dr, validates, drills and prints
# the measured RTO and RPO next to the objectives.
#
# Run by dr-cli/tests/seeds.rs, which starts PostgreSQL and Redis and sets PGPORT,
# PGPASSWORD, REDIS_PORT, DR, WORK and SEED_DIR.
source "$SEED_DIR/../lib.sh"

STORAGE=$WORK/storage

say "building a small Content Crew instance"
sql postgres "CREATE DATABASE content_crew"
sql content_crew "
  CREATE TABLE users (id serial PRIMARY KEY, email text UNIQUE NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
  CREATE TABLE content_jobs (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users(id), title text NOT NULL,
                             status text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
  CREATE TABLE artifacts (id serial PRIMARY KEY, job_id int NOT NULL REFERENCES content_jobs(id) ON DELETE CASCADE,
                          path text NOT NULL);
  INSERT INTO users (email) SELECT 'user' || i || '@example.com' FROM generate_series(1, 50) i;
  INSERT INTO content_jobs (user_id, title, status, created_at)
    SELECT 1 + i % 50, 'Episode ' || i, CASE WHEN i % 7 = 0 THEN 'failed' ELSE 'published' END,
           now() - (i || ' minutes')::interval FROM generate_series(1, 2000) i;
  INSERT INTO artifacts (job_id, path) SELECT id, 'artifacts/' || id || '.mp3' FROM content_jobs;"
NEWEST=$(sql content_crew "SELECT max(created_at) FROM content_jobs")
for i in $(seq 1 60); do
  mkdir -p "$STORAGE/artifacts/$((i % 6))"
  head -c $((4000 + i * 313)) /dev/urandom > "$STORAGE/artifacts/$((i % 6))/$i.mp3"
done
(cd "$WORK" && find storage -type f | sort | xargs sha256sum) > "$WORK/files.sha256"
for i in $(seq 1 200); do rcli HSET "session:$i" user "$((i % 50))" csrf "t$i" > /dev/null; rcli EXPIRE "session:$i" 86400 > /dev/null; done
rcli RPUSH queue:publish job-1 job-2 job-3 > /dev/null
KEYS=$(rcli DBSIZE)
# What the recoveries must bring back, as psql, pg_dump, redis-cli, find and sha256sum see it.
DB_DIGEST=$(pg_digest "$PGPORT" content_crew)
SEQUENCES=$(pg_sequences "$PGPORT" content_crew)
STORAGE_DIGEST=$(tree_digest "$STORAGE")
CACHE_DIGEST=$(redis_digest)

validate_db() {
  expect_db "database as backed up (every table's rows, the schema)" "$(pg_digest "$PGPORT" content_crew)" "$DB_DIGEST"
  expect "sequences" "$(pg_sequences "$PGPORT" content_crew)" "$SEQUENCES"
  expect "newest job (recent data)" "$(sql content_crew 'SELECT max(created_at) FROM content_jobs')" "$NEWEST"
  expect "orphaned artifacts" "$(sql content_crew 'SELECT count(*) FROM artifacts a LEFT JOIN content_jobs j ON j.id = a.job_id WHERE j.id IS NULL')" 0
}
validate_storage() {
  expect "files restored and unchanged" "$(cd "$WORK" && sha256sum --quiet -c files.sha256 2>&1 | wc -l)" 0
  expect "zero-byte files" "$(find "$STORAGE" -type f -size 0 | wc -l)" 0
  expect "storage tree as backed up" "$(tree_digest "$STORAGE")" "$STORAGE_DIGEST"
}
validate_cache() {
  expect "redis keys" "$(rcli DBSIZE)" "$KEYS"
  expect "redis data as backed up (DEBUG DIGEST)" "$(redis_digest)" "$CACHE_DIGEST"
  expect "session TTL kept" "$([ "$(rcli TTL session:7)" -gt 80000 ] && echo yes)" yes
}

say "setup and the daily backup (one recovery point)"
render
dr keygen
dr init
dr backup --group content-crew --label daily
dr verify --level restore

say "scenario 1: PostgreSQL database loss"
sql postgres "DROP DATABASE content_crew WITH (FORCE)"
timed T_DB_LOSS dr restore db --to content_crew
validate_db

say "scenario 2: accidental data deletion: restore into a new database, verify, swap"
sql content_crew "DELETE FROM content_jobs WHERE status = 'published'"
timed T_DELETION dr restore db --swap
validate_db
expect "API stopped and started again by the database's hooks" "$(cat "$WORK/api.state")" "started $(latest_backup db)"
expect_healthy
KEPT=$(sql postgres "SELECT datname FROM pg_database WHERE datname LIKE 'content_crew_pre_restore_%'")
expect "damaged database kept aside" "$(sql "$KEPT" 'SELECT count(*) FROM content_jobs')" 285
sql postgres "DROP DATABASE \"$KEPT\""

say "scenario 3: file storage loss"
rm -rf "$STORAGE"
timed T_STORAGE dr restore storage
validate_storage

say "scenario 4: Redis loss"
rcli FLUSHALL > /dev/null
timed T_CACHE dr restore cache
validate_cache

say "scenario 5: full system loss"
sql postgres "DROP DATABASE content_crew WITH (FORCE)"
rcli FLUSHALL > /dev/null
rm -rf "$STORAGE"
timed T_SYSTEM dr restore --point latest
expect "API stopped and started again by the group's hooks" "$(cat "$WORK/api.state")" "started $(latest_point)"
expect_healthy
validate_db
validate_storage
validate_cache

say "restore drill of the newest recovery point, with the report"
dr drill --point latest --report "$WORK/drill-report.md"
cat "$WORK/drill-report.md"

say "measured against the seed's objectives"
objective "RTO: database loss" "$T_DB_LOSS" 14400
objective "RTO: accidental deletion (new database + swap)" "$T_DELETION" 14400
objective "RTO: file storage loss" "$T_STORAGE" 7200
objective "RTO: Redis loss" "$T_CACHE" 3600
objective "RTO: full system loss" "$T_SYSTEM" 28800
objective "RPO: database" "$(figure db rpo_actual_s)" 86400
objective "RPO: Redis" "$(figure cache rpo_actual_s)" 3600
objective "RPO: storage" "$(figure storage rpo_actual_s)" 86400
finish
