//! ARCHITECTURE.md's layers, checked by parsing `src/` (syn): every path a module names — in
//! `use` trees (groups expanded), in code, and inside macro calls — is resolved (`crate::`,
//! `self::`, `super::`) and compared with what its layer may reach. `core` names no I/O, no clock,
//! no runtime and nothing above it; `config` nothing above `core`; `io` no daemon, page or command;
//! and so on up. Only `io/store/` names SQLite, and the one `unsafe` block is the reviewed one.
//! The checker itself is tested on planted violations, so a broken checker cannot pass quietly.

use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// Every way of doing I/O or reading the clock or the zone: `core` may name none of them.
const IO: &[&str] = &[
    "std::fs",
    "std::net",
    "std::process",
    "std::env",
    "std::os",
    "std::time::Instant",
    "std::time::SystemTime",
    "tokio",
    "reqwest",
    "hyper",
    "hyper_util",
    "rusqlite",
    "rustix",
    "sd_notify",
    "dns_lookup",
    "jiff::tz::db",
    // The clock and the zone by any import name.
    "Timestamp::now",
    "Instant::now",
    "SystemTime",
    "TimeZone::system",
];

/// What each layer (first folder under `src/`) may not name: a path is refused when it starts
/// with one of these, segment by segment (a capitalised one, such as `Timestamp::now`, anywhere).
fn forbidden(layer: &str) -> Vec<&'static str> {
    let above: &[&str] = match layer {
        "core" => &[
            "crate::config",
            "crate::io",
            "crate::view",
            "crate::web",
            "crate::daemon",
            "crate::cli",
            "crate::simulator",
        ],
        "config" => {
            &["crate::io", "crate::view", "crate::web", "crate::daemon", "crate::cli", "crate::simulator"]
        }
        "view" => &["crate::io", "crate::web", "crate::daemon", "crate::cli", "crate::simulator"],
        "io" => &["crate::web", "crate::daemon", "crate::cli", "crate::simulator"],
        "web" => &["crate::daemon", "crate::cli", "crate::simulator"],
        "daemon" => &["crate::cli", "crate::simulator"],
        "simulator" => &["crate::io", "crate::view", "crate::web", "crate::daemon", "crate::cli"],
        "cli" | "lib" => &[],
        other => panic!("src/{other} is a layer ARCHITECTURE.md does not name: add it there and here"),
    };
    let mut list = above.to_vec();
    if layer == "core" {
        list.extend_from_slice(IO);
    }
    list
}

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
    found.sort();
    found
}

/// The module path of a file under `src/`: `core/mapping/mod.rs` → `["core", "mapping"]`.
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> =
        relative.with_extension("").iter().map(|part| part.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|last| last == "mod" || last == "lib" || last == "main") {
        parts.pop();
    }
    parts
}

/// Collects every path a file names, outside `#[cfg(test)]` and `#[test]` items.
#[derive(Default)]
struct Paths {
    found: Vec<String>,
}

fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("test")
            || (attr.path().is_ident("cfg")
                && attr.parse_args::<syn::Meta>().is_ok_and(|meta| meta.path().is_ident("test")))
    })
}

impl Paths {
    fn use_tree(&mut self, prefix: &str, tree: &syn::UseTree) {
        let join = |name: &str| if prefix.is_empty() { name.to_owned() } else { format!("{prefix}::{name}") };
        match tree {
            syn::UseTree::Path(path) => self.use_tree(&join(&path.ident.to_string()), &path.tree),
            syn::UseTree::Name(name) => self.found.push(join(&name.ident.to_string())),
            syn::UseTree::Rename(rename) => self.found.push(join(&rename.ident.to_string())),
            syn::UseTree::Glob(_) => self.found.push(prefix.to_owned()),
            syn::UseTree::Group(group) => group.items.iter().for_each(|item| self.use_tree(prefix, item)),
        }
    }

