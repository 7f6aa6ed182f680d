//! Ordinary trouble with the API up, on the real binary: one order the API never answers, an
//! outage where every request hangs, an asynchronous order whose checks keep failing, an absurd
//! `Retry-After`, wrong credentials hit while a claim is on its way, and a day's ordinary mix
//! compressed — none of it may stop delivery for the other orders, lose one, or send one again
//! after it was answered.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use extrator::simulator::{Background, Behavior, Scenario};

use crate::util::{Env, expect_exit, json_lines, record, signal, wait_until};

/// Items not yet in a final state.
const UNFINISHED: &str = "SELECT COUNT(*) FROM items WHERE state NOT IN ('done', 'failed')";

/// Queues one order (through the running daemon's socket) and says when it was queued.
fn enqueue(env: &Env, order: &str) -> Instant {
    expect_exit(&env.run(&["enqueue", "--order", order, "--branch", "1", "--reason", "cliente desistiu"]), 0);
    Instant::now()
}

/// How many times the daemon's log says `what`.
fn logged(env: &Env, what: &str) -> usize {
    env.daemon_log().matches(what).count()
}

/// `(state, attempts, last_code)` of an order.
fn item(env: &Env, order: &str) -> (String, i64, Option<String>) {
    env.db()
        .query_row("SELECT state, attempts, last_code FROM items WHERE order_number = ?1", [order], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .unwrap()
}

#[test]
fn one_order_the_api_never_answers_fails_on_its_own_while_200_others_flow() {
    let scenario = Scenario::default().order("666", vec![Behavior::Stall]);
    let api = Background::start(scenario).unwrap();
    let env = Env::build(
        &api.url(),
        "concurrency = 4\nconnect_timeout = \"1s\"\nrequest_timeout = \"1s\"\n",
        "[retry]\nmax_attempts = 5\nfirst_delay = \"1s\"\nmax_delay = \"4s\"\n",
    );
    let mut daemon = env.spawn_daemon();
    wait_until("the intake socket", Duration::from_secs(10), || env.intake_socket().exists());
    // Alone, the order the API never answers times out three times in a row (which opened the
    // circuit and made it every probe, holding back every order that came after)…
    enqueue(&env, "666");
    wait_until("three timeouts of order 666", Duration::from_secs(30), || {
        env.number("SELECT COUNT(*) FROM attempts WHERE code = '04'") >= 3
    });
    // …then 200 healthy orders over a minute, while it is retried.
    let mut queued = HashMap::new();
    for order in 1..=200 {
        queued.insert(order.to_string(), enqueue(&env, &order.to_string()));
        std::thread::sleep(Duration::from_millis(280));
    }
    wait_until("every order final", Duration::from_secs(60), || env.number(UNFINISHED) == 0);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());

    let received = api.shared.received();
    let poison: Vec<Instant> = received
        .iter()
        .filter(|request| request.order.as_deref() == Some("666"))
        .map(|request| request.received_at)
        .collect();
    let mut waits: Vec<Duration> = Vec::new();
    for request in &received {
        let Some(&queued_at) = request.order.as_deref().and_then(|order| queued.get(order)) else { continue };
        waits.push(request.received_at.saturating_duration_since(queued_at));
        // Not held back by the poison order, in events rather than seconds: between a healthy
        // order's enqueue and its request, the poison order started at most one attempt (had
        // the circuit made it the probe, each healthy order would wait out probe after probe).
        let poison_between = poison.iter().filter(|&&at| at > queued_at && at < request.received_at).count();
        assert!(
            poison_between <= 1,
            "order {:?} waited behind {poison_between} attempts of 666",
            request.order
        );
    }
    assert_eq!(waits.len(), 200, "each healthy order sent once");
    waits.sort();
    // Figures for the reader (tests do not judge time): median, p99, max.
    eprintln!("enqueue → request: median {:?}, p99 {:?}, max {:?}", waits[100], waits[197], waits[199]);
    assert_eq!(env.number("SELECT COUNT(*) FROM items WHERE state = 'done'"), 200);
    assert_eq!(item(&env, "666"), ("failed".into(), 5, Some("04".into())), "its own 04, max_attempts");
    assert_eq!(
        logged(&env, "envio suspenso"),
        0,
        "the circuit never opened for one order:\n{}",
        env.daemon_log()
    );
}

