//! The safe unpacker gets tar streams from backups: any bytes must unpack inside the target
//! or be refused, never write outside it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let outer = tempfile::tempdir().expect("temp dir");
    let target = outer.path().join("target");
    std::fs::create_dir(&target).expect("target dir");
    let mut archive = tar::Archive::new(data);
    let mut unpacker = dr_core::untar::Unpacker::new(&target);
    if let Ok(entries) = archive.entries() {
        for entry in entries {
            let Ok(mut entry) = entry else { break };
            if unpacker.unpack(&mut entry).is_err() {
                break;
            }
        }
    }
    // Nothing but the target in the outer directory.
    let names: Vec<_> = std::fs::read_dir(outer.path())
        .expect("read")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("target")]);
});
