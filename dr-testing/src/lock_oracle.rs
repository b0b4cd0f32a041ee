//! boto3 (installed with moto), not dr nor object_store, as the oracle for Object Lock and
//! versions: creates lock-enabled buckets, reads each object's retention, tries deletes.

use std::collections::BTreeMap;

use crate::S3Server;
use chrono::{DateTime, Utc};

const SCRIPT: &str = r#"
import boto3, json, sys
endpoint, cmd, bucket, prefix = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
def keys():
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            yield o["Key"]
if cmd == "create-locked":
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
elif cmd == "create-locked-default":
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
elif cmd == "create-versioned":
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
elif cmd == "retention":
    out = {}
    for key in keys():
        head = s3.head_object(Bucket=bucket, Key=key)
        until = head.get("ObjectLockRetainUntilDate")
        out[key[len(prefix):]] = [head.get("ObjectLockMode"), until.isoformat() if until else None]
    json.dump(out, sys.stdout)
elif cmd == "purge":
    # What an attacker holding delete rights tries: remove every version of every object.
    out = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            try:
                s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
                out[v["Key"][len(prefix):] + "@" + v["VersionId"]] = "deleted"
            except Exception as e:
                out[v["Key"][len(prefix):] + "@" + v["VersionId"]] = type(e).__name__ + ": " + str(e)[:80]
    json.dump(out, sys.stdout)
elif cmd == "delete":
    for key in keys():
        s3.delete_object(Bucket=bucket, Key=key)
elif cmd == "overwrite":
    for key in keys():
        s3.put_object(Bucket=bucket, Key=key, Body=b"ransom note")
"#;

/// Runs the oracle against `server`.
pub struct LockOracle<'a> {
    server: &'a S3Server,
}

impl<'a> LockOracle<'a> {
    /// The oracle of `server`.
    pub fn new(server: &'a S3Server) -> Self {
        LockOracle { server }
    }

    fn run(&self, cmd: &str, bucket: &str, prefix: &str) -> String {
        crate::fidelity::buckets::run_boto3_script(self.server, SCRIPT, cmd, bucket, prefix, "")
    }

    /// A bucket with Object Lock enabled (and so versioning).
    pub fn create_locked_bucket(&self, bucket: &str) {
        self.run("create-locked", bucket, "");
    }

    /// A bucket with Object Lock and a default retention of one day in governance mode:
    /// S3 locks every new object, leases and records included.
    pub fn create_locked_bucket_with_default_retention(&self, bucket: &str) {
        self.run("create-locked-default", bucket, "");
    }

    /// A bucket with versioning and no lock.
    pub fn create_versioned_bucket(&self, bucket: &str) {
        self.run("create-versioned", bucket, "");
    }

    /// Each object under `prefix`: its lock mode and retain-until date, as S3 reports them.
    pub fn retention(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> BTreeMap<String, (Option<String>, Option<DateTime<Utc>>)> {
        let raw: BTreeMap<String, (Option<String>, Option<String>)> =
            serde_json::from_str(&self.run("retention", bucket, prefix)).unwrap();
        raw.into_iter()
            .map(|(key, (mode, until))| {
                let until = until.map(|u| {
                    DateTime::parse_from_rfc3339(&u)
                        .unwrap()
                        .with_timezone(&Utc)
                });
                (key, (mode, until))
            })
            .collect()
    }

    /// Tries to delete every version under `prefix`: version -> "deleted" or the error.
    pub fn purge(&self, bucket: &str, prefix: &str) -> BTreeMap<String, String> {
        serde_json::from_str(&self.run("purge", bucket, prefix)).unwrap()
    }

    /// Deletes every object under `prefix` (delete markers on a versioned bucket).
    pub fn delete_all(&self, bucket: &str, prefix: &str) {
        self.run("delete", bucket, prefix);
    }

    /// Overwrites every object under `prefix` with a ransom note.
    pub fn overwrite_all(&self, bucket: &str, prefix: &str) {
        self.run("overwrite", bucket, prefix);
    }
}