#[test]
fn a_04_outage_of_every_order_counts_nothing_and_delivery_resumes_within_a_probe_interval() {
    let api = Background::start(Scenario { default: Behavior::Stall, ..Scenario::default() }).unwrap();
    let env = Env::build(
        &api.url(),
        "concurrency = 4\nconnect_timeout = \"1s\"\nrequest_timeout = \"1s\"\n",
        "[retry]\nmax_attempts = 3\nfirst_delay = \"500ms\"\nmax_delay = \"2s\"\n",
    );
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, 10).as_bytes()), 0);
    let mut daemon = env.spawn_daemon();
    // Long enough for every item to have been tried more than max_attempts times over.
    wait_until("six failed probes", Duration::from_secs(60), || {
        env.number("SELECT COUNT(*) FROM attempts WHERE probe = 1 AND code = '04'") >= 6
    });
    let (stdout, _) = expect_exit(&env.run(&["status"]), 0);
    assert!(stdout.contains("CIRCUITO ABERTO: a API falhou com o erro 04 Timeout"), "{stdout}");

    api.shared.set_scenario(Scenario::default());
    let back = Instant::now();
    let back_ms = jiff::Timestamp::now().as_millisecond();
    wait_until("every item delivered", Duration::from_secs(30), || env.number(UNFINISHED) == 0);
    let first = api
        .shared
        .received()
        .iter()
        .filter(|request| request.received_at >= back)
        .map(|request| request.received_at.duration_since(back))
        .min()
        .unwrap();
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());

    // A figure, not a test of time: delivery resumes at the next probe (at most retry.max_delay,
    // 2 s, away). What is asserted is the count: after the API came back, at most the one probe
    // already on the wire timed out; the next one delivered.
    eprintln!("first request after the API came back: {first:?}");
    assert!(
        env.number(&format!("SELECT COUNT(*) FROM attempts WHERE code = '04' AND started_at >= {back_ms}"))
            <= 1,
        "a probe after the API came back failed"
    );
    assert_eq!(env.number("SELECT COUNT(*) FROM items WHERE state = 'done'"), 10, "nothing failed");
    assert_eq!(env.number("SELECT SUM(attempts) FROM items"), 0, "nothing counted");
    assert_eq!(
        env.number("SELECT COUNT(*) FROM attempts WHERE counted = 1"),
        0,
        "not even the first timeouts"
    );
    assert_eq!(logged(&env, "envio suspenso"), 1, "the outage is logged once:\n{}", env.daemon_log());
    assert_eq!(logged(&env, "envio retomado"), 1, "and its end once");
}

