//! `extrator enqueue`: concurrency, idempotency, conflicts and malformed input.

use std::thread;

use crate::util::{Env, expect_exit, json_lines, record};

#[test]
fn eight_concurrent_processes_queue_4000_items_once() {
    let env = Env::new();
    let batches: Vec<std::path::PathBuf> = (0..8)
        .map(|process| {
            let path = env.dir.path().join(format!("lote-{process}.jsonl"));
            std::fs::write(&path, json_lines(process * 500, 500)).unwrap();
            path
        })
        .collect();
    let run_all = || -> Vec<String> {
        thread::scope(|scope| {
            let handles: Vec<_> = batches
                .iter()
                .map(|path| scope.spawn(|| env.run(&["enqueue", "--json", path.to_str().unwrap()])))
                .collect();
            handles.into_iter().map(|handle| expect_exit(&handle.join().unwrap(), 0).0).collect()
        })
    };

    let first = run_all();
    assert_eq!(env.item_count(), 4_000);
    for stdout in &first {
        assert!(stdout.ends_with("500 enfileirados, 0 já na fila\n"), "{stdout}");
    }

    let second = run_all();
    assert_eq!(env.item_count(), 4_000);
    for stdout in &second {
        assert_eq!(
            stdout.lines().filter(|line| line.contains(": já na fila (item ")).count(),
            500,
            "{stdout}"
        );
        assert!(stdout.ends_with("0 enfileirados, 500 já na fila\n"), "{stdout}");
    }
}

#[test]
fn same_order_with_another_reason_is_refused_and_nothing_changes() {
    let env = Env::new();
    expect_exit(
        &env.run(&["enqueue", "--order", "7001", "--branch", "2", "--reason", "cliente desistiu"]),
        0,
    );
    let before = env.dump();

    let output = env.run(&["enqueue", "--order", "7001", "--branch", "2", "--reason", "preço errado"]);
    let (_, stderr) = expect_exit(&output, 1);
    assert!(stderr.contains("pedido 7001 (item 1): difere em reason"), "{stderr}");
    assert!(stderr.contains("nada foi gravado"), "{stderr}");
    assert_eq!(env.dump(), before);

    // A batch with one conflicting order keeps nothing of the batch.
    let batch = format!("{}\n{}\n", record("7002", "novo"), record("7001", "preço errado"));
    let (_, stderr) = expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], batch.as_bytes()), 1);
    assert!(stderr.contains("pedido 7001"), "{stderr}");
    assert_eq!(env.dump(), before);
}

#[test]
fn identical_flags_twice_is_a_no_op_that_says_so() {
    let env = Env::new();
    let args = ["enqueue", "--order", "55", "--branch", "1", "--reason", "duplicado"];
    expect_exit(&env.run(&args), 0);
    let (stdout, _) = expect_exit(&env.run(&args), 0);
    assert_eq!(stdout, "pedido 55: já na fila (item 1, pendente)\n0 enfileirados, 1 já na fila\n");
    assert_eq!(env.item_count(), 1);
}

/// Each malformed input, the exit code, and a fragment of the message that must name the fault.
pub fn malformed_inputs() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut garbage = Vec::with_capacity(10 * 1024 * 1024);
    let mut state: u32 = 0x1234_5678;
    while garbage.len() < 10 * 1024 * 1024 {
        // xorshift: deterministic "random" bytes
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        garbage.extend_from_slice(&state.to_le_bytes());
    }
    vec![
        ("sintaxe", b"{\"order\": \"1\", \"branch\": \"1\",, \"reason\": \"x\"}".to_vec(), "JSON inválido na linha 1, coluna 30"),
        ("tipo", br#"{"order": "1", "branch": "1", "reason": 42}"#.to_vec(), "registro 1 (linha 1): campo `reason`: esperava um texto"),
        ("sem-order", b"{\"order\": \"1\", \"branch\": \"1\", \"reason\": \"x\"}\n{\"branch\": \"1\", \"reason\": \"x\"}\n".to_vec(), "registro 2 (linha 2): campo `order`: obrigatório e ausente"),
        ("lixo-10mb", garbage, "JSON inválido na linha 1"),
        ("binario", vec![0x00, 0xff, 0xfe, 0x7f, 0x1b, 0x80, 0x00, 0x01], "JSON inválido na linha 1, coluna 1"),
        ("campo-desconhecido", br#"{"order": "1", "branch": "1", "reason": "x", "motivo": "y"}"#.to_vec(), "campo `motivo`: campo desconhecido"),
    ]
}

#[test]
fn malformed_input_is_refused_with_its_location_and_the_queue_is_untouched() {
    let env = Env::new();
    expect_exit(&env.run(&["enqueue", "--order", "1000", "--branch", "1", "--reason", "já estava"]), 0);
    let before = env.dump();
    for (name, bytes, fragment) in malformed_inputs() {
        let path = env.dir.path().join(format!("{name}.json"));
        std::fs::write(&path, &bytes).unwrap();
        let (_, stderr) = expect_exit(&env.run(&["enqueue", "--json", path.to_str().unwrap()]), 1);
        assert!(stderr.contains(fragment), "{name}: {stderr}");
        assert!(stderr.contains(path.to_str().unwrap()), "{name} must name the file: {stderr}");
        let (_, stderr) = expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], &bytes), 1);
        assert!(stderr.contains("entrada padrão"), "{name}: {stderr}");
        assert_eq!(env.dump(), before, "{name} changed the queue");
    }
}

