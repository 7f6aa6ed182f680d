//! The support team's error codes: the one catalog that logs, `status`, `list`, `explain`,
//! `check` and the docs all read. Codes 01–05 and 99 are the vendor's published codes and keep
//! their numbers and meaning; 06–08 split cases the published table lumps into 99.

/// One error code and how support reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    /// Two digits, as support says it ("04").
    pub code: &'static str,
    /// The pt-BR name.
    pub name: &'static str,
    /// One sentence: when this code is given.
    pub meaning: &'static str,
}

/// Every code, in numeric order.
pub const CATALOG: [Code; 9] = [
    Code {
        code: "01",
        name: "Conexão recusada",
        meaning: "a conexão TCP com a API foi recusada, ou a rede/host está inalcançável",
    },
    Code { code: "02", name: "Senha inválida", meaning: "a API recusou as credenciais (usuário ou senha)" },
    Code {
        code: "03",
        name: "Usuário não encontrado",
        meaning: "a API informou que o usuário configurado não existe",
    },
    Code {
        code: "04",
        name: "Timeout",
        meaning: "a API não conectou ou não respondeu por completo dentro do tempo limite",
    },
    Code {
        code: "05",
        name: "Host não conhecido",
        meaning: "o nome do servidor da API não foi resolvido pelo DNS",
    },
    Code {
        code: "06",
        name: "Falha de TLS/certificado",
        meaning: "a negociação TLS ou a verificação do certificado da API falhou",
    },
    Code {
        code: "07",
        name: "Cancelamento rejeitado pela API",
        meaning: "a API recusou este cancelamento (dados, pedido ou URL), com a mensagem dela",
    },
    Code {
        code: "08",
        name: "Limite de requisições",
        meaning: "a API pediu para reduzir o ritmo (429 Too Many Requests)",
    },
    Code {
        code: "99",
        name: "Erro genérico",
        meaning: "erro do servidor da API (5xx), resposta ilegível ou conexão interrompida",
    },
];

/// Looks a code up, accepting "4" for "04".
pub fn find(text: &str) -> Option<&'static Code> {
    let text = text.trim();
    let padded = if text.len() == 1 { format!("0{text}") } else { text.to_owned() };
    CATALOG.iter().find(|code| code.code == padded)
}

/// "04 Timeout", or the bare code if it is not in the catalog.
pub fn label(code: &str) -> String {
    find(code).map_or_else(|| code.to_owned(), |known| format!("{} {}", known.code, known.name))
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
        }
    }

    #[test]
    fn lookup_accepts_a_single_digit() {
        assert_eq!(find("4").map(|code| code.code), Some("04"));
        assert_eq!(find("10"), None);
        assert_eq!(label("08"), "08 Limite de requisições");
    }
}
