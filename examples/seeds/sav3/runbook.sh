#!/usr/bin/env bash
# SAV3 (seed 004) as dr: PostgreSQL with continuous WAL archiving, the media bucket in S3 and
# Redis, backed up as one recovery point. Scenarios: database failure (PITR to the newest
# archived WAL into a new data directory), media storage failure (objects lost and one
# overwritten with garbage), application service failure (Redis lost), complete
# infrastructure failure (everything lost: the point restored, then the database by PITR);
# the weekly DR test with its report; measured RTO and RPO against the objectives.
#
# Run by dr-cli/tests/seeds.rs, which starts PostgreSQL (archive_command calling dr), Redis
# and an S3-compatible server, and runs this as the postgres user.
source "$SEED_DIR/../lib.sh"

RECOVERED=$WORK/recovered
trap 'stop_cluster "$RECOVERED"' EXIT

say "building a small SAV3 instance"
render
dr keygen
dr init
sql postgres "CREATE DATABASE sav3"
sql sav3 "
  CREATE TABLE users (id serial PRIMARY KEY, handle text UNIQUE NOT NULL);
  CREATE TABLE videos (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users(id), media_key text NOT NULL,
                       created_at timestamptz NOT NULL DEFAULT clock_timestamp());
  INSERT INTO users (handle) SELECT 'creator' || i FROM generate_series(1, 100) i;
  INSERT INTO videos (user_id, media_key) SELECT 1 + i % 100, 'media/' || i || '.mp4' FROM generate_series(1, 800) i;"
for i in $(seq 1 15); do
  head -c $((25000 + i * 2311)) /dev/urandom > "$WORK/media-$i.mp4"
  s3 PUT "media/$i.mp4" -T "$WORK/media-$i.mp4" > /dev/null
done
for i in $(seq 1 150); do rcli SET "feed:user:$i" "cached-feed-$i" EX 3600 > /dev/null; done
KEYS=$(rcli DBSIZE)
REDIS_DIGEST=$(redis_digest)

validate_media() {
  expect "media objects" "$(s3_count media/)" 15
  for i in 2 9; do
    s3 GET "media/$i.mp4" -o "$WORK/check.mp4"
    expect "media/$i.mp4 unchanged" "$(sha256sum < "$WORK/check.mp4")" "$(sha256sum < "$WORK/media-$i.mp4")"
  done
}

say "the daily backup of the system (one recovery point), WAL archived continuously"
dr backup --group sav3 --label daily
sql sav3 "INSERT INTO videos (user_id, media_key) SELECT 1, 'media/late-' || i || '.mp4' FROM generate_series(1, 40) i"
archive_now
# The database as the newest archived WAL holds it: what a recovery to "latest" must return.
DB_DIGEST=$(pg_digest "$PGPORT" sav3)
dr verify --level restore

say "scenario 2: database failure: PITR to the newest archived WAL, into a new data directory"
timed T_DB dr restore db --at latest --to "$RECOVERED" --start --port "$SPARE_PORT"
expect "videos including those after the base backup" "$(sql_on "$SPARE_PORT" sav3 'SELECT count(*) FROM videos')" 840
expect_db "database as at the newest archived WAL (every table's rows, the schema)" "$(pg_digest "$SPARE_PORT" sav3)" "$DB_DIGEST"
stop_cluster "$RECOVERED"; rm -rf "$RECOVERED"

say "scenario 3: media storage failure: objects lost, one overwritten"
for i in 1 2 3; do s3 DELETE "media/$i.mp4" > /dev/null; done
echo garbage > "$WORK/garbage"; s3 PUT media/9.mp4 -T "$WORK/garbage" > /dev/null
timed T_MEDIA dr restore media
validate_media

say "scenario 4: application service failure: the Redis cache is lost"
rcli FLUSHALL > /dev/null
timed T_CACHE dr restore cache
expect "services restarted by the cache's hooks" "$(cat "$WORK/services.state")" "restarted $(latest_backup cache)"
expect_healthy
expect "redis keys" "$(rcli DBSIZE)" "$KEYS"
expect "redis data as backed up (DEBUG DIGEST)" "$(redis_digest)" "$REDIS_DIGEST"

say "scenario 1: complete infrastructure failure"
rcli FLUSHALL > /dev/null
for i in $(seq 1 15); do s3 DELETE "media/$i.mp4" > /dev/null; done
timed T_POINT dr restore --point latest
expect "services stopped and started again by the group's hooks" "$(cat "$WORK/services.state")" "started $(latest_point)"
expect_healthy
timed T_INFRA_DB dr restore db --at latest --to "$RECOVERED" --start --port "$SPARE_PORT"
validate_media
expect "redis keys" "$(rcli DBSIZE)" "$KEYS"
expect "redis data as backed up (DEBUG DIGEST)" "$(redis_digest)" "$REDIS_DIGEST"
expect_db "database" "$(pg_digest "$SPARE_PORT" sav3)" "$DB_DIGEST"
stop_cluster "$RECOVERED"; rm -rf "$RECOVERED"
T_INFRA=$(awk -v a="$T_POINT" -v b="$T_INFRA_DB" 'BEGIN { printf "%.2f", a + b }')

say "weekly DR test with the report"
sql sav3 "INSERT INTO videos (user_id, media_key) VALUES (1, 'media/just-before-the-drill.mp4')"
archive_now
dr drill --report "$WORK/drill-report.md"
cat "$WORK/drill-report.md"

say "measured against the seed's objectives"
objective "RTO: database failure (PITR latest)" "$T_DB" 900
objective "RTO: media storage failure" "$T_MEDIA" 1800
objective "RTO: Redis (API services)" "$T_CACHE" 600
objective "RTO: complete infrastructure failure" "$T_INFRA" 900
objective "RTO: weekly drill (recovery on a scratch server)" "$(figure db rto_actual_s)" 900
objective "RPO: database (WAL archive at the drill)" "$(figure db rpo_actual_s)" 300
objective "RPO: media" "$(figure media rpo_actual_s)" 3600
finish
