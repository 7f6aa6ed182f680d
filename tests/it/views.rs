//! `status`, `list` and `show`: human tables in pt-BR and `--json` with stable field names.

use crate::util::{Env, expect_exit, json_lines};

#[test]
fn json_field_names_are_stable() {
    let env = Env::new();
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, 3).as_bytes()), 0);

    let (stdout, _) = expect_exit(&env.run(&["list", "--json"]), 0);
    let items: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(items.len(), 3);
    let mut keys: Vec<&str> = items[0].as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "attempts",
            "branch",
            "cancelled_at",
            "created_at",
            "customer",
            "extra",
            "id",
            "idempotency_key",
            "last_code",
            "last_message",
            "next_attempt_at",
            "order",
            "poll_url",
            "processing_since",
            "reason",
            "receipt",
            "sent",
            "source",
            "state",
            "updated_at"
        ]
    );
    assert_eq!(items[0]["state"], "pending");

    let (stdout, _) = expect_exit(&env.run(&["status", "--json"]), 0);
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["counts"]["pending"], 3);
    assert_eq!(status["counts"]["failed"], 0);
    assert_eq!(status["daemon"], "never_started");
    assert!(status["oldest_pending"].is_string());

    let (stdout, _) = expect_exit(&env.run(&["show", "2", "--json"]), 0);
    let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(shown["item"]["order"], "2");
    assert_eq!(shown["attempts"], serde_json::json!([]));
}

#[test]
fn list_filters_and_says_when_it_cut_the_list() {
    let env = Env::new();
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, 60).as_bytes()), 0);
    env.db().execute("UPDATE items SET state = 'failed', last_code = '05' WHERE id <= 3", []).unwrap();

    let (stdout, _) = expect_exit(&env.run(&["list"]), 0);
    assert!(stdout.starts_with("ID  PEDIDO  FILIAL  ESTADO"), "{stdout}");
    assert!(stdout.contains("mostrando 50 de 60 itens; use --limit 0 para ver todos"), "{stdout}");
    let (stdout, _) = expect_exit(&env.run(&["list", "--limit", "0"]), 0);
    assert_eq!(stdout.lines().count(), 61);

    let (stdout, _) = expect_exit(&env.run(&["list", "--state", "failed", "--code", "05"]), 0);
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    assert!(stdout.lines().skip(1).all(|line| line.contains("falhou") && line.contains("05")), "{stdout}");
    let (stdout, _) = expect_exit(&env.run(&["list", "--order", "42"]), 0);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    let (stdout, _) = expect_exit(&env.run(&["list", "--state", "done"]), 0);
    assert_eq!(stdout, "nenhum item encontrado\n");
}

#[test]
fn reading_commands_never_create_the_database() {
    let env = Env::new();
    for args in [&["status"][..], &["list"], &["show", "1"], &["retry", "--dry-run"]] {
        let (_, stderr) = expect_exit(&env.run(args), 1);
        assert!(stderr.contains("não existe ainda"), "{args:?}: {stderr}");
    }
    assert!(!env.database().exists());
}

#[test]
fn show_tells_what_is_missing() {
    let env = Env::new();
    expect_exit(&env.run(&["enqueue", "--order", "1", "--branch", "1", "--reason", "x"]), 0);
    let (stdout, _) = expect_exit(&env.run(&["show", "--order", "1"]), 0);
    assert!(stdout.contains("Pedido:             1"), "{stdout}");
    assert!(stdout.contains("Estado:             pendente (pending)"), "{stdout}");
    assert!(stdout.contains("Nenhuma tentativa de envio ainda."), "{stdout}");
    let (_, stderr) = expect_exit(&env.run(&["show", "99"]), 1);
    assert!(stderr.contains("item 99 não encontrado na fila"), "{stderr}");
}
