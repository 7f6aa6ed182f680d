//! The support team's error codes: the one catalog that logs, `status`, `list`, `explain`,
//! `check` and the docs all read. Codes 01–05 and 99 are the vendor's published codes and keep
//! their numbers and meaning; 06–08 split cases the published table lumps into 99.

/// A support code. Its text form ("04") is what records, journal fields and `--json` carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    /// 01 Conexão recusada.
    ConnectionRefused,
    /// 02 Senha inválida.
    InvalidPassword,
    /// 03 Usuário não encontrado.
    UserNotFound,
    /// 04 Timeout.
    Timeout,
    /// 05 Host não conhecido.
    UnknownHost,
    /// 06 Falha de TLS/certificado.
    Tls,
    /// 07 Cancelamento rejeitado pela API.
    Rejected,
    /// 08 Limite de requisições.
    RateLimited,
    /// 99 Erro genérico.
    Generic,
}

impl Code {
    /// Two digits, as support says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::ConnectionRefused => "01",
            Code::InvalidPassword => "02",
            Code::UserNotFound => "03",
            Code::Timeout => "04",
            Code::UnknownHost => "05",
            Code::Tls => "06",
            Code::Rejected => "07",
            Code::RateLimited => "08",
            Code::Generic => "99",
        }
    }

    /// The code's catalog entry.
    pub fn info(self) -> &'static Info {
        CATALOG.iter().find(|info| info.code == self).unwrap_or(&CATALOG[CATALOG.len() - 1])
    }

    /// "04 Timeout".
    pub fn label(self) -> String {
        format!("{} {}", self.as_str(), self.info().name)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One error code and how support reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    pub code: Code,
    /// The pt-BR name.
    pub name: &'static str,
    /// One sentence: when this code is given.
    pub meaning: &'static str,
    /// What the daemon does about it.
    pub behaviour: &'static str,
    /// Likely causes, most common first.
    pub causes: &'static [&'static str],
    /// What to do, in order.
    pub steps: &'static [&'static str],
}

