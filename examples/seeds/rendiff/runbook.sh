#!/usr/bin/env bash
# Rendiff FFmpeg API (seed 000) as dr: builds a small instance (SQLite jobs and api_keys,
# uploads and processed outputs, .env and certificates), takes the nightly backup as one
# recovery point, then goes through the runbook's four "Common Scenarios" (database
# corruption, storage failure, configuration loss, complete system failure), recovers each
# with dr, validates as the runbook's checklist does, runs the monthly recovery test and
# prints the measured RTO and RPO next to the objectives (RTO 1 h, RPO 24 h).
#
# Run by dr-cli/tests/seeds.rs (cargo test -p dr-cli --test seeds -- rendiff --nocapture),
# or by hand: DR=target/debug/dr WORK=$(mktemp -d) SEED_DIR=examples/seeds/rendiff bash examples/seeds/rendiff/runbook.sh
source "$SEED_DIR/../lib.sh"

APP=$WORK/app
DB=$APP/data/rendiff.db

say "building a small Rendiff instance in $APP"
mkdir -p "$APP/data" "$APP/storage/uploads" "$APP/storage/processed" "$APP/storage/tmp" "$APP/config/certs"
sqlite3 "$DB" <<'SQL'
PRAGMA journal_mode = WAL;
CREATE TABLE api_keys (id INTEGER PRIMARY KEY, key_hash TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE jobs (id INTEGER PRIMARY KEY, api_key_id INTEGER REFERENCES api_keys(id),
                   status TEXT NOT NULL, input_path TEXT, output_path TEXT, created_at TEXT NOT NULL);
INSERT INTO api_keys (key_hash, created_at) VALUES ('h1', datetime('now')), ('h2', datetime('now'));
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
INSERT INTO jobs (api_key_id, status, input_path, output_path, created_at)
  SELECT 1 + i % 2, CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'completed' END,
         'uploads/in-' || i || '.mp4', 'processed/out-' || i || '.mp4', datetime('now') FROM n;
SQL
for i in $(seq 1 40); do
  head -c $((20000 + i * 997)) /dev/urandom > "$APP/storage/uploads/in-$i.mp4"
  head -c $((9000 + i * 131)) /dev/urandom > "$APP/storage/processed/out-$i.mp4"
done
echo "partial" > "$APP/storage/tmp/encoding.part"
printf 'DATABASE_URL=sqlite:///data/rendiff.db\nAPI_SECRET=%s\n' "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$APP/config/.env"
chmod 600 "$APP/config/.env"
echo "-----BEGIN CERTIFICATE-----" > "$APP/config/certs/server.pem"
echo "-----BEGIN PRIVATE KEY-----" > "$APP/config/certs/server.key"
chmod 600 "$APP/config/certs/server.key"
(cd "$APP" && find storage config -type f ! -path 'storage/tmp/*' | sort | xargs sha256sum) > "$WORK/files.sha256"
# What the recoveries must bring back, as sqlite3, find and sha256sum see it.
DB_DIGEST=$(sqlite_digest "$DB")
STORAGE_DIGEST=$(tree_digest "$APP/storage" ! -path './tmp*')
CONFIG_DIGEST=$(tree_digest "$APP/config")

say "setup: a key and an encrypted local repository"
render
dr keygen
dr init

say "daily backup, 2:00 AM UTC (one recovery point), then the automatic integrity check"
dr backup --group rendiff --label daily
dr verify --level restore

say "scenario 1: database corruption"
dd if=/dev/urandom of="$DB" bs=4096 seek=1 count=2 conv=notrunc status=none
if [ "$(sqlite3 "$DB" 'PRAGMA integrity_check' 2>&1 | head -1)" = ok ]; then die "the corruption did not take"; fi
timed T_DB dr restore database
expect "integrity_check" "$(sqlite3 "$DB" 'PRAGMA integrity_check')" ok
expect "database as backed up (content, pragmas, owner, mode)" "$(sqlite_digest "$DB")" "$DB_DIGEST"
expect "jobs" "$(sqlite3 "$DB" 'SELECT count(*) FROM jobs')" 500
expect "corrupted file kept aside" "$(ls "$APP/data" | grep -c 'rendiff.db.pre-restore-' || true)" 1

say "scenario 2: storage failure (the uploads volume is lost)"
rm -rf "$APP/storage"
timed T_STORAGE dr restore storage
expect "files restored and unchanged" "$(cd "$APP" && sha256sum --quiet -c "$WORK/files.sha256" 2>&1 | wc -l)" 0
expect "zero-size files" "$(find "$APP/storage" -type f -size 0 | wc -l)" 0
expect "uploads" "$(ls "$APP/storage/uploads" | wc -l)" 40
expect "storage tree as backed up" "$(tree_digest "$APP/storage")" "$STORAGE_DIGEST"

say "scenario 3: configuration loss"
rm -f "$APP/config/.env"
timed T_CONFIG dr restore config
expect ".env back" "$(grep -c API_SECRET "$APP/config/.env")" 1
expect ".env mode" "$(stat -c %a "$APP/config/.env")" 600
expect "configuration tree as backed up" "$(tree_digest "$APP/config")" "$CONFIG_DIGEST"

say "scenario 4: complete system failure (database, storage and configuration lost)"
rm -rf "$APP"
timed T_SYSTEM dr restore --point latest
expect "service stopped and started again by the group's hooks" "$(cut -d' ' -f1 "$WORK/service.state")" started
expect "the hooks saw the point restored" "$(cut -d' ' -f2 "$WORK/service.state")" "$(latest_point)"
expect_healthy
expect "integrity_check" "$(sqlite3 "$DB" 'PRAGMA integrity_check')" ok
expect "database as backed up" "$(sqlite_digest "$DB")" "$DB_DIGEST"
expect "files restored and unchanged" "$(cd "$APP" && sha256sum --quiet -c "$WORK/files.sha256" 2>&1 | wc -l)" 0
expect "storage tree as backed up" "$(tree_digest "$APP/storage")" "$STORAGE_DIGEST"
expect "configuration tree as backed up" "$(tree_digest "$APP/config")" "$CONFIG_DIGEST"
expect "certificate key mode" "$(stat -c %a "$APP/config/certs/server.key")" 600

say "monthly recovery test: a drill of the newest recovery point, with the report"
dr drill --point latest --report "$WORK/drill-report.md"
cat "$WORK/drill-report.md"

say "retention (30 daily, 12 weekly, 12 monthly): the plan"
dr prune --dry-run

say "measured against the seed's objectives"
objective "RTO: database corruption" "$T_DB" 3600
objective "RTO: storage failure" "$T_STORAGE" 3600
objective "RTO: configuration loss" "$T_CONFIG" 3600
objective "RTO: complete system failure" "$T_SYSTEM" 3600
objective "RTO: monthly drill, database" "$(figure database rto_actual_s)" 3600
objective "RPO: newest recoverable database backup" "$(figure database rpo_actual_s)" 86400
finish
