//! Fidelity fingerprint for Redis, computed with `redis-cli` against the server only (no dr
//! code): what a user of the restored server would notice.
//!
//! Fields:
//! - `keyspace`: per database `db<N> keys=<K> expires=<E>` (`INFO keyspace`, `avg_ttl` left
//!   out: it is a sampled estimate).
//! - `digest.db<N>`: `DEBUG DIGEST` of the database (every key's name, type, value and whether
//!   it has an expiry; needs `enable-debug-command`, which the harness sets).
//! - `types.db<N>`: keys per type (`TYPE`), e.g. `hash=2 list=1 stream=1 string=5`.
//! - `expiry.db<N>`: one line per key with an expiry, sorted: hex of the key name, space,
//!   `PEXPIRETIME` (absolute Unix ms). Compared within a tolerance by
//!   [`assert_faithful_within`] (exact equality is what RDB and `ABSTTL` restores give; a
//!   logical backup of a server without `PEXPIRETIME` counts from `PTTL`).
//! - `streams.db<N>`: per stream key (hex name), `XINFO STREAM <key> FULL COUNT 0` rendered as
//!   text without the `radix-tree-*` memory-layout counters: entries, last/first/max-deleted
//!   ids, entries added, consumer groups with their last-delivered id, entries-read, lag,
//!   pending entries (id, consumer, delivery time, count) and consumers (seen time, pending)
//!   (`DEBUG DIGEST` does not cover consumer groups).
//! - `functions`: `FUNCTION LIST WITHCODE` (library name, engine, functions with their
//!   descriptions and flags, code), libraries sorted by name.
//!
//! Object encodings, LFU/LRU counters and memory usage are not part of it: they are not data.

use std::collections::BTreeMap;
use std::path::Path;

use super::Fingerprint;
use crate::RedisServer;

/// The tolerance of [`assert_faithful_within`] for absolute expiry times: 2 s.
pub const EXPIRY_TOLERANCE_MS: i64 = 2000;

/// Per key of the database: its type, expiry time and, for streams, `XINFO STREAM FULL`;
/// key names in hex, other strings `'quoted'` with bytes outside `[A-Za-z0-9.:_-]` as `%XX`
/// (redis-cli's JSON output mangles quotes and backslashes). Returns `{types, expiry,
/// streams}` as three strings, lines separated by `;`.
const DB_SCRIPT: &str = r#"
local function hex(s)
  return (string.gsub(s, '.', function(c) return string.format('%02x', string.byte(c)) end))
end
local function esc(s)
  return (string.gsub(s, '[^%w%-%.:_]', function(c) return string.format('%%%02x', string.byte(c)) end))
end
local function ser(v)
  if type(v) == 'table' then
    if v.ok then return v.ok end
    if v.err then return 'ERR ' .. v.err end
    local parts = {}
    for i, x in ipairs(v) do parts[i] = ser(x) end
    return '[' .. table.concat(parts, ',') .. ']'
  elseif type(v) == 'number' then return string.format('%.0f', v)
  elseif v == false then return 'nil'
  else return "'" .. esc(v) .. "'" end