    /// `a::b::c` sequences in a macro's tokens (format strings' arguments, `html!`, `select!`…).
    fn tokens(&mut self, tokens: TokenStream) {
        let mut current: Vec<String> = Vec::new();
        let mut colons = 0;
        let flush = |current: &mut Vec<String>, found: &mut Vec<String>| {
            if current.len() > 1 {
                found.push(current.join("::"));
            }
            current.clear();
        };
        for token in tokens {
            match token {
                TokenTree::Ident(ident) => {
                    if colons != 2 {
                        flush(&mut current, &mut self.found);
                    }
                    current.push(ident.to_string());
                    colons = 0;
                }
                TokenTree::Punct(punct) if punct.as_char() == ':' => colons += 1,
                TokenTree::Group(group) => {
                    flush(&mut current, &mut self.found);
                    colons = 0;
                    self.tokens(group.stream());
                }
                _ => {
                    flush(&mut current, &mut self.found);
                    colons = 0;
                }
            }
        }
        flush(&mut current, &mut self.found);
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if !is_test(&item.attrs) {
            syn::visit::visit_item_mod(self, item);
        }
    }

    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        if !is_test(&item.attrs) {
            syn::visit::visit_item_fn(self, item);
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        if !is_test(&item.attrs) {
            self.use_tree("", &item.tree);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let text: Vec<String> = path.segments.iter().map(|segment| segment.ident.to_string()).collect();
        self.found.push(text.join("::"));
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

/// `self::`/`super::` made absolute (`crate::…`) from the module `module`.
fn resolve(path: &str, module: &[String]) -> String {
    let mut segments: Vec<&str> = path.split("::").collect();
    let mut base: Vec<String> = module.to_vec();
    match segments.first() {
        Some(&"self") => {
            segments.remove(0);
        }
        Some(&"super") => {
            while segments.first() == Some(&"super") {
                segments.remove(0);
                base.pop();
            }
        }
        _ => return path.to_owned(),
    }
    let mut full = vec!["crate".to_owned()];
    full.extend(base);
    full.extend(segments.iter().map(|segment| (*segment).to_owned()));
    full.join("::")
}

/// Whether `path` starts with `prefix`, segment by segment (or, for a two-segment clock name
/// such as `Timestamp::now`, contains it).
fn reaches(path: &str, prefix: &str) -> bool {
    let path: Vec<&str> = path.split("::").collect();
    let prefix: Vec<&str> = prefix.split("::").collect();
    if path.starts_with(&prefix) {
        return true;
    }
    let clock = prefix.first().is_some_and(|first| first.starts_with(char::is_uppercase));
    clock && path.windows(prefix.len()).any(|window| window == prefix.as_slice())
}

/// The paths of `text` (the file of `module`) its layer may not name, as "path (rule)".
fn violations(text: &str, module: &[String]) -> Vec<String> {
    let file = syn::parse_file(text).unwrap_or_else(|error| panic!("{module:?} does not parse: {error}"));
    let mut paths = Paths::default();
    paths.visit_file(&file);
    let layer = module.first().map_or("lib", String::as_str);
    let rules = forbidden(layer);
    let mut found = Vec::new();
    for path in paths.found.iter().map(|path| resolve(path, module)) {
        found.extend(rules.iter().filter(|rule| reaches(&path, rule)).map(|rule| format!("{path} ({rule})")));
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn every_layer_names_only_what_it_may() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut refused = Vec::new();
    let mut checked = 0;
    for path in sources(&src) {
        let relative = path.strip_prefix(&src).unwrap();
        // Test modules in their own files (`mod tests;` under #[cfg(test)]).
        if relative.file_name().is_some_and(|name| name == "tests.rs") {
            continue;
        }
        let module = module_of(relative);
        for violation in violations(&std::fs::read_to_string(&path).unwrap(), &module) {
            refused.push(format!("src/{}: {violation}", relative.display()));
        }
        checked += 1;
    }
    assert!(refused.is_empty(), "paths across the layers (ARCHITECTURE.md):\n{}", refused.join("\n"));
    assert!(checked > 60, "only {checked} files checked");
}

#[test]
fn the_checker_catches_planted_violations() {
    let core = vec!["core".to_owned(), "policy".to_owned()];
    let caught = |text: &str, module: &[String]| violations(text, module);
    // A planted `use std::fs` in core, plain and in a group, and a call in a macro's arguments.
    assert!(!caught("use std::fs;", &core).is_empty());
    assert!(!caught("use std::{fs, io};", &core).is_empty());
    assert!(!caught("fn f() { let _ = format!(\"{:?}\", std::fs::read(\"x\")); }", &core).is_empty());
    // A planted import of io from core, absolute and through `super::super`.
    assert!(!caught("use crate::io::store::Store;", &core).is_empty());
    assert!(!caught("use super::super::io::store;", &core).is_empty());
    assert!(!caught("fn f() { crate::io::handoff::connect(); }", &core).is_empty());
    // The clock, by any name.
    assert!(!caught("fn f() -> jiff::Timestamp { jiff::Timestamp::now() }", &core).is_empty());
    assert!(!caught("use jiff::Timestamp; fn f() -> Timestamp { Timestamp::now() }", &core).is_empty());
    // What core may do, and test code, pass.
    assert!(caught("use std::io; use crate::core::codes::Code; use super::item::Item;", &core).is_empty());
    assert!(caught("#[cfg(test)] mod tests { use std::fs; }", &core).is_empty());
    // Above core: io may not name a command; cli may name anything.
    let io = vec!["io".to_owned(), "spool".to_owned()];
    assert!(!caught("use crate::cli::commands::show;", &io).is_empty());
    assert!(caught("use crate::core::item::Item; use std::fs;", &io).is_empty());
    let cli = vec!["cli".to_owned()];
    assert!(caught("use crate::daemon; use std::fs;", &cli).is_empty());
}

/// A file's code, without its test modules (tests may use what the code may not).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.split("#[cfg(test)]").next().unwrap_or_default().to_owned()
}

#[test]
fn only_the_store_names_sqlite() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let store = src.join("io/store");
    for path in sources(&src).into_iter().filter(|path| !path.starts_with(&store)) {
        assert!(
            !code(&path).contains("rusqlite"),
            "{} uses rusqlite: only src/io/store/ may",
            path.display()
        );
    }
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
    assert!(found[0].starts_with("io/store/mod.rs:"), "{found:?}");
    let store = std::fs::read_to_string(src.join("io/store/mod.rs")).unwrap();
    let block = store.find("unsafe {").unwrap();
    let function = store[..block].rfind("fn ").unwrap();
    assert!(store[function..].starts_with("fn persist_wal"), "the unsafe block is not in persist_wal");
}
