//! Directory fidelity from the command line: a corpus of awkward entries backed up twice
//! (full, then incremental after changes of every kind), restored with `dr restore --owners`
//! and recovered by hand with FORMAT.md's recipe run literally (stock `age`, `zstd`, GNU
//! `tar`, `jq`, coreutils): both trees equal the source at the second backup, field by
//! field (the by-hand one but for sparseness, which FORMAT.md says tar does not keep).

mod common;

use std::process::Command;

use dr_testing::fidelity::assert_faithful;
use dr_testing::fidelity::files::{
    fields_ending, fields_under, fingerprint_tree, is_root, make_corpus, modify_corpus,
    with_source_entries, without_owners,
};

/// The bash block after the `by-hand-directory-recipe` marker in FORMAT.md.
fn recipe() -> String {
    let format =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../FORMAT.md")).unwrap();
    let after = format
        .split("<!-- by-hand-directory-recipe -->")
        .nth(1)
        .expect("FORMAT.md has the by-hand directory recipe");
    let body = after.split("```bash\n").nth(1).unwrap();
    body.split("\n```").next().unwrap().to_owned()
}

#[test]
fn restores_and_the_by_hand_recipe_give_the_tree_back() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("storage");
    make_corpus(&data);
    let config = work.path().join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[sources.storage]\nkind = \"directory\"\npath = \"{1}\"\n",
            work.path().display(),
            data.display()
        ),
    )
    .unwrap();
    let ok = |args: &[&str]| common::ok(&config, args);
    ok(&["keygen"]);
    ok(&["init"]);
    ok(&["backup", "storage"]);
    modify_corpus(&data);
    let source = fingerprint_tree(&data);
    ok(&["backup", "storage"]);
    let newest = common::listed_ids(&config, Some("storage"))[0].clone();

    let restored = work.path().join("restored");
    // As root, owners come back without asking (as with `tar -x` and `rsync -a`).
    let out = ok(&["restore", "storage", "--to", restored.to_str().unwrap()]);
    assert!(
        out.contains("1 hard links restored as links"),
        "the output counts hard links: {out}"
    );
    let restored_fp = fingerprint_tree(&restored);
    if is_root() {
        assert_faithful("dr restore as root", &source, &restored_fp);
        // In place over a damaged live tree, again without flags.
        std::fs::remove_dir_all(data.join("data")).unwrap();
        std::fs::write(data.join("stray-after-damage"), b"x").unwrap();
        ok(&["restore", "storage"]);
        assert_faithful(
            "dr restore in place as root",
            &source,
            &fingerprint_tree(&data),
        );
        let no_owners = work.path().join("no-owners");
        ok(&[
            "restore",
            "storage",
            "--to",
            no_owners.to_str().unwrap(),
            "--no-owners",
        ]);
        assert_faithful(
            "dr restore --no-owners",
            &without_owners(&source),
            &without_owners(&fingerprint_tree(&no_owners)),
        );
        assert_ne!(
            source,
            fingerprint_tree(&no_owners),
            "--no-owners leaves the recorded owners (nobody) to root"
        );
    } else {
        assert!(out.contains("were not created"), "{out}");
        assert_faithful(
            "dr restore",
            &without_owners(&source),
            &without_owners(&restored_fp),
        );
    }

    let by_hand = work.path().join("by-hand");
    let status = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &recipe()])
        .current_dir(work.path().join("repo"))
        .env("SOURCE", "storage")
        .env("ID", &newest)
        .env("KEY", work.path().join("key.txt"))
        .env("DEST", &by_hand)
        .status()
        .unwrap();
    assert!(status.success(), "FORMAT.md's recipe failed");
    // Documented in FORMAT.md: tar writes sparse files dense.
    let sparse = fields_ending(&source, &[" sparse"]);
    let sparse: Vec<&str> = sparse.iter().map(String::as_str).collect();
    let by_hand_fp = fingerprint_tree(&by_hand);
    if is_root() {
        assert_faithful(
            "FORMAT.md by hand",
            &source.without(&sparse),
            &by_hand_fp.without(&sparse),
        );
    } else {
        assert_faithful(
            "FORMAT.md by hand",
            &without_owners(&source.without(&sparse)),
            &without_owners(&by_hand_fp.without(&sparse)),
        );
    }
    assert!(
        !by_hand.join("plain.txt").exists(),
        "a file deleted before the newest backup came back"
    );
}

