//! Configuration parsing and validation (`Config::from_sources`): any TOML text plus
//! `OXIDP_*` overrides. Input: TOML, optionally followed by a line `%%` and
//! `NAME=value` lines for the environment. A bad setting is one error line
//! (DESIGN.md "Running"), never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxidp::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (toml, env) = text.split_once("\n%%\n").unwrap_or((text, ""));
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Err(e) = Config::from_sources(toml, env) {
        let line = e.to_string();
        assert!(!line.contains('\n'), "error is not one line: {line:?}");
    }
});
