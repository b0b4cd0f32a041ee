//! The per-file index of a tree backup decides where restored files go: any bytes must
//! parse or fail, and a parsed entry's path must never lead outside a target.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(index) = serde_json::from_slice::<dr_storage::files::FileIndex>(data) else {
        return;
    };
    for entry in &index.entries {
        let path = entry.relative_path();
        if let Ok(inside) = dr_core::untar::inside(&path) {
            assert!(!inside.is_absolute());
            assert!(inside.components().all(|c| matches!(c, std::path::Component::Normal(_))));
        }
    }
    let _ = index.holders();
});
