//! `extrator simulate`: the simulated cancellation API as a foreground process, for trying the
//! daemon without a real API and for the packaging test and benchmarks. Every order is accepted
//! (200), or with `--demo` each of the demo's orders gets its scripted answer.

use std::net::SocketAddr;

use clap::Args;

use crate::failure::{Failure, Outcome};
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
Qualquer outro pedido: 200 cancelado. O pedido é lido do campo \"order\" do corpo JSON.";

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
}

/// Runs the simulator until interrupted.
pub fn run(args: &SimulateArgs) -> Outcome {
    let scenario = if args.demo { super::demo::scenario() } else { Scenario::default() };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::failed(format!("não foi possível iniciar o runtime: {error}")))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|error| {
            Failure::failed(format!(
                "não foi possível escutar em {}: {}",
                args.listen,
                crate::text::io_error(&error)
            ))
        })?;
        println!("API de cancelamento simulada em http://{}/cancelamentos (Ctrl+C para parar)", args.listen);
        tokio::select! {
            () = simulator::serve(listener, Shared::new(scenario)) => {}
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
