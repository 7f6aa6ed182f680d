//! `extrator simulate`: the simulated cancellation API as a foreground process, for trying the
//! daemon without a real API and for the packaging test and benchmarks. Every order is accepted
//! (200), or with `--demo` each of the demo's orders gets its scripted answer.

use std::net::SocketAddr;

use clap::Args;

use crate::core::failure::{Failure, Outcome};
use crate::simulator::{self, Scenario, Shared};

/// What each of the demo's orders gets with `--demo` (shown by `simulate --help`; a test keeps
/// it and `demo::scenario` in step).
pub const DEMO_ORDERS: &str = "Com --demo, cada pedido da demo recebe sempre a mesma resposta:
  100201  200 cancelado (sucesso)
  100202  202 recebido, depois 208 em processamento, depois 200 (API assíncrona)
  100203  400 \"pedido já faturado\" (recusado pela API: código 07)
  100204  nunca responde (timeout: código 04)
  100205  429 com Retry-After: 1, depois 200 (limite de requisições: código 08)
  100302  500 com uma página HTML (erro do servidor: código 99)
Qualquer outro pedido: 200 cancelado. O pedido é achado onde o mapeamento o puser: no campo \"order\",
em qualquer campo do corpo (JSON ou formulário) com um dos números acima, ou no caminho da URL.";

/// The `simulate` flags.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Opções", after_help = DEMO_ORDERS)]
pub struct SimulateArgs {
    /// Endereço onde escutar (só loopback faz sentido para testes)
    #[arg(long, value_name = "ENDEREÇO", default_value = "127.0.0.1:8089")]
    pub listen: SocketAddr,
    /// Responde como na demo: cada pedido da demo com a sua resposta (a lista abaixo)
    #[arg(long)]
    pub demo: bool,
    /// Exige autenticação Basic com este usuário e senha; sem ela, responde 401 (para ensaiar o erro 02)
    #[arg(long, value_name = "USUÁRIO:SENHA")]
    pub require_basic: Option<String>,
    /// Exige o cabeçalho "Authorization: Bearer TOKEN"; sem ele, responde 401
    #[arg(long, value_name = "TOKEN")]
    pub require_bearer: Option<String>,
    /// Exige este cabeçalho com este valor, ex. "X-Api-Key: abc" (pode repetir); sem ele, responde 401
    #[arg(long, value_name = "NOME: VALOR")]
    pub require_header: Vec<String>,
}

/// The credentials `simulate` was told to require: (header name in lower case, exact value).
fn required_headers(args: &SimulateArgs) -> Result<Vec<(String, String)>, Failure> {
    use base64::Engine as _;
    let mut required = Vec::new();
    if let Some(pair) = &args.require_basic {
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        required.push(("authorization".to_owned(), format!("Basic {encoded}")));
    }
    if let Some(token) = &args.require_bearer {
        required.push(("authorization".to_owned(), format!("Bearer {token}")));
    }
    for header in &args.require_header {
        let Some((name, value)) = header.split_once(':') else {
            return Err(Failure::usage(format!(
                "--require-header \"{}\": escreva \"NOME: VALOR\", ex. \"X-Api-Key: abc\"",
                crate::core::text::terminal_safe(header)
            )));
        };
        required.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(required)
}

/// Runs the simulator until interrupted.
pub fn run(args: &SimulateArgs) -> Outcome {
    let scenario = if args.demo { super::demo::scenario() } else { Scenario::default() };
    let shared = Shared::new(scenario);
    let required = required_headers(args)?;
    if !required.is_empty() {
        let names: Vec<String> = required.iter().map(|(name, _)| name.clone()).collect();
        println!("exigindo credenciais em: {} (sem elas: 401)", names.join(", "));
        shared.authorize_with(move |request| {
            required.iter().all(|(name, value)| {
                request.headers.iter().any(|(header, sent)| header == name && sent == value)
            })
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::failed(format!("não foi possível iniciar o runtime: {error}")))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|error| {
            Failure::failed(format!(
                "não foi possível escutar em {}: {}",
                args.listen,
                crate::core::text::io_error(&error)
            ))
        })?;
        println!("API de cancelamento simulada em http://{}/cancelamentos (Ctrl+C para parar)", args.listen);
        tokio::select! {
            () = simulator::serve(listener, shared) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_help_lists_every_order_of_the_demo() {
        let scenario = super::super::demo::scenario();
        for order in scenario.by_order.keys() {
            assert!(super::DEMO_ORDERS.contains(order.as_str()), "{order} is not in simulate --help");
        }
        let listed = super::DEMO_ORDERS.lines().filter(|line| line.starts_with("  1")).count();
        assert_eq!(listed, scenario.by_order.len(), "simulate --help lists an order the demo does not have");
    }
}
