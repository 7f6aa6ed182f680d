//! ARCHITECTURE.md's invariants that a grep can check: only `src/store/` names SQLite, the pure
//! modules name no clock, file system, network, environment, runtime or time zone, and the one
//! `unsafe` block is the reviewed one.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(sources(&path));
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
    found
}

/// A file's code, without its test modules (tests may use what the code may not).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.split("#[cfg(test)]").next().unwrap_or_default().to_owned()
}

#[test]
fn only_the_store_names_sqlite() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let store = src.join("store");
    for path in sources(&src).into_iter().filter(|path| !path.starts_with(&store)) {
        assert!(!code(&path).contains("rusqlite"), "{} uses rusqlite: only src/store/ may", path.display());
    }
}

#[test]
fn the_pure_modules_do_no_io_and_read_no_clock() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut pure: Vec<PathBuf> =
        ["item.rs", "intake.rs", "duration.rs", "codes.rs", "classify.rs", "policy.rs", "dispatch.rs"]
            .iter()
            .map(|name| src.join(name))
            .collect();
    pure.extend(sources(&src.join("mapping")).into_iter().filter(|path| !path.ends_with("tests.rs")));
    let forbidden = [
        "Timestamp::now",
        "Instant::now",
        "SystemTime",
        "std::fs",
        "std::net",
        "std::env",
        "std::process",
        "tokio",
        "rusqlite",
        "TimeZone::system",
        "tz::db",
        "local_time",
        "reqwest::Client",
    ];
    for path in &pure {
        let code = code(path);
        for word in forbidden {
            assert!(!code.contains(word), "{} is pure but names `{word}`", path.display());
        }
    }
    assert!(pure.len() >= 11, "the list of pure modules lost files: {pure:?}");
}

#[test]
fn the_one_unsafe_block_is_the_reviewed_one() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for path in sources(&src) {
        let text = std::fs::read_to_string(&path).unwrap();
        for (number, line) in text.lines().enumerate() {
            if line.contains("unsafe {") || line.contains("unsafe fn") || line.contains("unsafe impl") {
                found.push(format!("{}:{}", path.strip_prefix(&src).unwrap().display(), number + 1));
            }
        }
    }
    assert_eq!(found.len(), 1, "unsafe code beyond store::persist_wal: {found:?}");
    assert!(found[0].starts_with("store/mod.rs:"), "{found:?}");
    let store = std::fs::read_to_string(src.join("store/mod.rs")).unwrap();
    let block = store.find("unsafe {").unwrap();
    let function = store[..block].rfind("fn ").unwrap();
    assert!(store[function..].starts_with("fn persist_wal"), "the unsafe block is not in persist_wal");
}
