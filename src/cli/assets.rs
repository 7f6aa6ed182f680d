//! Files generated from the code for the packages: the man pages `extrator(1)` (one page per
//! subcommand too) and `extrator.toml(5)`, and shell completions for bash and zsh. They are
//! committed under `packaging/generated/`; a test fails when they drift from the code
//! (regenerate with `extrator generate-assets packaging/generated`).

use std::io;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;

/// Where the committed copies live, relative to the repository.
pub const DIRECTORY: &str = "packaging/generated";

/// Every generated file: (name, contents).
pub fn files() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let command = Cli::command();
    files.push(("extrator.1".to_owned(), main_page(command.clone())));
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        let name = format!("extrator-{}", sub.get_name());
        let mut page = Vec::new();
        let sub = sub.clone().name(name.clone()).bin_name(format!("extrator {}", sub.get_name()));
        let _ = clap_mangen::Man::new(sub).manual("extrator").section("1").render(&mut page);
        files.push((
            format!("{name}.1"),
            crate::cli::portuguese(&String::from_utf8_lossy(&page)).into_bytes(),
        ));
    }
    files.push(("extrator.toml.5".to_owned(), config_page()));
    files.push(("extrator.catalog".to_owned(), crate::io::journal::catalog().into_bytes()));
    for (shell, name) in
        [(clap_complete::Shell::Bash, "extrator.bash"), (clap_complete::Shell::Zsh, "_extrator")]
    {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "extrator", &mut script);
        files.push((name.to_owned(), script));
    }
    files
}

/// Writes every generated file into `directory`.
pub fn write(directory: &Path) -> io::Result<()> {
    std::fs::create_dir_all(directory)?;
    for (name, contents) in files() {
        std::fs::write(directory.join(name), contents)?;
    }
    Ok(())
}

/// `extrator(1)`: clap's sections, then exit codes, error codes and files.
fn main_page(command: clap::Command) -> Vec<u8> {
    let man = clap_mangen::Man::new(command).manual("extrator");
    let mut page = Vec::new();
    let _ = man.render_title(&mut page);
    let _ = man.render_name_section(&mut page);
    let _ = man.render_synopsis_section(&mut page);
    let _ = man.render_description_section(&mut page);
    let _ = man.render_options_section(&mut page);
    let _ = man.render_subcommands_section(&mut page);
    let mut extra = String::from(".SH \"CÓDIGOS DE SAÍDA\"\n");
    for (code, meaning) in [
        ("0", "sucesso"),
        (
            "1",
            "o comando falhou (entrada inválida, conflito na fila, banco indisponível, passo do check com falha)",
        ),
        ("2", "uso incorreto da linha de comando"),
        ("78", "configuração inválida (EX_CONFIG)"),
    ] {
        extra.push_str(&format!(".TP\n\\fB{code}\\fR\n{meaning}\n"));
    }
    extra.push_str(".SH \"CÓDIGOS DE ERRO\"\nCada falha de envio recebe um código do suporte; \\fBextrator explain\\fR \\fICÓDIGO\\fR detalha causas e o que fazer.\n");
    for code in &crate::core::codes::CATALOG {
        extra.push_str(&format!(".TP\n\\fB{}\\fR {}\n{}.\n", code.code, roff(code.name), roff(code.meaning)));
    }
    extra.push_str(
        ".SH ARQUIVOS\n.TP\n/etc/extrator/extrator.toml\nconfiguração, veja \\fBextrator.toml\\fR(5)\n\
         .TP\n/var/lib/extrator/extrator.db\na fila (SQLite)\n.TP\n/var/spool/extrator\n\
         o diretório de spool do ERP (processados/, rejeitados/)\n\
         .SH \"VEJA TAMBÉM\"\n\\fBextrator.toml\\fR(5), \\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1)\n",
    );
    page.extend_from_slice(extra.as_bytes());
    crate::cli::portuguese(&String::from_utf8_lossy(&page)).into_bytes()
}

/// `extrator.toml(5)`: the commented default config, which documents every key, verbatim.
fn config_page() -> Vec<u8> {
    let mut page = String::from(
        ".TH EXTRATOR.TOML 5 \"\" extrator\n.SH NOME\nextrator.toml \\- configuração do extrator\n\
         .SH DESCRIÇÃO\n/etc/extrator/extrator.toml configura o extrator em TOML. Chaves desconhecidas são \
         recusadas com a linha e o nome da chave. Durações são textos com unidade (\"30s\", \"5m\", \"1h30m\"). \
         Cada chave pode ser sobrescrita pela variável de ambiente EXTRATOR_<SEÇÃO>__<CHAVE>. \
         Valide com \\fBextrator check\\fR e aplique com \\fBsystemctl reload extrator\\fR.\n\
         .SH \"ARQUIVO PADRÃO COMENTADO\"\nCada chave, com seu valor padrão e seu significado:\n.PP\n.nf\n",
    );
    for line in include_str!("../../packaging/extrator.toml").lines() {
        page.push_str(&roff_literal(line));
        page.push('\n');
    }
    page.push_str(".fi\n.SH \"VEJA TAMBÉM\"\n\\fBextrator\\fR(1)\n");
    page.into_bytes()
}

/// Escapes text for roff.
fn roff(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}

/// A literal line in a `.nf` block: backslashes escaped, a leading `.` or `'` protected.
fn roff_literal(line: &str) -> String {
    let escaped = line.replace('\\', "\\e");
    if escaped.starts_with('.') || escaped.starts_with('\'') { format!("\\&{escaped}") } else { escaped }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_copies_are_what_the_code_generates() {
        let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join(DIRECTORY);
        for (name, contents) in files() {
            let committed = std::fs::read(directory.join(&name)).unwrap_or_default();
            assert!(
                committed == contents,
                "{DIRECTORY}/{name} is stale: run `cargo run -- generate-assets {DIRECTORY}`"
            );
        }
    }
}
