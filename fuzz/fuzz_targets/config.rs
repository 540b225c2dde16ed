//! Config parsing and validation never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regmirror::sync::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Config::parse(std::path::Path::new("fuzz.toml"), text);
});