/// As root, the same restore run as `nobody` (`runuser`): the device node cannot be created
/// and the output says so and counts it; everything else (FIFO, xattrs, ACLs, set-id modes,
/// mtimes, hard links) still comes back.
#[test]
fn a_restore_as_another_user_reports_the_nodes_it_cannot_create() {
    if !is_root() {
        eprintln!("skipped: needs root to run a restore as nobody");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("storage");
    make_corpus(&data);
    let source = fingerprint_tree(&data);
    let config = work.path().join("dr.toml");
    let write_config = |repo: &std::path::Path, key: &std::path::Path, path: &std::path::Path| {
        format!(
            "repository = \"{}\"\nidentity = \"{}\"\n[sources.storage]\nkind = \"directory\"\npath = \"{}\"\n",
            repo.display(),
            key.display(),
            path.display()
        )
    };
    let (repo, key) = (work.path().join("repo"), work.path().join("key.txt"));
    std::fs::write(&config, write_config(&repo, &key, &data)).unwrap();
    common::ok(&config, &["keygen"]);
    common::ok(&config, &["init"]);
    common::ok(&config, &["backup", "storage"]);
    // nobody's own copy of the repository, key and configuration.
    let theirs = work.path().join("nobody");
    std::fs::create_dir(&theirs).unwrap();
    let cp = Command::new("cp")
        .arg("-a")
        .args([&repo, &key])
        .arg(&theirs)
        .status()
        .unwrap();
    assert!(cp.success());
    let their_config = theirs.join("dr.toml");
    let restored = theirs.join("restored");
    std::fs::write(
        &their_config,
        write_config(&theirs.join("repo"), &theirs.join("key.txt"), &data),
    )
    .unwrap();
    let chown = Command::new("chown")
        .args(["-R", "nobody:nogroup"])
        .arg(&theirs)
        .status()
        .unwrap();
    assert!(chown.success());
    let chmod = Command::new("chmod")
        .arg("755")
        .arg(work.path())
        .status()
        .unwrap();
    assert!(chmod.success());
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--"])
        .arg(env!("CARGO_BIN_EXE_dr"))
        .arg("--config")
        .arg(&their_config)
        .args(["restore", "storage", "--to"])
        .arg(&restored)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("note: 1 FIFOs or device nodes were not created: null (character device 1:3: creating it needs root"),
        "{text}"
    );
    let null = fields_ending(&source, &[""])
        .into_iter()
        .filter(|f| f.starts_with("null "))
        .collect::<Vec<_>>();
    let null: Vec<&str> = null.iter().map(String::as_str).collect();
    assert_faithful(
        "dr restore as nobody",
        &without_owners(&source.without(&null)),
        &without_owners(&fingerprint_tree(&restored)),
    );
}

/// The tester's case: `dr restore storage --only=-leading` over the live tree used to
/// replace the whole tree with the selection (exit 0). Now the deleted file comes back with
/// its recorded attributes and everything else (a file created after the backup included)
/// stays as it was; a modified file is restored with the modified one kept aside; a
/// selection of nothing is refused with the tree untouched.
#[test]
fn only_in_place_restores_into_the_live_tree() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("storage");
    make_corpus(&data);
    std::fs::write(data.join("-leading"), b"-\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("-leading"),
            std::fs::Permissions::from_mode(0o604),
        )
        .unwrap();
    }
    let acl = Command::new("setfacl")
        .args(["-m", "u:65534:rw"])
        .arg(data.join("-leading"))
        .status()
        .unwrap();
    assert!(acl.success());
    let source = fingerprint_tree(&data);
    assert!(source.get("acl -leading").is_some(), "{source:?}");
    let config = work.path().join("dr.toml");
    std::fs::write(
        &config,
        format!(
            "repository = \"{0}/repo\"\nidentity = \"{0}/key.txt\"\n[sources.storage]\nkind = \"directory\"\npath = \"{1}\"\n",
            work.path().display(),
            data.display()
        ),
    )
    .unwrap();
    let ok = |args: &[&str]| common::ok(&config, args);
    ok(&["keygen"]);
    ok(&["init"]);
    ok(&["backup", "storage"]);
    std::fs::remove_file(data.join("-leading")).unwrap();
    std::fs::write(data.join("after-the-backup"), b"newer\n").unwrap();
    std::fs::write(data.join("plain.txt"), b"modified\n").unwrap();
    let owners = if is_root() { vec!["--owners"] } else { vec![] };
    let compare = |mode: &str, expected: &dr_testing::fidelity::Fingerprint| {
        let found = fingerprint_tree(&data);
        if is_root() {
            assert_faithful(mode, expected, &found);
        } else {
            assert_faithful(mode, &without_owners(expected), &without_owners(&found));
        }
    };

    let live = fingerprint_tree(&data);
    let mut args = vec!["restore", "storage", "--only=-leading"];
    args.extend(&owners);
    let out = ok(&args);
    assert!(
        out.contains(
            "put 1 selected paths into the existing tree (everything else left as it was): -leading"
        ),
        "{out}"
    );
    assert!(out.contains("nothing was moved aside"), "{out}");
    assert!(!out.contains("previous tree"), "{out}");
    compare(
        "dr restore --only=-leading in place",
        &with_source_entries(&live, &source, &["-leading"]),
    );

    let live = fingerprint_tree(&data);
    let mut args = vec!["restore", "storage", "--only", "plain.txt"];
    args.extend(&owners);
    let out = ok(&args);
    let kept = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("plain.txt.pre-restore-"))
        .unwrap_or_else(|| panic!("the modified file is kept aside: {out}"));
    assert!(
        out.contains(&format!(
            "kept aside 1 entries that were in their way: plain.txt -> {}",
            data.join(&kept).display()
        )),
        "{out}"
    );
    let mut expected = with_source_entries(&live, &source, &["plain.txt"]);
    for (field, value) in fields_under(&live, "plain.txt", &kept) {
        expected.set(field, value);
    }
    compare("dr restore --only a modified file in place", &expected);
    assert_eq!(std::fs::read(data.join(&kept)).unwrap(), b"modified\n");

    let live = fingerprint_tree(&data);
    let (code, out) = common::dr(&config, &["restore", "storage", "--only", "nothing-here"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("--only nothing-here matches nothing"), "{out}");
    compare("a refused selection", &live);
}
