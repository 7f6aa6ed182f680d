//! Every text the command line prints about itself is Portuguese: each `--help` and each
//! generated man page is read for the English phrases clap and clap_mangen write on their own
//! (issue 26: "Possible values", "[default: 50]", "[OPTIONS]", NAME/SYNOPSIS, "Print help") and
//! for English value descriptions.

use crate::util::{Env, expect_exit};

/// Phrases that must never reach a reader.
const ENGLISH: [&str; 19] = [
    "Possible values",
    "[default:",
    "[OPTIONS]",
    "Usage:",
    "Options:",
    "Arguments:",
    "Commands:",
    "Print help",
    "Print version",
    ".SH NAME",
    ".SH SYNOPSIS",
    ".SH DESCRIPTION",
    ".SH OPTIONS",
    ".SH SUBCOMMANDS",
    "Waiting for",
    "Delivered",
    "Given up",
    "os error",
    "(see a summary",
];

#[test]
fn every_help_and_man_page_is_portuguese() {
    let env = Env::new();
    let mut texts = Vec::new();
    let commands = [
        "",
        "run",
        "enqueue",
        "status",
        "list",
        "show",
        "retry",
        "check",
        "explain",
        "preview",
        "relatorio",
        "simulate",
        "demo",
    ];
    for command in commands {
        let args: Vec<&str> = [command, "--help"].into_iter().filter(|arg| !arg.is_empty()).collect();
        let (stdout, _) = expect_exit(&env.run(&args), 0);
        assert!(stdout.contains("Uso: extrator"), "{command} --help:\n{stdout}");
        texts.push((format!("extrator {command} --help"), stdout));
    }
    let generated = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/generated");
    for entry in std::fs::read_dir(&generated).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|extension| extension == "1" || extension == "5") {
            let page = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                page.matches(".SH OPÇÕES").count().min(1),
                page.matches(".SH OPÇÕES").count(),
                "{path:?}"
            );
            texts.push((path.display().to_string(), page));
        }
    }
    assert!(texts.len() > commands.len() + 10, "the man pages were read");
    for (what, text) in &texts {
        for english in ENGLISH {
            assert!(!text.contains(english), "{what} says \"{english}\":\n{text}");
        }
    }
}
