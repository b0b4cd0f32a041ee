//! An oracle for S3 buckets that is not dr nor object_store: boto3 (installed with moto)
//! writes objects under raw keys and lists keys with the SHA-256 of their bodies.

use std::collections::BTreeMap;

use dr_testing::S3Server;

const SCRIPT: &str = r#"
import boto3, hashlib, json, sys
endpoint, cmd, bucket, prefix = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
if cmd == "create":
    s3.create_bucket(Bucket=bucket)
elif cmd == "put":
    for key, body in json.load(sys.stdin):
        s3.put_object(Bucket=bucket, Key=prefix + key, Body=bytes.fromhex(body))
elif cmd == "delete":
    for key in json.load(sys.stdin):
        s3.delete_object(Bucket=bucket, Key=prefix + key)
elif cmd == "dump":
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            out[o["Key"][len(prefix):]] = hashlib.sha256(body).hexdigest()
    json.dump(out, sys.stdout)
"#;

/// Runs the boto3 oracle against `server`.
pub struct Oracle<'a> {
    server: &'a S3Server,
}

impl<'a> Oracle<'a> {
    pub fn new(server: &'a S3Server) -> Self {
        Oracle { server }
    }

    fn run(&self, cmd: &str, bucket: &str, prefix: &str, input: &str) -> String {
        dr_testing::fidelity::buckets::run_boto3_script(
            self.server,
            SCRIPT,
            cmd,
            bucket,
            prefix,
            input,
        )
    }

    pub fn create_bucket(&self, bucket: &str) {
        self.run("create", bucket, "", "");
    }

    /// Writes `objects` (key relative to `prefix`, body) exactly as given.
    pub fn put(&self, bucket: &str, prefix: &str, objects: &[(String, Vec<u8>)]) {
        let list: Vec<(String, String)> = objects
            .iter()
            .map(|(k, b)| (k.clone(), hex::encode(b)))
            .collect();
        self.run(
            "put",
            bucket,
            prefix,
            &serde_json::to_string(&list).unwrap(),
        );
    }

    pub fn delete(&self, bucket: &str, prefix: &str, keys: &[&str]) {
        self.run(
            "delete",
            bucket,
            prefix,
            &serde_json::to_string(keys).unwrap(),
        );
    }

    /// Every key under `prefix` (relative) with the SHA-256 of its body.
    pub fn dump(&self, bucket: &str, prefix: &str) -> BTreeMap<String, String> {
        serde_json::from_str(&self.run("dump", bucket, prefix, "")).unwrap()
    }
}

/// SHA-256 hex of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