#[test]
fn an_async_order_whose_checks_fail_holds_nothing_back_and_ends_04_and_retry_after_is_capped() {
    let scenario = Scenario::default()
        // Accepted, then every check fails with 500 (A1) or gets no answer (A2).
        .order(
            "A1",
            vec![
                Behavior::json(202, r#"{"status":"na fila"}"#),
                Behavior::json(500, r#"{"message":"falha"}"#),
            ],
        )
        .order("A2", vec![Behavior::json(202, r#"{"status":"na fila"}"#), Behavior::Stall])
        // Wait for the year 5195, then cancelled.
        .order(
            "R1",
            vec![
                Behavior::json(429, r#"{"message":"devagar"}"#).header("Retry-After", "99999999999"),
                Behavior::json(200, r#"{"status":"cancelado"}"#),
            ],
        );
    let api = Background::start(scenario).unwrap();
    let env = Env::build(
        &api.url(),
        "concurrency = 4\nconnect_timeout = \"1s\"\nrequest_timeout = \"1s\"\nasync_poll_interval = \"200ms\"\nasync_max_wait = \"2s\"\n",
        "[retry]\nmax_attempts = 2\nfirst_delay = \"1500ms\"\nmax_delay = \"3s\"\n",
    );
    let mut daemon = env.spawn_daemon();
    wait_until("the intake socket", Duration::from_secs(10), || env.intake_socket().exists());
    enqueue(&env, "A1");
    enqueue(&env, "A2");
    wait_until("both accepted and checked", Duration::from_secs(10), || {
        env.number("SELECT COUNT(*) FROM attempts WHERE outcome = 'failure'") >= 2
    });
    let mut queued = HashMap::new();
    for order in 1..=20 {
        queued.insert(order.to_string(), enqueue(&env, &order.to_string()));
    }
    wait_until("the 20 good orders delivered", Duration::from_secs(10), || {
        env.number("SELECT COUNT(*) FROM items WHERE state = 'done'") == 20
    });
    // Not held back, in events: the 20 were delivered while both async orders were still being
    // checked (each has two rounds of async_max_wait ahead of it).
    assert_eq!(
        env.number("SELECT COUNT(*) FROM items WHERE order_number IN ('A1', 'A2') AND state NOT IN ('done', 'failed')"),
        2,
        "the good orders waited for the async ones to end"
    );
    let slowest = api
        .shared
        .received()
        .iter()
        .filter_map(|request| {
            Some(request.received_at.saturating_duration_since(*queued.get(request.order.as_deref()?)?))
        })
        .max()
        .unwrap();
    eprintln!("slowest good order, enqueue → request: {slowest:?}");

    let limited = enqueue(&env, "R1");
    wait_until("every order final", Duration::from_secs(30), || env.number(UNFINISHED) == 0);
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());

    for order in ["A1", "A2"] {
        assert_eq!(item(&env, order), ("failed".into(), 2, Some("04".into())), "{order}");
        let kind: String = env
            .db()
            .query_row(
                "SELECT kind FROM attempts a JOIN items i ON i.id = a.item_id WHERE i.order_number = ?1 \
                 ORDER BY a.number DESC LIMIT 1",
                [order],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(kind, "async_timeout", "{order}");
    }
    let r1: Vec<Instant> = api
        .shared
        .received()
        .iter()
        .filter(|request| request.order.as_deref() == Some("R1"))
        .map(|request| request.received_at)
        .collect();
    assert_eq!(r1.len(), 2);
    let waited = r1[1].duration_since(r1[0]);
    // A lower bound only (never sent early); that it did not wait for 5195 is the wait above.
    assert!(waited >= Duration::from_millis(2_900), "it waited retry.max_delay: {waited:?}");
    eprintln!("R1 delivered {:?} after its enqueue", limited.elapsed());
    assert_eq!(item(&env, "R1").0, "done");
    let log = env.daemon_log();
    assert!(log.contains("a API pediu para esperar") && log.contains("retry.max_delay"), "{log}");
    assert_eq!(logged(&env, "envio suspenso: CIRCUITO"), 0, "{log}");
}

#[test]
fn wrong_credentials_never_send_an_order_twice_in_one_pause() {
    // Two orders and four slots: a tick's claim for the free slots is often on its way when a
    // 401 (slow to come, 40 ms) pauses sending, and then finds the order that 401 put back.
    // 500 pauses in a row, each lifted by a reload.
    let scenario = Scenario {
        default: Behavior::json(401, r#"{"message":"credenciais inválidas"}"#).after(40),
        ..Scenario::default()
    };
    let api = Background::start(scenario).unwrap();
    let env = Env::build(&api.url(), "concurrency = 4\n", "");
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("poll_interval = \"100ms\"", "poll_interval = \"20ms\"");
    std::fs::write(&env.config, text).unwrap();
    expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], json_lines(1, 2).as_bytes()), 0);
    let mut daemon = env.spawn_daemon();
    let mut cycles = Vec::new();
    for cycle in 0..500 {
        wait_until("the pause", Duration::from_secs(10), || logged(&env, "envio suspenso: PAUSADO") > cycle);
        cycles.push(Instant::now());
        signal(&daemon, "HUP");
        wait_until("the reload", Duration::from_secs(10), || {
            logged(&env, "configuração recarregada") > cycle
        });
    }
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());
    // Between one pause and the next, each order is sent at most once.
    let received = api.shared.received();
    let mut twice = Vec::new();
    for window in cycles.windows(2) {
        let mut seen = HashMap::new();
        for request in received
            .iter()
            .filter(|request| request.received_at > window[0] && request.received_at <= window[1])
        {
            *seen.entry(request.order.clone()).or_insert(0) += 1;
        }
        twice.extend(seen.into_iter().filter(|(_, count)| *count > 1));
    }
    assert!(twice.is_empty(), "sent twice in one pause: {twice:?}");
    // Every request the API saw is recorded, each under its own number.
    let recorded = env.number("SELECT COUNT(*) FROM attempts");
    assert_eq!(recorded as usize, received.len());
    assert_eq!(
        env.number(
            "SELECT COUNT(*) FROM (SELECT item_id, number FROM attempts GROUP BY 1, 2 HAVING COUNT(*) > 1)"
        ),
        0
    );
    assert_eq!(env.number("SELECT SUM(attempts) FROM items"), 0);
}

/// Where an order falls in 0..100, spread like chance (SplitMix64 of its number), so the orders
/// the mix makes fail are scattered as real ones are, not five in a row.
fn percentile(order: usize) -> u64 {
    let mut z = (order as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) % 100
}

/// What the mix's API does with an order: 5 % fail twice with 500, 2 % are refused, 1 % are
/// slow, the rest go through at once.
fn mixed(order: usize) -> Option<Vec<Behavior>> {
    let ok = || Behavior::json(200, r#"{"status":"cancelado"}"#);
    match percentile(order) {
        0..5 => {
            Some(vec![Behavior::json(500, r#"{"message":"erro interno"}"#), Behavior::json(500, "{}"), ok()])
        }
        5..7 => Some(vec![Behavior::json(400, r#"{"message":"pedido já faturado"}"#)]),
        7 => Some(vec![ok().after(1_500)]),
        _ => None,
    }
}

#[test]
fn an_ordinary_mix_with_an_outage_delivers_every_order_once_and_promptly() {
    const RATE: usize = 75;
    const SECONDS: usize = 240;
    let mut scenario = Scenario::default();
    for order in 1..=RATE * SECONDS {
        if let Some(behaviors) = mixed(order) {
            scenario = scenario.order(&order.to_string(), behaviors);
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let mut api = Some(Background::start_on(listener, scenario).unwrap());
    let shared = api.as_ref().unwrap().shared.clone();
    let env = Env::build(&format!("http://{address}/cancelamentos"), "concurrency = 4\n", "");
    let mut daemon = env.spawn_daemon();
    wait_until("the intake socket", Duration::from_secs(10), || env.intake_socket().exists());

    // 75 orders a second for four minutes, a batch every 100 ms; down from 120 s to 150 s.
    let start = Instant::now();
    let mut offered = vec![0_usize; SECONDS / 60];
    let mut next = 1;
    while next <= RATE * SECONDS {
        let second = start.elapsed().as_secs_f64();
        let due = ((second * RATE as f64) as usize).min(RATE * SECONDS);
        if due >= next {
            let batch: String =
                (next..=due).map(|order| record(&order.to_string(), "cliente desistiu") + "\n").collect();
            expect_exit(&env.run_with_input(&["enqueue", "--json", "-"], batch.as_bytes()), 0);
            let minute = (second as usize / 60).min(offered.len() - 1);
            offered[minute] += due + 1 - next;
            next = due + 1;
        }
        if (120.0..150.0).contains(&second) && api.is_some() {
            api = None;
        } else if second >= 150.0 && api.is_none() {
            let listener = loop {
                match std::net::TcpListener::bind(address) {
                    Ok(listener) => break listener,
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            };
            api = Some(Background::resume_on(listener, shared.clone()).unwrap());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let load_ended = Instant::now();
    wait_until("every order final within 3 minutes of the load's end", Duration::from_secs(180), || {
        env.number(UNFINISHED) == 0
    });
    let drained = load_ended.elapsed();
    signal(&daemon, "TERM");
    assert!(daemon.wait().unwrap().success(), "{}", env.daemon_log());

    // Delivered per minute (first success), beside what was offered.
    let successes: Vec<i64> = env
        .db()
        .prepare("SELECT MIN(started_at) FROM attempts WHERE outcome = 'success' GROUP BY item_id")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let first = successes.iter().min().copied().unwrap_or(0);
    let mut delivered = vec![0_usize; SECONDS / 60 + 4];
    for at in &successes {
        let minute = (((at - first) / 60_000) as usize).min(delivered.len() - 1);
        delivered[minute] += 1;
    }
    eprintln!(
        "offered per minute: {offered:?}; delivered per minute: {delivered:?}; drained {drained:?} after the load"
    );

    let total = RATE * SECONDS;
    assert_eq!(env.number("SELECT COUNT(*) FROM items") as usize, total, "none lost");
    let refused = (1..=total).filter(|order| (5..7).contains(&percentile(*order))).count();
    assert_eq!(
        env.number("SELECT COUNT(*) FROM items WHERE state = 'failed' AND last_code = '07'") as usize,
        refused
    );
    assert_eq!(env.number("SELECT COUNT(*) FROM items WHERE state = 'done'") as usize, total - refused);
    // Every request the API saw is an attempt on record (a request cut off by the outage before
    // the API read it is on record too, as the failure it was), and nothing went after a success.
    let mut requests: HashMap<String, usize> = HashMap::new();
    for request in shared.received() {
        *requests.entry(request.order.unwrap_or_default()).or_insert(0) += 1;
    }
    let conn = env.db();
    let mut statement = conn
        .prepare(
            "SELECT i.order_number, COUNT(*) FROM attempts a JOIN items i ON i.id = a.item_id GROUP BY 1",
        )
        .unwrap();
    let attempts: HashMap<String, usize> = statement
        .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as usize)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let unrecorded: Vec<_> = requests
        .iter()
        .filter(|(order, count)| attempts.get(*order).is_none_or(|recorded| recorded < count))
        .take(10)
        .collect();
    assert!(unrecorded.is_empty(), "requests the records do not account for: {unrecorded:?}");
    assert_eq!(
        env.number(
            "SELECT COUNT(*) FROM attempts a WHERE EXISTS (SELECT 1 FROM attempts b WHERE b.item_id = a.item_id \
             AND b.outcome = 'success' AND b.number < a.number)"
        ),
        0,
        "nothing sent again after a 200"
    );
    assert_eq!(
        logged(&env, "envio suspenso"),
        1,
        "the circuit opened for the outage only:\n{}",
        env.daemon_log().lines().filter(|line| line.contains("envio")).collect::<Vec<_>>().join("\n")
    );
}
