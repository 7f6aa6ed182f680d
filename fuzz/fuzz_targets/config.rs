//! Fuzzes the config loader with arbitrary text: it must answer Ok or a pt-BR error, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match extrator::config::parse_str(text, "fuzz.toml") {
            Ok(config) => {
                let _ = config.check();
            }
            Err(error) => {
                let _ = error.to_string();
            }
        }
    }
});
