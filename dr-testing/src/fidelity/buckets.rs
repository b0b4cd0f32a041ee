//! Fidelity fingerprint for buckets, computed through the S3 API with boto3 (installed with
//! moto in its venv), never with dr nor object_store: per key (relative to the prefix)
//! `<key> size`, `<key> sha256` of the body, `<key> content-type`, `<key> content-encoding`,
//! `<key> cache-control`, `<key> content-disposition`, `<key> content-language` (each when
//! the object has it), `<key> metadata` (user metadata, `name=value` sorted), and `keys`.
//! Also puts objects with metadata and replaces an object's metadata in place, both through
//! boto3.

use std::io::Write;
use std::process::{Command, Stdio};

use super::Fingerprint;
use crate::S3Server;

const SCRIPT: &str = r#"
import boto3, hashlib, json, sys
endpoint, cmd, bucket, prefix = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
HEADERS = ["ContentType", "ContentEncoding", "CacheControl", "ContentDisposition", "ContentLanguage"]
if cmd == "put":
    for o in json.load(sys.stdin):
        extra = {k: v for k, v in o.items() if k in HEADERS or k == "Metadata"}
        s3.put_object(Bucket=bucket, Key=prefix + o["Key"], Body=bytes.fromhex(o["Body"]), **extra)
elif cmd == "replace-metadata":
    for o in json.load(sys.stdin):
        key = prefix + o.pop("Key")
        s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
                       MetadataDirective="REPLACE", **o)
elif cmd == "fingerprint":
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for listed in page.get("Contents", []):
            got = s3.get_object(Bucket=bucket, Key=listed["Key"])
            body = got["Body"].read()
            key = listed["Key"][len(prefix):]
            out[key + " size"] = str(len(body))
            out[key + " sha256"] = hashlib.sha256(body).hexdigest()
            for h in HEADERS:
                if got.get(h):
                    name = "-".join(w.lower() for w in __import__("re").findall("[A-Z][a-z]+", h))
                    out[key + " " + name] = got[h]
            meta = got.get("Metadata") or {}
            out[key + " metadata"] = " ".join(f"{k}={v}" for k, v in sorted(meta.items()))
    out["keys"] = " ".join(sorted(k[:-len(" size")] for k in out if k.endswith(" size")))
    json.dump(out, sys.stdout)
"#;

fn boto3(server: &S3Server, cmd: &str, bucket: &str, prefix: &str, input: &str) -> String {
    run_boto3_script(server, SCRIPT, cmd, bucket, prefix, input)
}

/// Runs a Python `script` with boto3 from moto's venv against `server`: its arguments are
/// the endpoint, `cmd`, `bucket` and `prefix`; `input` goes to its stdin; returns its
/// stdout. Panics with the script's stderr when it fails.
pub fn run_boto3_script(
    server: &S3Server,
    script: &str,
    cmd: &str,
    bucket: &str,
    prefix: &str,
    input: &str,
) -> String {
    let home = std::env::var("HOME").unwrap_or_default();
    let python = format!("{home}/{}/bin/python", crate::s3::MOTO_VENV);
    let endpoint = server.options()[0].1.clone();
    let mut child = Command::new(&python)
        .args(["-c", script, &endpoint, cmd, bucket, prefix])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python} (moto's venv, with boto3): {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "boto3 {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One object to put: key (relative), body, and S3 headers as boto3 names them
/// (`ContentType`, `CacheControl`, ... and `Metadata` as a JSON object).
pub struct Object {
    /// Key relative to the prefix.
    pub key: String,
    /// Body.
    pub body: Vec<u8>,
    /// `put_object` arguments beside Bucket, Key and Body.
    pub headers: Vec<(&'static str, String)>,
    /// User metadata (`x-amz-meta-<name>`).
    pub metadata: Vec<(&'static str, &'static str)>,
}

fn to_json(
    key: &str,
    headers: &[(&str, String)],
    metadata: &[(&str, &str)],
) -> serde_json::Map<String, serde_json::Value> {
    let mut fields = serde_json::Map::new();
    fields.insert("Key".into(), key.into());
    for (name, value) in headers {
        fields.insert((*name).into(), value.clone().into());
    }
    let meta: serde_json::Map<String, serde_json::Value> = metadata
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).into()))
        .collect();
    fields.insert("Metadata".into(), meta.into());
    fields
}

/// Puts `objects` under `prefix` of `bucket` with their headers and metadata.
pub fn put_objects(server: &S3Server, bucket: &str, prefix: &str, objects: &[Object]) {
    let list: Vec<serde_json::Value> = objects
        .iter()
        .map(|o| {
            let mut fields = to_json(&o.key, &o.headers, &o.metadata);
            fields.insert("Body".into(), hex::encode(&o.body).into());
            fields.into()
        })
        .collect();
    let input = serde_json::Value::from(list).to_string();
    boto3(server, "put", bucket, prefix, &input);
}

/// Replaces an object's headers and metadata in place (`copy_object` with
/// `MetadataDirective=REPLACE`): its bytes, and so its ETag, stay the same.
pub fn replace_metadata(
    server: &S3Server,
    bucket: &str,
    prefix: &str,
    key: &str,
    headers: &[(&'static str, String)],
    metadata: &[(&'static str, &'static str)],
) {
    let input = serde_json::json!([to_json(key, headers, metadata)]).to_string();
    boto3(server, "replace-metadata", bucket, prefix, &input);
}

/// The fingerprint of every object under `prefix` (see the module documentation).
pub fn fingerprint_bucket(server: &S3Server, bucket: &str, prefix: &str) -> Fingerprint {
    let out = boto3(server, "fingerprint", bucket, prefix, "");
    let mut fp = Fingerprint::new();
    let fields: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("boto3 fingerprint: {e}: {out}"));
    for (k, v) in fields {
        fp.set(k, v);
    }
    fp
}