end
local types, expiry, streams = {}, {}, {}
local cursor = '0'
repeat
  local r = redis.call('SCAN', cursor, 'COUNT', 1000)
  cursor = r[1]
  for _, k in ipairs(r[2]) do
    local t = redis.call('TYPE', k).ok
    types[t] = (types[t] or 0) + 1
    local at = redis.call('PEXPIRETIME', k)
    if at >= 0 then expiry[#expiry + 1] = hex(k) .. ' ' .. string.format('%.0f', at) end
    if t == 'stream' then
      local info = redis.call('XINFO', 'STREAM', k, 'FULL', 'COUNT', 0)
      local kept = {}
      for i = 1, #info, 2 do
        if not string.find(info[i], '^radix%-tree') then
          kept[#kept + 1] = info[i]
          kept[#kept + 1] = info[i + 1]
        end
      end
      streams[#streams + 1] = hex(k) .. ' ' .. ser(kept)
    end
  end
until cursor == '0'
table.sort(expiry)
table.sort(streams)
local tl = {}
for t, n in pairs(types) do tl[#tl + 1] = t .. '=' .. n end
table.sort(tl)
return {table.concat(tl, ' '), table.concat(expiry, ';'), table.concat(streams, ';')}
"#;

/// The fingerprint of every database and the Functions libraries of `server`.
pub fn fingerprint_server(server: &RedisServer) -> Fingerprint {
    let mut fp = Fingerprint::new();
    let databases = keyspace(server);
    fp.set(
        "keyspace",
        databases
            .iter()
            .map(|(db, counts)| format!("db{db} {counts}"))
            .collect::<Vec<_>>()
            .join("; "),
    );
    for db in databases.keys() {
        let n = db.to_string();
        fp.set(
            format!("digest.db{db}"),
            server.cli(&["-n", &n, "DEBUG", "DIGEST"]),
        );
        let out = server.cli(&["-n", &n, "--quoted-json", "EVAL", DB_SCRIPT, "0"]);
        let parts: Vec<String> = serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!(
                "db{db}: unexpected script output ({e}): {}",
                super::shorten(&out)
            )
        });
        let [types, expiry, streams] = <[String; 3]>::try_from(parts)
            .unwrap_or_else(|p| panic!("db{db}: expected 3 script results, got {p:?}"));
        fp.set(format!("types.db{db}"), types);
        fp.set(format!("expiry.db{db}"), expiry.replace(';', "\n"));
        fp.set(format!("streams.db{db}"), streams.replace(';', "\n"));
    }
    fp.set("functions", functions(server));
    fp
}

/// `keys=K expires=E` per database from `INFO keyspace`.
fn keyspace(server: &RedisServer) -> BTreeMap<u32, String> {
    server
        .cli(&["INFO", "keyspace"])
        .lines()
        .filter_map(|line| {
            let (db, rest) = line.trim().split_once(':')?;
            let db: u32 = db.strip_prefix("db")?.parse().ok()?;
            let kept: Vec<&str> = rest
                .split(',')
                .filter(|p| p.starts_with("keys=") || p.starts_with("expires="))
                .collect();
            Some((db, kept.join(" ")))
        })
        .collect()
}

/// `FUNCTION LIST WITHCODE` as JSON, libraries sorted by name.
fn functions(server: &RedisServer) -> String {
    let out = server.cli(&["--quoted-json", "FUNCTION", "LIST", "WITHCODE"]);
    let value: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("unexpected FUNCTION LIST output ({e}): {out}"));
    let mut libraries = value.as_array().cloned().unwrap_or_default();
    libraries.sort_by_key(|l| l["library_name"].to_string());
    serde_json::Value::Array(libraries).to_string()
}

/// Owner, group and mode of a file (`stat`), e.g. for the restored `dump.rdb`:
/// fields `file.owner` (`uid:gid`) and `file.mode` (octal).
pub fn fingerprint_file(path: &Path) -> Fingerprint {
    let out = std::process::Command::new("stat")
        .args(["-c", "%u:%g %a"])
        .arg(path)
        .output()
        .expect("stat");
    assert!(out.status.success(), "stat {}", path.display());
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let (owner, mode) = text.split_once(' ').expect("stat output");
    let mut fp = Fingerprint::new();
    fp.set("file.owner", owner);
    fp.set("file.mode", mode);
    fp
}

/// Differences in the `expiry.*` fields beyond `tolerance_ms`: a key with an expiry on one
/// side only, or whose expiry times differ by more.
pub fn expiry_differences(
    source: &Fingerprint,
    restored: &Fingerprint,
    tolerance_ms: i64,
) -> Vec<String> {
    let fields: std::collections::BTreeSet<&str> = source
        .fields()
        .chain(restored.fields())
        .filter(|f| f.starts_with("expiry."))
        .collect();
    let mut out = Vec::new();
    for field in fields {
        let want = expiries(source.get(field).unwrap_or_default());
        let got = expiries(restored.get(field).unwrap_or_default());
        for (key, at) in &want {
            match got.get(key) {
                None => out.push(format!(
                    "{field}: key {key} (hex) expired at {at} at backup time, has no expiry after the restore"
                )),
                Some(found) if (found - at).abs() > tolerance_ms => out.push(format!(
                    "{field}: key {key} (hex) expired at {at}, now at {found} ({} ms later)",
                    found - at
                )),
                Some(_) => {}
            }
        }
        for (key, at) in &got {
            if !want.contains_key(key) {
                out.push(format!(
                    "{field}: key {key} (hex) expires at {at} after the restore, had no expiry"
                ));
            }
        }
    }
    out
}

fn expiries(text: &str) -> BTreeMap<String, i64> {
    text.lines()
        .filter_map(|line| {
            let (key, at) = line.split_once(' ')?;
            Some((key.to_owned(), at.parse().ok()?))
        })
        .collect()
}

/// [`super::assert_faithful`] with the `expiry.*` fields compared within `tolerance_ms`.
pub fn assert_faithful_within(
    mode: &str,
    source: &Fingerprint,
    restored: &Fingerprint,
    tolerance_ms: i64,
) {
    let expiry_fields: Vec<String> = source
        .fields()
        .chain(restored.fields())
        .filter(|f| f.starts_with("expiry."))
        .map(str::to_owned)
        .collect();
    let names: Vec<&str> = expiry_fields.iter().map(String::as_str).collect();
    let mut differences = source
        .without(&names)
        .differences(&restored.without(&names));
    differences.extend(expiry_differences(source, restored, tolerance_ms));
    assert!(
        source.fields().next().is_some(),
        "{mode}: the source fingerprint is empty: nothing would be compared"
    );
    assert!(
        differences.is_empty(),
        "{mode}: the restored server differs from the source at backup time in {} field(s):\n  {}",
        differences.len(),
        differences.join("\n  ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_times_compare_within_the_tolerance() {
        let mut a = Fingerprint::new();
        a.set("expiry.db0", "6b31 1000000\n6b32 2000000");
        let mut b = Fingerprint::new();
        b.set("expiry.db0", "6b31 1001500\n6b32 2005000");
        let d = expiry_differences(&a, &b, EXPIRY_TOLERANCE_MS);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(
            d[0].contains("6b32") && d[0].contains("5000 ms later"),
            "{d:?}"
        );
        b.set("expiry.db0", "6b31 1000000");
        b.set("expiry.db1", "00 5");
        let d = expiry_differences(&a, &b, EXPIRY_TOLERANCE_MS);
        assert_eq!(d.len(), 2, "{d:?}");
    }
}
