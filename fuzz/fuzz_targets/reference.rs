//! Reference parsing never panics, and what it accepts prints back to a
//! string that parses to the same reference.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regmirror::registry::Reference;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(r) = Reference::parse(s) {
        let again = Reference::parse(&r.to_string()).expect("a printed reference parses");
        assert_eq!(r, again);
        let _ = r.api_host();
        let _ = r.manifest_reference();
    }
    let _ = Reference::parse_repository(s);
    let _ = s.parse::<regmirror::registry::PlatformSpec>();
});
