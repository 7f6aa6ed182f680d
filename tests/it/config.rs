//! Configuration errors reach the operator with the file, line and key, and exit 78.

use crate::util::{Env, expect_exit};

/// Writes `text` as the config and runs `status`.
fn status_with_config(env: &Env, text: &str) -> (String, String) {
    std::fs::write(&env.config, text).unwrap();
    let output = env.run(&["status"]);
    expect_exit(&output, 78)
}

#[test]
fn misspelt_key_wrong_type_and_bad_duration_name_line_and_key() {
    let env = Env::new();
    let path = env.config.display().to_string();
    let cases = [
        (
            "[api]\nurl = \"https://x.com.br/c\"\nrequest_timout = \"30s\"\n",
            "linha 3, coluna 1",
            "chave desconhecida `request_timout`; as chaves válidas aqui são: url, connect_timeout, request_timeout",
        ),
        (
            "[api]\nurl = \"https://x.com.br/c\"\n\n[retry]\nmax_attempts = \"dez\"\n",
            "linha 5, coluna 16, chave `retry.max_attempts`",
            "esperava um número inteiro não negativo",
        ),
        (
            "[api]\nurl = \"https://x.com.br/c\"\nconnect_timeout = \"10 segundos\"\n",
            "linha 3, coluna 19, chave `api.connect_timeout`",
            "unidade desconhecida \"segundos\"",
        ),
        (
            "[api]\nurl = \"https://x.com.br/c\"\n[queue]\npoll_interval = 5\n",
            "linha 4, coluna 17, chave `queue.poll_interval`",
            "esperava uma duração entre aspas",
        ),
    ];
    for (text, position, message) in cases {
        let (stdout, stderr) = status_with_config(&env, text);
        assert!(stdout.is_empty(), "{stdout}");
        assert!(stderr.contains(&format!("configuração inválida em {path}, {position}")), "{text}\n{stderr}");
        assert!(stderr.contains(message), "{text}\n{stderr}");
    }
}

#[test]
fn rules_across_keys_and_missing_files_are_config_errors_too() {
    let env = Env::new();
    let (_, stderr) =
        status_with_config(&env, "[api]\nurl = \"https://x.com.br/c\"\n[api.auth]\nmode = \"basic\"\n");
    assert!(stderr.contains("chave `api.auth.user`"), "{stderr}");
    let (_, stderr) = status_with_config(&env, "[queue]\n");
    assert!(stderr.contains("chave `api.url`: é obrigatória"), "{stderr}");

    let output = env.command(&["status", "--config", "/nao/existe/extrator.toml"]).output().unwrap();
    let (_, stderr) = expect_exit(&output, 78);
    assert!(stderr.contains("/nao/existe/extrator.toml: o arquivo não existe"), "{stderr}");
}

#[test]
fn environment_overrides_apply_and_their_errors_name_the_variable() {
    let env = Env::new();
    let other = env.dir.path().join("outra.db");
    let output = env
        .command(&["enqueue", "--order", "1", "--branch", "1", "--reason", "x"])
        .env("EXTRATOR_QUEUE__DATABASE", &other)
        .output()
        .unwrap();
    expect_exit(&output, 0);
    assert!(other.exists(), "the override must choose the database");
    assert!(!env.database().exists());

    let output = env.command(&["status"]).env("EXTRATOR_API__CONCURRENCY", "muitos").output().unwrap();
    let (_, stderr) = expect_exit(&output, 78);
    assert!(stderr.contains("variável de ambiente EXTRATOR_API__CONCURRENCY"), "{stderr}");
}

#[test]
fn the_packaged_default_config_loads_with_the_daemons_loader() {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/extrator.toml");
    let loaded = extrator::config::load_with_env(&shipped, []).expect("packaging/extrator.toml must load");
    let defaults = extrator::config::Config::default();
    // The file documents the defaults; it must not silently change them.
    assert_eq!(loaded.config.api.request_timeout, defaults.api.request_timeout);
    assert_eq!(loaded.config.retry.max_attempts, defaults.retry.max_attempts);
    assert_eq!(loaded.config.queue.database, defaults.queue.database);
    assert_eq!(loaded.config.queue.spool_dir, defaults.queue.spool_dir);
    let text = std::fs::read_to_string(&shipped).unwrap();
    for key in [
        "connect_timeout",
        "request_timeout",
        "concurrency",
        "password_file",
        "poll_interval",
        "max_attempts",
        "retention",
        "level",
    ] {
        assert!(text.contains(key), "the shipped config should document `{key}`");
    }
}

#[test]
fn the_docs_examples_of_a_config_error_are_what_the_binary_prints() {
    // README.md and the support guide show this error for a misspelt key on line 3.
    let env = Env::new();
    let (_, stderr) =
        status_with_config(&env, "[api]\nurl = \"https://x.com.br/c\"\nrequest_timout = \"30s\"\n");
    let printed = stderr.replace(&env.config.display().to_string(), "/etc/extrator/extrator.toml");
    let printed = printed.trim_start_matches("extrator: erro: ");
    for (doc, text) in [
        ("README.md", include_str!("../../README.md")),
        ("docs/guia-de-operacao.md", include_str!("../../docs/guia-de-operacao.md")),
    ] {
        let example = text
            .lines()
            .find_map(|line| line.split_once("configuração inválida em /etc/extrator/extrator.toml, linha 3"))
            .map(|(_, rest)| format!("configuração inválida em /etc/extrator/extrator.toml, linha 3{rest}"))
            .unwrap_or_else(|| panic!("{doc} shows a configuration error"));
        let shown = example.trim_end_matches('…').trim_end().trim_end_matches(',');
        assert!(printed.starts_with(shown), "{doc}: {shown}\nbinary: {printed}");
    }
}