#[test]
fn bad_flags_are_usage_errors_naming_the_flag() {
    let env = Env::new();
    let cases: [(&[&str], &str); 4] = [
        (&["enqueue", "--order", "1", "--reason", "x"], "opção --branch: obrigatório e ausente"),
        (
            &["enqueue", "--order", "1", "--branch", "1", "--reason", "x", "--cancelled-at", "ontem"],
            "opção --cancelled-at",
        ),
        (&["enqueue", "--order", "1", "--branch", "1", "--reason", "x", "--extra", "{"], "opção --extra"),
        (&["enqueue", "--branch", "1"], "falta informar: --order"),
    ];
    for (args, fragment) in cases {
        let (_, stderr) = expect_exit(&env.run(args), 2);
        assert!(stderr.contains(fragment), "{args:?}: {stderr}");
    }
    assert_eq!(env.item_count(), 0);
}

#[test]
fn enqueue_accepts_an_object_an_array_and_all_fields() {
    let env = Env::new();
    let document = r#"[
        {"order": 9001, "branch": 3, "reason": "a", "cancelled_at": "2026-11-22T10:30:00-03:00",
         "customer": "C-77", "extra": {"canal": "loja", "itens": [1, 2]}},
        {"order": "9002", "branch": "3", "reason": "b"}
    ]"#;
    let (stdout, _) = expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], document.as_bytes()), 0);
    assert!(stdout.contains("pedido 9001: enfileirado (item 1)"), "{stdout}");
    let (stdout, _) = expect_exit(&env.run(&["show", "--order", "9001", "--json"]), 0);
    let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(shown["item"]["customer"], "C-77");
    assert_eq!(shown["item"]["extra"]["canal"], "loja");
    assert_eq!(shown["item"]["cancelled_at"], "2026-11-22T10:30:00-03:00");
    assert_eq!(shown["item"]["branch"], "3");
}

/// With the service stopped, each `enqueue` writes the queue directly; the -wal file is kept (so
/// the read-only group can open the queue) and must not grow with every process, or each
/// enqueue re-reads and re-checkpoints all of it and gets slower than the last.
#[test]
fn a_thousand_direct_enqueues_leave_the_wal_bounded() {
    let env = Env::new();
    let wal = {
        let mut name = env.database().into_os_string();
        name.push("-wal");
        std::path::PathBuf::from(name)
    };
    let mut sizes = Vec::new();
    for order in 0..1000 {
        expect_exit(
            &env.run_with_input(&["enqueue", "--json", "-"], record(&order.to_string(), "r").as_bytes()),
            0,
        );
        if order % 200 == 199 {
            sizes.push(std::fs::metadata(&wal).map(|meta| meta.len()).unwrap_or(0));
        }
    }
    // (Checked before this test opens the queue: its plain connection, closing last, deletes it.)
    assert!(wal.exists(), "the -wal file is kept (emptied), for the read-only group");
    assert_eq!(env.item_count(), 1000);
    // SQLite's own bound on a restarted log is 4 MiB; before, 4.3 MB more every 200 enqueues.
    assert!(sizes.iter().all(|&size| size <= 4 * 1024 * 1024), "WAL sizes every 200: {sizes:?}");
}
