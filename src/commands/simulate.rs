//! `extrator simulate`: the simulated cancellation API as a foreground process, for trying the
//! daemon without a real API and for the packaging test and benchmarks. Every order is accepted
//! (200), or with `--demo` each of the demo's orders gets its scripted answer.

use std::net::SocketAddr;

use clap::Args;

use crate::failure::{Failure, Outcome};
use crate::simulator::{self, Scenario, Shared};

/// The `simulate` flags.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Opções")]
pub struct SimulateArgs {
    /// Endereço onde escutar (só loopback faz sentido para testes)
    #[arg(long, value_name = "ENDEREÇO", default_value = "127.0.0.1:8089")]
    pub listen: SocketAddr,
    /// Responde como na demo (sucesso, 202→208→200, 400, 429, 500, sem resposta), por pedido
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
