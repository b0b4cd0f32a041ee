#!/usr/bin/env bash
# Transcode (seed 001) as dr: PostgreSQL + Redis + the video bucket in S3, backed up daily
# as one recovery point with the seed's retention (30 days for the database, 7 for Redis).
# Scenarios: database corruption (restore into a new database, verify, swap), Redis loss,
# video objects deleted from the bucket, and a complete cluster failure restored as a whole;
# then the DR drill with its report, and the measured RTO and RPO against the objectives.
#
# Run by dr-cli/tests/seeds.rs, which starts PostgreSQL, Redis and an S3-compatible server.
source "$SEED_DIR/../lib.sh"

say "building a small Transcode instance"
sql postgres "CREATE DATABASE transcode"
sql transcode "
  CREATE TABLE presets (id serial PRIMARY KEY, name text UNIQUE NOT NULL, ffmpeg_args text NOT NULL);
  CREATE TABLE jobs (id serial PRIMARY KEY, preset_id int NOT NULL REFERENCES presets(id), input_key text NOT NULL,
                     output_key text, status text NOT NULL, progress int NOT NULL DEFAULT 0,
                     created_at timestamptz NOT NULL DEFAULT now());
  INSERT INTO presets (name, ffmpeg_args) VALUES ('720p', '-vf scale=-2:720'), ('1080p', '-vf scale=-2:1080'), ('audio', '-vn');
  INSERT INTO jobs (preset_id, input_key, output_key, status, progress)
    SELECT 1 + i % 3, 'videos/in/' || i || '.mov', 'videos/out/' || i || '.mp4', 'done', 100 FROM generate_series(1, 1500) i;"
for i in $(seq 1 12); do
  head -c $((30000 + i * 1777)) /dev/urandom > "$WORK/video-$i.mov"
  s3 PUT "videos/in/$i.mov" -T "$WORK/video-$i.mov" > /dev/null
done
for i in $(seq 1 300); do rcli SET "job:$i:progress" 100 EX 604800 > /dev/null; done
rcli RPUSH queue:transcode 1501 1502 > /dev/null
KEYS=$(rcli DBSIZE)
DB_DIGEST=$(pg_digest "$PGPORT" transcode)
SEQUENCES=$(pg_sequences "$PGPORT" transcode)
REDIS_DIGEST=$(redis_digest)

validate_db() {
  expect_db "database as backed up (every table's rows, the schema)" "$(pg_digest "$PGPORT" transcode)" "$DB_DIGEST"
  expect "sequences" "$(pg_sequences "$PGPORT" transcode)" "$SEQUENCES"
}
validate_videos() {
  expect "videos in the bucket" "$(s3_count videos/in/)" 12
  s3 GET videos/in/7.mov -o "$WORK/check.mov"
  expect "video 7 unchanged" "$(sha256sum < "$WORK/check.mov")" "$(sha256sum < "$WORK/video-7.mov")"
}

say "setup and the daily backup of the cluster (one recovery point), then backup validation"
render
dr keygen
dr init
dr backup --group cluster --label daily
dr verify --level restore

say "scenario 4: database corruption (a bad migration emptied the jobs table)"
sql transcode "TRUNCATE jobs"
timed T_DB dr restore db --swap
validate_db
expect "deployments scaled down and up again by the database's hooks" "$(cat "$WORK/deployments.state")" "replicas=3 $(latest_backup db)"
expect_healthy

say "Redis recovery"
rcli FLUSHALL > /dev/null
timed T_REDIS dr restore redis
expect "redis keys" "$(rcli DBSIZE)" "$KEYS"
expect "redis data as backed up (DEBUG DIGEST)" "$(redis_digest)" "$REDIS_DIGEST"

say "video files deleted from the bucket"
for i in 3 4 5; do s3 DELETE "videos/in/$i.mov" > /dev/null; done
expect "videos left" "$(s3_count videos/in/)" 9
timed T_VIDEOS dr restore videos
validate_videos

say "scenario 5: complete cluster failure (database, Redis and bucket lost)"
sql postgres "DROP DATABASE transcode WITH (FORCE)"
sql postgres "DROP DATABASE IF EXISTS $(sql postgres "SELECT string_agg(quote_ident(datname), ', ') FROM pg_database WHERE datname LIKE 'transcode_pre_restore_%'")"
rcli FLUSHALL > /dev/null
for i in $(seq 1 12); do s3 DELETE "videos/in/$i.mov" > /dev/null; done
timed T_CLUSTER dr restore --point latest
expect "deployments scaled down and up again by the cluster's hooks" "$(cat "$WORK/deployments.state")" "replicas=3 $(latest_point)"
expect_healthy
validate_db
validate_videos
expect "redis keys" "$(rcli DBSIZE)" "$KEYS"
expect "redis data as backed up (DEBUG DIGEST)" "$(redis_digest)" "$REDIS_DIGEST"

say "DR drill of every source, with the report"
dr drill --report "$WORK/drill-report.md"
cat "$WORK/drill-report.md"

say "retention: 30 days for the database and videos, 7 for Redis"
dr prune --dry-run

say "measured against the seed's objectives"
objective "RTO: database corruption" "$T_DB" 1800
objective "RTO: Redis" "$T_REDIS" 7200
objective "RTO: deleted videos" "$T_VIDEOS" 7200
objective "RTO: complete cluster failure" "$T_CLUSTER" 7200
objective "RTO: drill, database" "$(figure db rto_actual_s)" 1800
objective "RPO: database" "$(figure db rpo_actual_s)" 86400
objective "RPO: Redis" "$(figure redis rpo_actual_s)" 86400
objective "RPO: videos" "$(figure videos rpo_actual_s)" 86400
finish
