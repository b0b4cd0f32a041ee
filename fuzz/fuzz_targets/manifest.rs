//! Manifests come from the store: any bytes must parse or fail with an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = dr_core::Manifest::from_json(data, "fuzz/manifest.json") {
        // What parsed must serialise again and give the same manifest.
        let json = manifest.to_json().expect("a parsed manifest serialises");
        let again = dr_core::Manifest::from_json(&json, "again").expect("and parses again");
        assert_eq!(again.id, manifest.id);
        let _ = manifest.sha256sums();
    }
});
