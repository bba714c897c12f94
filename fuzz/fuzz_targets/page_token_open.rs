//! The page-token decoder on arbitrary text: a forged token is refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let tokens = clm_runtime::page_token::PageTokens::new(b"fuzzing key");
    let scope = clm_runtime::page_token::PageTokens::scope("tenant", &["query"]);
    // Without the key no input can be a valid token.
    assert!(tokens.open(&scope, text).is_err());
});
