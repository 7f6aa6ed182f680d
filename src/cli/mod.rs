//! The command line: clap definitions with pt-BR help, one `match` that dispatches to
//! `commands::*`, and the mapping of failures to exit codes and pt-BR messages.

pub mod assets;
pub mod commands;
pub mod json;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgAction, Parser, Subcommand};

use crate::core::failure::{EXIT_OK, EXIT_USAGE, Failure};
use commands::{
    check::CheckArgs, demo::DemoArgs, enqueue::EnqueueArgs, explain::ExplainArgs, list::ListArgs,
    preview::PreviewArgs, relatorio::RelatorioArgs, retry::RetryArgs, show::ShowArgs, simulate::SimulateArgs,
    status::StatusArgs,
};

/// The help layout, with pt-BR headings (clap's own are English).
const HELP_TEMPLATE: &str = "{about-with-newline}\nUso: {usage}\n\n{all-args}{after-help}";

/// extrator — leva os cancelamentos de pedidos do Winthor até a API de cancelamento, com fila
/// durável, novas tentativas e códigos de erro para o suporte.
#[derive(Debug, Parser)]
#[command(
    name = "extrator",
    version,
    about = "Leva os cancelamentos de pedidos do Winthor até a API de cancelamento, com fila durável e códigos de erro para o suporte",
    help_template = HELP_TEMPLATE,
    subcommand_help_heading = "Comandos",
    subcommand_value_name = "COMANDO",
    disable_help_flag = true,
    disable_version_flag = true,
    disable_help_subcommand = true,
    next_help_heading = "Opções",
    after_help = "Códigos de saída: 0 ok; 1 falhou; 2 uso incorreto; 78 configuração inválida."
)]
pub struct Cli {
    /// Arquivo de configuração (padrão: /etc/extrator/extrator.toml, ou a variável EXTRATOR_CONFIG)
    #[arg(long, global = true, env = "EXTRATOR_CONFIG", hide_env = true, value_name = "ARQUIVO", default_value = crate::config::DEFAULT_PATH, hide_default_value = true)]
    pub config: PathBuf,
    /// Mostra esta ajuda
    #[arg(short = 'h', long, global = true, action = ArgAction::Help)]
    help: Option<bool>,
    /// Mostra a versão
    #[arg(short = 'V', long, action = ArgAction::Version)]
    version: Option<bool>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Executa o serviço em primeiro plano (é o que o systemd executa)
    #[command(help_template = HELP_TEMPLATE)]
    Run,
    /// Coloca cancelamentos na fila: um pelas opções, ou vários com --json
    #[command(help_template = HELP_TEMPLATE)]
    Enqueue(EnqueueArgs),
    /// Saúde em um relance: serviço, itens por estado, falhas por código, último sucesso
    #[command(help_template = HELP_TEMPLATE)]
    Status(StatusArgs),
    /// Lista itens, com filtros
    #[command(help_template = HELP_TEMPLATE)]
    List(ListArgs),
    /// Mostra um item e todas as suas tentativas
    #[command(help_template = HELP_TEMPLATE)]
    Show(ShowArgs),
    /// Reenvia itens que falharam (ou outros, com --state)
    #[command(help_template = HELP_TEMPLATE)]
    Retry(RetryArgs),
    /// Valida a configuração e testa passo a passo: banco, DNS, TCP, TLS, credenciais, requisição
    #[command(help_template = HELP_TEMPLATE)]
    Check(CheckArgs),
    /// Explica um código de erro: significado, causas e o que fazer
    #[command(help_template = HELP_TEMPLATE)]
    Explain(ExplainArgs),
    /// Mostra a requisição exata que seria enviada para um pedido, sem enviar nada
    #[command(help_template = HELP_TEMPLATE)]
    Preview(PreviewArgs),
    /// Gera o relatório para o suporte: um arquivo de texto com versão, configuração, check, status, falhas e journal, sem nenhum segredo
    #[command(help_template = HELP_TEMPLATE)]
    Relatorio(RelatorioArgs),
    /// Simula a API de cancelamento em loopback (para testes e demonstrações)
    #[command(help_template = HELP_TEMPLATE)]
    Simulate(SimulateArgs),
    /// Gera as páginas de manual e os completamentos de shell (para empacotar)
    #[command(hide = true, help_template = HELP_TEMPLATE)]
    GenerateAssets {
        /// Diretório de saída
        #[arg(value_name = "DIRETÓRIO")]
        directory: PathBuf,
    },
    /// Demonstração completa num diretório temporário, sem configurar nada
    #[command(help_template = HELP_TEMPLATE)]
    Demo(DemoArgs),
}

