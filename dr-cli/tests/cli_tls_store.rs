//! S3-compatible stores behind a private CA: the test server (moto) serves HTTPS with a
//! certificate of a throwaway CA. With `ca_file` a repository there backs up, lists and
//! restores, a copy there is written and counted, and a bucket there is a source; without it
//! dr fails saying the certificate is not trusted and naming `ca_file`.

use std::path::{Path, PathBuf};
use std::process::Command;

use dr_core::object_store::ObjectStoreExt;
use dr_core::object_store::path::Path as Key;
use dr_testing::S3Server;

mod common;

struct Site {
    work: tempfile::TempDir,
    s3: S3Server,
}

impl Site {
    fn new() -> Site {
        let site = Site {
            work: tempfile::tempdir().unwrap(),
            s3: S3Server::start_tls(),
        };
        let db = rusqlite::Connection::open(site.dir().join("app.db")).unwrap();
        db.execute_batch("CREATE TABLE t(x TEXT); INSERT INTO t VALUES ('over tls');")
            .unwrap();
        site
    }

    fn dir(&self) -> &Path {
        self.work.path()
    }

    fn ca(&self) -> PathBuf {
        self.s3.ca_file().unwrap()
    }

    /// Writes dr.toml: `head` (repository, copies), then the SQLite source `app`.
    fn configure(&self, head: &str) {
        std::fs::write(
            self.dir().join("dr.toml"),
            format!("identity = \"./key.txt\"\n{head}\n[sources.app]\nkind = \"sqlite\"\npath = \"./app.db\"\n"),
        )
        .unwrap();
    }

    fn dr_env(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dr"));
        command
            .args(args)
            .current_dir(self.dir())
            .env_remove("DR_REPOSITORY")
            .env_remove("DR_REPOSITORY_CA_FILE");
        for (name, value) in self.s3.options() {
            command.env(name.to_uppercase(), value);
        }
        command.envs(env.iter().copied());
        common::output_of(command)
    }

    fn dr(&self, args: &[&str]) -> (i32, String) {
        self.dr_env(args, &[])
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out) = self.dr(args);
        assert_eq!(code, 0, "dr {args:?}: {out}");
        out
    }
}

fn assert_names_ca_file(code: i32, out: &str) {
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("not trusted"), "{out}");
    assert!(out.contains("ca_file"), "{out}");
    assert!(!out.contains("testing"), "no credentials in errors: {out}");
    assert!(
        !out.contains("rustls_platform_verifier"),
        "dr says it, not the verifier per attempt: {out}"
    );
}

#[test]
fn repository_behind_a_private_ca_backs_up_lists_and_restores_with_ca_file() {
    let site = Site::new();
    let url = site.s3.url("repo");
    site.configure(&format!(
        "[repository]\nurl = \"{url}\"\nca_file = \"{}\"\n",
        site.ca().display()
    ));
    site.ok(&["keygen"]);
    site.ok(&["init"]);
    site.ok(&["backup", "app"]);
    let listed: serde_json::Value =
        serde_json::from_str(&site.ok(&["list", "--json", "app"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    site.ok(&["restore", "app", "--to", "restored.db"]);
    let restored = rusqlite::Connection::open(site.dir().join("restored.db")).unwrap();
    let x: String = restored
        .query_row("SELECT x FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(x, "over tls");

    // Without ca_file the same repository is refused, and the message says what to set.
    site.configure(&format!("repository = \"{url}\"\n"));
    let (code, out) = site.dr(&["list"]);
    assert_names_ca_file(code, &out);
    // The flag's variable gives it back.
    let ca = site.ca().display().to_string();
    let (code, out) = site.dr_env(&["list"], &[("DR_REPOSITORY_CA_FILE", &ca)]);
    assert_eq!(code, 0, "{out}");
    // A ca_file that is not a certificate is named.
    std::fs::write(site.dir().join("junk.pem"), "not a certificate\n").unwrap();
    let (code, out) = site.dr_env(&["list"], &[("DR_REPOSITORY_CA_FILE", "junk.pem")]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("junk.pem") && out.contains("no certificate"),
        "{out}"
    );
}

#[test]
fn a_copy_behind_a_private_ca_is_written_with_ca_file() {
    let site = Site::new();
    let copy = site.s3.url("copy");
    site.configure(&format!(
        "repository = \"./repo\"\n[[copies]]\nurl = \"{copy}\"\nca_file = \"{}\"\n",
        site.ca().display()
    ));
    site.ok(&["keygen"]);
    site.ok(&["init"]);
    let out = site.ok(&["backup", "app", "--copy"]);
    assert!(out.contains("1 backups copied"), "{out}");
    let listed = site.ok(&["list"]);
    assert!(listed.contains("1/1"), "{listed}");
    let (code, text) = site.dr(&["status", "--prometheus"]);
    assert!(code == 0 || code == 3, "{text}");
    assert!(
        text.contains(&format!(
            "dr_copy_has_newest_backup{{source=\"app\",destination=\"{copy}\"}} 1"
        )),
        "{text}"
    );

    // The same copy without ca_file: dr copy fails and names it.
    site.configure(&format!("repository = \"./repo\"\ncopies = [\"{copy}\"]\n"));
    let (code, out) = site.dr(&["copy"]);
    assert_names_ca_file(code, &out);
}

#[test]
fn a_bucket_behind_a_private_ca_is_a_source_with_ca_file() {
    let site = Site::new();
    let ca = site.ca().display().to_string();
    let options: Vec<(&str, String)> = site
        .s3
        .options()
        .into_iter()
        .chain([(dr_storage::CA_FILE_OPTION, ca.clone())])
        .collect();
    let pairs: Vec<(&str, &str)> = options.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let media = dr_storage::open_store(&site.s3.url("media"), &pairs, false)
        .unwrap()
        .store();
    runtime.block_on(async {
        for (key, body) in [("a.txt", "alpha"), ("deep/b.txt", "beta")] {
            media.put(&Key::from(key), body.into()).await.unwrap();
        }
    });
    std::fs::write(
        site.dir().join("dr.toml"),
        format!(
            "repository = \"./repo\"\nidentity = \"./key.txt\"\n[sources.media]\nkind = \"bucket\"\nurl = \"{}\"\nca_file = \"{ca}\"\n",
            site.s3.url("media")
        ),
    )
    .unwrap();
    site.ok(&["keygen"]);
    site.ok(&["init"]);
    site.ok(&["backup", "media"]);
    let target = site.s3.url("media-restored");
    site.ok(&["restore", "media", "--to", &target]);
    let restored = dr_storage::open_store(&target, &pairs, false)
        .unwrap()
        .store();
    runtime.block_on(async {
        for (key, body) in [("a.txt", "alpha"), ("deep/b.txt", "beta")] {
            let got = restored.get(&Key::from(key)).await.unwrap();
            assert_eq!(got.bytes().await.unwrap(), body.as_bytes());
        }
    });

    // Without ca_file the bucket cannot be read, and the message names it.
    let config = std::fs::read_to_string(site.dir().join("dr.toml")).unwrap();
    let without = config.replace(&format!("ca_file = \"{ca}\"\n"), "");
    std::fs::write(site.dir().join("dr.toml"), without).unwrap();
    let (code, out) = site.dr(&["backup", "media", "--full"]);
    assert_names_ca_file(code, &out);
}
