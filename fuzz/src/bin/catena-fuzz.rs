//! The coverage-guided engine over catena's fuzz targets: one libFuzzer binary, the target chosen
//! by `CATENA_FUZZ_TARGET` (see `catena_fuzz::TARGETS`). Built and run by `scripts/fuzz.sh`.
#![no_main]
#![allow(clippy::panic)]

use std::sync::OnceLock;

fn chosen() -> catena_fuzz::Target {
    static TARGET: OnceLock<catena_fuzz::Target> = OnceLock::new();
    *TARGET.get_or_init(|| {
        let name = std::env::var("CATENA_FUZZ_TARGET").unwrap_or_default();
        catena_fuzz::target(&name).unwrap_or_else(|| {
            let names: Vec<&str> = catena_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
            panic!("set CATENA_FUZZ_TARGET to one of: {}", names.join(", "))
        })
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    chosen()(data);
});