/// Parses the command line, runs the command, and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    exit_quietly_on_broken_pipe();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    let outcome = match &cli.command {
        Command::Run => commands::run::run(&cli.config),
        Command::Enqueue(args) => commands::enqueue::run(&cli.config, args),
        Command::Status(args) => commands::status::run(&cli.config, args),
        Command::List(args) => commands::list::run(&cli.config, args),
        Command::Show(args) => commands::show::run(&cli.config, args),
        Command::Retry(args) => commands::retry::run(&cli.config, args),
        Command::Check(args) => commands::check::run(&cli.config, args),
        Command::Explain(args) => commands::explain::run(args),
        Command::Preview(args) => commands::preview::run(&cli.config, args),
        Command::Relatorio(args) => commands::relatorio::run(&cli.config, args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Simulate(args) => commands::simulate::run(args),
        Command::GenerateAssets { directory } => crate::cli::assets::write(directory).map_err(|error| {
            Failure::failed(format!(
                "não foi possível gravar em {}: {}",
                directory.display(),
                crate::core::text::io_error(&error)
            ))
        }),
    };
    match outcome {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(Failure { exit_code, message }) => {
            // The last line of defence: a message may quote the ERP's or the API's text.
            eprintln!("extrator: erro: {}", crate::core::text::terminal_safe_lines(&message));
            ExitCode::from(exit_code)
        }
    }
}

/// `extrator list | head` closes our stdout early; `println!` then panics. Like other Unix tools,
/// end quietly instead of printing a panic at the operator.
fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload_as_str().is_some_and(|message| message.contains("Broken pipe")) {
            std::process::exit(i32::from(EXIT_OK));
        }
        default(info);
    }));
}

