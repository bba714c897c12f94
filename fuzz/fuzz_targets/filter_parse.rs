//! The filter parser on arbitrary bytes: it must answer, never panic or overflow the stack,
//! and any error must point inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(error) = clm_filter::parse(text) {
        assert!(error.position >= 1);
        assert!(error.position <= text.chars().count().max(clm_filter::MAX_LENGTH) + 1);
    }
});
