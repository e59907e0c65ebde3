//! The address-list parser of exposures (`[[expose]] block_lists`, FireHOL netset, Spamhaus DROP):
//! arbitrary bytes never panic; an error names the file given and a line inside the input, and
//! says what was expected; a list that parses holds every address its lines name (checked against
//! a per-line re-parse), and counts one entry per non-comment line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use privnet_core::expose::list::parse_entry;
use privnet_core::expose::parse_list;

fuzz_target!(|data: &[u8]| {
    let lines = data.split(|&b| b == b'\n').count();
    match parse_list("fuzz.netset", data) {
        Err(e) => {
            assert_eq!(e.file, "fuzz.netset");
            assert!(e.line >= 1 && e.line <= lines, "{e}");
            assert!(!e.expected.is_empty());
            let _ = e.to_string();
        }
        Ok(set) => {
            let text = std::str::from_utf8(data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data))
                .expect("a list that parses is UTF-8");
            let mut entries = 0;
            for line in text.split('\n') {
                let entry = line.split(['#', ';']).next().unwrap_or("").trim();
                if entry.is_empty() {
                    continue;
                }
                entries += 1;
                let (addr, _) = parse_entry(entry).expect("every entry of a parsed list parses");
                assert!(set.contains(addr), "{addr} of {entry:?} not in the set");
            }
            assert_eq!(set.entries(), entries);
        }
    }
});