/// Every code, in numeric order.
pub const CATALOG: [Info; 9] = [
    Info {
        code: Code::ConnectionRefused,
        name: "Conexão recusada",
        meaning: "a conexão TCP com a API (ou com o proxy de api.proxy) foi recusada, a rede/host está inalcançável, ou o proxy não deixou passar",
        behaviour: "não gasta tentativas do item; o envio para e só um teste (sonda) é feito de tempos em tempos até a API voltar",
        causes: &[
            "o serviço da API está fora do ar ou reiniciando",
            "porta errada em api.url",
            "um firewall na saída do servidor ou na frente da API rejeita a conexão (REJECT)",
            "rota de rede inexistente até o servidor da API",
            "com api.proxy: o proxy está fora do ar, não libera a porta da API (CONNECT recusado) ou exige autenticação (HTTP 407)",
        ],
        steps: &[
            "rode `extrator check` e veja em qual passo falha",
            "confira host e porta de api.url com o fornecedor da API",
            "teste do servidor: `curl -v URL-da-API` (ou `nc -vz host porta`)",
            "se só este servidor não alcança a API, verifique firewall e rotas com a equipe de rede",
            "se a rede exige proxy, configure api.proxy; se a mensagem diz \"via proxy\", a falha foi no proxy: confira-o com a equipe de rede",
        ],
    },
    Info {
        code: Code::InvalidPassword,
        name: "Senha inválida",
        meaning: "a API recusou as credenciais (usuário ou senha)",
        behaviour: "não gasta tentativas; todo envio fica PAUSADO até a configuração ser recarregada ou um teste a cada 5 minutos passar",
        causes: &[
            "senha errada, expirada ou trocada pelo fornecedor",
            "arquivo de senha (api.auth.password_file) com conteúdo antigo",
            "modo de autenticação errado (api.auth.mode)",
        ],
        steps: &[
            "confirme usuário e senha com o fornecedor da API",
            "atualize o arquivo indicado em api.auth.password_file (só a senha, sem espaços)",
            "rode `extrator check` para testar as credenciais",
            "aplique com `systemctl reload extrator`; os itens pendentes seguem sozinhos",
        ],
    },
    Info {
        code: Code::UserNotFound,
        name: "Usuário não encontrado",
        meaning: "a API informou que o usuário configurado não existe",
        behaviour: "não gasta tentativas; todo envio fica PAUSADO até a configuração ser recarregada ou um teste a cada 5 minutos passar",
        causes: &[
            "usuário digitado errado em api.auth.user",
            "usuário desativado ou removido no fornecedor",
            "ambiente errado (usuário de homologação apontando para produção)",
        ],
        steps: &[
            "confira api.auth.user e api.url (produção ou homologação)",
            "confirme com o fornecedor que o usuário existe e está ativo",
            "se a mensagem da API for outra, ajuste api.auth.user_not_found_patterns",
            "aplique com `systemctl reload extrator`",
        ],
    },
    Info {
        code: Code::Timeout,
        name: "Timeout",
        meaning: "a API não conectou ou não respondeu por completo dentro do tempo limite",
        behaviour: "nova tentativa com espera crescente; conta para retry.max_attempts; abre o circuito só quando a maioria dos pedidos recentes falha assim (aí não conta)",
        causes: &[
            "API lenta ou sobrecarregada",
            "um firewall descarta os pacotes em silêncio (DROP)",
            "api.connect_timeout ou api.request_timeout curtos demais para esta API",
            "API assíncrona que não deu resposta final dentro de api.async_max_wait",
        ],
        steps: &[
            "veja em `extrator show ID` o tipo (connect_timeout, read_timeout, body_timeout, async_timeout)",
            "rode `extrator check` para medir a conexão",
            "se a API é lenta por natureza, aumente api.request_timeout e recarregue",
            "se a conexão nunca abre, verifique firewall (DROP) com a equipe de rede",
        ],
    },
    Info {
        code: Code::UnknownHost,
        name: "Host não conhecido",
        meaning: "o nome do servidor da API não foi resolvido pelo DNS",
        behaviour: "não gasta tentativas; o envio para e só um teste é feito de tempos em tempos",
        causes: &[
            "nome digitado errado em api.url (tipo dns_nxdomain)",
            "nenhum servidor DNS alcançável a partir deste servidor (tipo dns_unavailable)",
            "/etc/resolv.conf sem servidores, ou DNS interno fora do ar",
        ],
        steps: &[
            "confira o nome do host em api.url",
            "teste no servidor: `getent hosts NOME`",
            "se nenhum nome resolve, verifique /etc/resolv.conf e o DNS da rede",
        ],
    },
    Info {
        code: Code::Tls,
        name: "Falha de TLS/certificado",
        meaning: "a negociação TLS falhou: o certificado da API não foi aceito, ou a API recusou o certificado de cliente (TLS mútuo) ou a falta dele",
        behaviour: "não gasta tentativas; o envio para e testes são feitos mais espaçados",
        causes: &[
            "certificado da API expirado",
            "certificado emitido para outro nome (api.url com o host errado)",
            "certificado de uma autoridade (CA) privada que este servidor não conhece",
            "a API exige certificado de cliente (Pix, bancos, SEFAZ) e api.client_certificate não foi configurado (tipo client_certificate)",
            "o certificado de cliente venceu, foi revogado, ou não é o que o fornecedor cadastrou (tipo client_certificate)",
            "relógio do servidor errado",
            "um proxy ou firewall que intercepta HTTPS",
        ],
        steps: &[
            "veja a mensagem em `extrator show ID` (expirado, outro nome, autoridade desconhecida, certificado de cliente)",
            "certificado de cliente: `extrator check` mostra qual está em uso e quando vence; configure api.client_certificate (o .p12/.pfx e api.client_certificate_password_file) e recarregue",
            "teste: `openssl s_client -connect host:443 -servername host` (com certificado de cliente: acrescente -cert e -key)",
            "para CA privada, aponte api.ca_file para o certificado da CA (PEM) e recarregue",
            "confira a data e hora do servidor (`timedatectl`)",
        ],
    },
    Info {
        code: Code::Rejected,
        name: "Cancelamento rejeitado pela API",
        meaning: "a API recusou este cancelamento (dados, pedido ou URL), com a mensagem dela",
        behaviour: "sem nova tentativa: o item vai para `failed` com a mensagem da API",
        causes: &[
            "o pedido não pode ser cancelado do lado do fornecedor (já faturado, já cancelado, inexistente)",
            "dados inválidos no cancelamento (filial, motivo, campos extras)",
            "URL da API errada (mensagem sobre Missing Authentication Token) ou que mudou (redirecionamento 3xx)",
            "a requisição não está no formato que a API espera ([api.request]: método, caminho, campo faltando ou de tipo errado) — a API diz qual",
            "o pedido não cabe no formato configurado (tipo request_mapping: nada foi enviado; a mensagem diz a chave)",
        ],
        steps: &[
            "leia a mensagem da API em `extrator show ID` ou `extrator list --code 07`",
            "se a mensagem fala de campo, método ou caminho, compare `extrator preview --order PEDIDO` com a documentação da API e ajuste [api.request]",
            "corrija o problema com o fornecedor ou no ERP",
            "reenvie com `extrator retry --id ID` (ou `--code 07`) quando fizer sentido",
        ],
    },
    Info {
        code: Code::RateLimited,
        name: "Limite de requisições",
        meaning: "a API pediu para reduzir o ritmo (429 Too Many Requests, ou 503 com Retry-After)",
        behaviour: "não gasta tentativas; todo envio espera o tempo pedido em Retry-After (60 s se não disser; no máximo retry.max_delay)",
        causes: &[
            "volume alto de cancelamentos de uma vez",
            "api.concurrency acima do que o fornecedor permite",
            "outro sistema usando a mesma conta na API",
        ],
        steps: &[
            "normalmente nada: o envio continua sozinho depois da espera",
            "se for frequente, reduza api.concurrency e recarregue",
            "confirme com o fornecedor o limite da conta",
        ],
    },
    Info {
        code: Code::Generic,
        name: "Erro genérico",
        meaning: "erro do servidor da API (5xx), resposta ilegível ou conexão interrompida",
        behaviour: "nova tentativa com espera crescente; conta para retry.max_attempts; abre o circuito só quando a maioria dos pedidos recentes falha assim (aí não conta)",
        causes: &[
            "falha interna da API (HTTP 500, 502, 503)",
            "resposta que não é JSON válido",
            "conexão derrubada no meio da resposta",
        ],
        steps: &[
            "veja o tipo e a mensagem em `extrator show ID`",
            "se persistir, envie ao fornecedor o horário, o pedido e o Idempotency-Key mostrados por `extrator show`",
            "itens que falharam de vez podem ser reenviados com `extrator retry --code 99`",
        ],
    },
];

