//! Configuration parsing: arbitrary text never panics, and every problem names its file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use privnet_core::identity::RevocationList;
use privnet_sidecar::config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("fuzz.toml");
    let (_, problems) = config::parse_str(text, file);
    for p in &problems {
        assert_eq!(p.file, file);
        assert!(!p.expected.is_empty());
        let _ = p.to_string();
    }
    let _ = config::parse_endpoint(text);
    let _ = RevocationList::parse(text);
});
