//! Stored parts are read back from the store: any bytes must decode (only if they are a
//! part encrypted to this identity with the expected hash) or fail, never panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn identities() -> &'static dr_core::Identities {
    static KEY: OnceLock<dr_core::Identities> = OnceLock::new();
    KEY.get_or_init(dr_core::Identities::generate)
}

fuzz_target!(|data: &[u8]| {
    let expected = dr_core::ExpectedPart {
        key: "fuzz/data.000000.zst.age",
        plain_size: 1024,
        plain_sha256: "00",
        stored_sha256: "00",
        recipients: &[],
    };
    assert!(dr_core::decode_part(data, identities(), expected).is_err());
});
