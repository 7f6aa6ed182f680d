//! `extrator demo` runs on a fresh machine with no config, shows the product — intake, delivery
//! through the simulated API, four error codes and the async flow — and cleans up.

use std::process::Command;

use crate::util::{bin, expect_exit};

#[test]
fn demo_shows_intake_delivery_and_four_codes_then_cleans_up() {
    let scratch = tempfile::tempdir().unwrap();
    let output = Command::new(bin())
        .arg("demo")
        .env("TMPDIR", scratch.path())
        .env("EXTRATOR_CONFIG", "/nao/existe.toml")
        .output()
        .unwrap();
    let (stdout, _) = expect_exit(&output, 0);
    for expected in [
        "pedido 100201: enfileirado (item 1)",
        "pedido 100201: já na fila (item 1, pendente)",
        "pedido 100201 (item 1): difere em reason",
        "lote-0001.json: importado (2 novos, 0 já na fila)",
        "lote-0002.json: rejeitado",
        "campo `reason`: obrigatório e ausente",
        "Itens:                 pendente 0 · enviando 0 · processando 0 · concluído 4 · falhou 3",
        "04 Timeout: 2",
        "07 Cancelamento rejeitado pela API: 1",
        "08 Limite de requisições: 1",
        "99 Erro genérico: 2",
        "orderKey: pedido já faturado",
        "ID  PEDIDO  FILIAL  ESTADO",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    let left: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().collect();
    assert!(left.is_empty(), "the demo must remove its directory: {left:?}");
}

#[test]
fn demo_keep_leaves_a_queue_the_other_commands_can_read() {
    let scratch = tempfile::tempdir().unwrap();
    let output = Command::new(bin()).args(["demo", "--keep"]).env("TMPDIR", scratch.path()).output().unwrap();
    let (stdout, _) = expect_exit(&output, 0);
    let config =
        std::fs::read_dir(scratch.path()).unwrap().next().unwrap().unwrap().path().join("extrator.toml");
    assert!(stdout.contains(&format!("extrator --config {} status", config.display())), "{stdout}");
    let output = Command::new(bin()).args(["list", "--json", "--config"]).arg(&config).output().unwrap();
    let (stdout, _) = expect_exit(&output, 0);
    let items: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(items.len(), 7);
    let output = Command::new(bin())
        .args(["show", "--order", "100202", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let shown: serde_json::Value = serde_json::from_str(&expect_exit(&output, 0).0).unwrap();
    let statuses: Vec<_> =
        shown["attempts"].as_array().unwrap().iter().map(|a| a["http_status"].clone()).collect();
    assert_eq!(statuses, [202, 208, 200], "the async flow, recorded");
}