/// Prints clap's help or version as is, and its errors in pt-BR, with the right exit code.
fn usage_error(error: &clap::Error) -> ExitCode {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            print!("{}", portuguese(&error.render().to_string()));
            ExitCode::from(EXIT_OK)
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            eprint!("{}", portuguese(&error.render().to_string()));
            eprintln!("extrator: erro: informe um comando");
            ExitCode::from(EXIT_USAGE)
        }
        _ => {
            eprintln!(
                "extrator: erro: {}",
                crate::core::text::terminal_safe_lines(&describe_usage_error(error))
            );
            eprintln!("Use 'extrator --help' ou 'extrator COMANDO --help' para ver as opções.");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// clap's own words in a help text or a man page, in Portuguese: clap has no translations, so
/// the few fixed phrases it writes are replaced (a test reads every `--help` and man page for
/// them). Roff's escapes of the apostrophe are covered too.
pub fn portuguese(text: &str) -> String {
    const WORDS: [(&str, &str); 14] = [
        ("Print help (see a summary with '-h')", "Mostra esta ajuda"),
        ("Print help (see a summary with \\*(Aq\\-h\\*(Aq)", "Mostra esta ajuda"),
        ("Print help (see more with '--help')", "Mostra esta ajuda"),
        ("Print help (see more with \\*(Aq\\-\\-help\\*(Aq)", "Mostra esta ajuda"),
        ("Print help", "Mostra esta ajuda"),
        ("Print version", "Mostra a versão"),
        ("Possible values:", "Valores possíveis:"),
        ("[default: ", "[padrão: "),
        ("[OPTIONS]", "[OPÇÕES]"),
        (".SH NAME", ".SH NOME"),
        (".SH SYNOPSIS", ".SH SINOPSE"),
        (".SH DESCRIPTION", ".SH DESCRIÇÃO"),
        (".SH SUBCOMMANDS", ".SH COMANDOS"),
        (".SH VERSION", ".SH VERSÃO"),
    ];
    let mut text = text.to_owned();
    for (english, portuguese) in WORDS {
        text = text.replace(english, portuguese);
    }
    // clap_mangen puts the arguments without a heading under OPTIONS and ours under "Opções":
    // one section, named once.
    let mut seen_options = false;
    text.lines()
        .filter_map(|line| {
            let options = matches!(line, ".SH OPTIONS" | ".SH OPÇÕES" | ".SH Opções");
            if options && seen_options {
                return None;
            }
            seen_options |= options;
            Some(if options { ".SH OPÇÕES" } else { line })
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

/// A clap error in pt-BR, built from its kind and context.
fn describe_usage_error(error: &clap::Error) -> String {
    let context = |kind: ContextKind| -> String {
        match error.get(kind) {
            Some(ContextValue::String(text)) => text.clone(),
            Some(ContextValue::Strings(texts)) => texts.join(", "),
            Some(ContextValue::StyledStr(text)) => text.to_string(),
            Some(ContextValue::StyledStrs(texts)) => {
                texts.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            }
            Some(ContextValue::Number(number)) => number.to_string(),
            _ => String::new(),
        }
    };
    let argument = context(ContextKind::InvalidArg);
    let suggestion = match context(ContextKind::SuggestedArg) {
        text if text.is_empty() => match context(ContextKind::SuggestedSubcommand) {
            text if text.is_empty() => String::new(),
            text => format!(" (você quis dizer '{}'?)", text.replace(", ", "' ou '")),
        },
        text => format!(" (você quis dizer '{}'?)", text.replace(", ", "' ou '")),
    };
    match error.kind() {
        ErrorKind::UnknownArgument => format!("argumento desconhecido '{argument}'{suggestion}"),
        ErrorKind::InvalidSubcommand => {
            format!("comando desconhecido '{}'{suggestion}", context(ContextKind::InvalidSubcommand))
        }
        ErrorKind::MissingRequiredArgument => format!("falta informar: {argument}"),
        ErrorKind::ArgumentConflict => {
            format!("'{argument}' não pode ser usado junto com '{}'", context(ContextKind::PriorArg))
        }
        ErrorKind::InvalidValue => {
            let valid = context(ContextKind::ValidValue);
            let valid = if valid.is_empty() { String::new() } else { format!("; valores válidos: {valid}") };
            let value = context(ContextKind::InvalidValue);
            if value.is_empty() {
                format!("falta o valor de '{argument}'{valid}")
            } else {
                format!("valor inválido '{value}' para '{argument}'{valid}")
            }
        }
        ErrorKind::ValueValidation => {
            // Our value parsers already explain in pt-BR; clap keeps that text as the source.
            let why =
                std::error::Error::source(error).map_or_else(String::new, |source| format!(": {source}"));
            format!("valor inválido '{}' para '{argument}'{why}", context(ContextKind::InvalidValue))
        }
        ErrorKind::TooManyValues | ErrorKind::WrongNumberOfValues | ErrorKind::TooFewValues => {
            format!("número errado de valores para '{argument}'")
        }
        _ => untranslated(error),
    }
}

/// The rare clap errors without a translation: clap's own text, marked as such.
fn untranslated(error: &clap::Error) -> String {
    let english = error.render().to_string();
    let first = english.lines().next().unwrap_or("").trim_start_matches("error: ");
    format!("uso incorreto ({first})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(args: &[&str]) -> String {
        let error = Cli::try_parse_from(args).expect_err("should be refused");
        describe_usage_error(&error)
    }

    #[test]
    fn usage_errors_are_pt_br() {
        assert_eq!(
            error_of(&["extrator", "lsit"]),
            "comando desconhecido 'lsit' (você quis dizer 'simulate' ou 'list'?)"
        );
        assert!(
            error_of(&["extrator", "list", "--stat", "failed"])
                .starts_with("argumento desconhecido '--stat'")
        );
        let invalid = error_of(&["extrator", "list", "--state", "enviado"]);
        assert!(invalid.contains("valor inválido 'enviado' para '--state"), "{invalid}");
        assert!(invalid.contains("pending, in_flight, processing, done, failed"), "{invalid}");
        let code = error_of(&["extrator", "list", "--code", "42"]);
        assert!(code.contains("código desconhecido"), "{code}");
        assert!(error_of(&["extrator", "enqueue"]).starts_with("falta informar: --order"));
        let conflict = error_of(&["extrator", "enqueue", "--json", "-", "--order", "1"]);
        assert!(conflict.contains("não pode ser usado junto"), "{conflict}");
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