/// The whole explanation of a code, in pt-BR, as `explain` prints it and the support guide shows it.
pub fn explain(code: &Info) -> String {
    let mut text = format!(
        "Código {} — {}\n\n{}.\n\nO que o extrator faz: {}.\n\nCausas prováveis:\n",
        code.code,
        code.name,
        capitalised(code.meaning),
        code.behaviour
    );
    for cause in code.causes {
        text.push_str(&format!("  - {cause}\n"));
    }
    text.push_str("\nO que fazer:\n");
    for (number, step) in code.steps.iter().enumerate() {
        text.push_str(&format!("  {}. {step}\n", number + 1));
    }
    text
}

/// The support guide (docs/codigos-de-erro.md), generated from the catalog.
pub fn support_guide() -> String {
    let mut text = String::from(
        "# Códigos de erro do extrator\n\n\
         Gerado a partir do catálogo do código (`src/core/codes.rs`), o mesmo que `extrator explain`, os logs,\n\
         `extrator check` e `extrator status` usam. Não edite à mão: rode\n\
         `extrator explain --markdown > docs/codigos-de-erro.md`.\n\n\
         | código | nome | quando |\n| --- | --- | --- |\n",
    );
    for code in &CATALOG {
        text.push_str(&format!(
            "| [{}](#código-{}) | {} | {} |\n",
            code.code, code.code, code.name, code.meaning
        ));
    }
    for code in &CATALOG {
        text.push_str(&format!("\n## Código {}\n\n**{}** — {}.\n\n", code.code, code.name, code.meaning));
        text.push_str(&format!("O que o extrator faz: {}.\n\nCausas prováveis:\n\n", code.behaviour));
        for cause in code.causes {
            text.push_str(&format!("- {cause}\n"));
        }
        text.push_str("\nO que fazer:\n\n");
        for (number, step) in code.steps.iter().enumerate() {
            text.push_str(&format!("{}. {step}\n", number + 1));
        }
    }
    text
}

/// "a conexão…" → "A conexão…".
pub fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect())
}

/// Looks a code up, accepting "4" for "04".
pub fn find(text: &str) -> Option<&'static Info> {
    let text = text.trim();
    let padded = if text.len() == 1 { format!("0{text}") } else { text.to_owned() };
    CATALOG.iter().find(|info| info.code.as_str() == padded)
}

/// "04 Timeout" for a code's text form (as stored), or the text itself if it is not a code.
pub fn label(code: &str) -> String {
    find(code).map_or_else(|| code.to_owned(), |known| known.code.label())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_codes_keep_their_numbers_and_names() {
        let published = [
            ("01", "Conexão recusada"),
            ("02", "Senha inválida"),
            ("03", "Usuário não encontrado"),
            ("04", "Timeout"),
            ("05", "Host não conhecido"),
            ("99", "Erro genérico"),
        ];
        for (code, name) in published {
            assert_eq!(find(code).map(|known| known.name), Some(name));
            assert_eq!(find(code).map(|known| known.code.as_str()), Some(code));
        }
    }

    #[test]
    fn every_code_explains_causes_and_steps() {
        for code in &CATALOG {
            assert!(!code.causes.is_empty() && !code.steps.is_empty(), "{}", code.code);
            let text = explain(code);
            assert!(text.starts_with(&format!("Código {} — {}", code.code, code.name)), "{text}");
            assert!(text.contains("O que fazer:"), "{text}");
        }
    }

    #[test]
    fn the_committed_support_guide_is_the_generated_one() {
        let committed = include_str!("../../docs/codigos-de-erro.md");
        assert!(
            committed == support_guide(),
            "docs/codigos-de-erro.md is stale: run `extrator explain --markdown > docs/codigos-de-erro.md`"
        );
    }

    #[test]
    fn lookup_accepts_a_single_digit() {
        assert_eq!(find("4").map(|code| code.code), Some(Code::Timeout));
        assert_eq!(find("10"), None);
        assert_eq!(label("08"), "08 Limite de requisições");
    }
}
