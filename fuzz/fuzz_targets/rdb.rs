//! The RDB reader checks backups it did not write: any bytes must be read or refused with
//! an error naming an offset, never panic nor allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut keys = 0u64;
    let mut visit = |_entry: dr_redis::rdb::RdbEntry<'_>| {
        keys += 1;
        Ok(())
    };
    let _ = dr_redis::rdb::read_rdb(data, Some(&mut visit));
});
