//! The TOML parser's and serde's English complaints, in pt-BR: what support reads when a config
//! is refused. Pure.

/// The TOML parser's syntax messages ("invalid string", "expected `=`", …), marked as such.
pub(super) fn translate_syntax(message: &str) -> String {
    let message = message.trim();
    if message.starts_with("duplicate key") {
        return "chave repetida: cada chave aparece uma vez só em cada tabela".to_owned();
    }
    let (what, expected) = match message.split_once(", expected ") {
        Some((what, expected)) => (what, Some(expected)),
        None => (message, None),
    };
    let Some(&(_, said)) = TOML_SYNTAX.iter().find(|(english, _)| *english == what) else {
        // A rarer phrase of the parser: kept whole rather than guessed at.
        return format!("sintaxe TOML inválida ({message})");
    };
    match expected {
        Some("nothing") | None => format!("sintaxe TOML inválida: {said}"),
        Some("literal string") => format!("sintaxe TOML inválida: {said}; esperava um texto entre aspas"),
        Some(expected) => format!("sintaxe TOML inválida: {said}; esperava {expected}"),
    }
}

/// The TOML parser's (toml_parser) commonest complaints, in pt-BR.
const TOML_SYNTAX: [(&str, &str); 25] = [
    ("unclosed table", "o nome da tabela não foi fechado"),
    ("unclosed array table", "o nome da tabela [[…]] não foi fechado"),
    ("unclosed array", "a lista não foi fechada"),
    ("unclosed inline table", "a tabela em linha não foi fechada"),
    ("string values must be quoted", "textos precisam estar entre aspas"),
    ("key with no value", "chave sem valor (falta `=` e o valor)"),
    ("missing value", "falta o valor"),
    ("missing value for key", "falta o valor da chave"),
    ("missing assignment between key-value pairs", "falta `=` entre a chave e o valor"),
    ("extra assignment between key-value pairs", "`=` sobrando"),
    ("extra `=`", "`=` sobrando"),
    ("invalid basic string", "texto entre aspas inválido ou não fechado"),
    ("invalid multi-line basic string", "texto de várias linhas inválido ou não fechado"),
    ("missing escaped value", "barra invertida sem um escape válido (para uma barra, escreva \\\\)"),
    ("invalid unquoted key", "nome de chave inválido (use letras, dígitos, _ e -, ou ponha entre aspas)"),
    ("unquoted keys cannot be empty", "nome de chave vazio"),
    ("missing comma between array elements", "falta vírgula entre os elementos da lista"),
    ("extra comma in array", "vírgula sobrando na lista"),
    ("missing comma between key-value pairs", "falta vírgula entre os pares da tabela em linha"),
    ("extra comma in inline table", "vírgula sobrando no fim da tabela em linha"),
    ("unexpected leading zero", "número com zero à esquerda"),
    ("unexpected content", "conteúdo inesperado"),
    ("unexpected content between comment and newline", "conteúdo inesperado no comentário"),
    ("unexpected key or value", "chave ou valor inesperado"),
    ("invalid value", "valor inválido"),
];

/// `translate`, except that the value of a secret key is never quoted: `password = 12345`
/// (unquoted) must not put the password in an error message.
pub(super) fn translate_for(key: Option<&str>, message: &str) -> String {
    if key.is_some_and(|key| SECRET_KEYS.contains(&key)) {
        return "esperava a senha como texto entre aspas (o valor não é mostrado)".to_owned();
    }
    translate(message)
}

/// Keys whose values are secrets.
const SECRET_KEYS: [&str; 1] = ["api.auth.password"];

/// Turns serde's English messages into pt-BR. Our own deserializers (durations, templates,
/// paths) already speak pt-BR and pass through unchanged.
fn translate(message: &str) -> String {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let (field, expected) = split_expected(rest);
        return match expected {
            Some(expected) => {
                format!("chave desconhecida {field}; as chaves válidas aqui são: {}", names(expected))
            }
            None => format!("chave desconhecida {field}"),
        };
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let (value, expected) = split_expected(rest);
        return format!("valor desconhecido {value}; use um de: {}", names(expected.unwrap_or("")));
    }
    if let Some(field) = message.strip_prefix("missing field ") {
        return format!("falta a chave obrigatória {field}");
    }
    for (prefix, what) in [("invalid type: ", "tipo errado"), ("invalid value: ", "valor inválido")] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
            return format!("{what}: encontrei {}, esperava {}", found_pt(found), expected_pt(expected));
        }
    }
    if message.starts_with("duplicate key") {
        return format!("chave repetida ({message})");
    }
    message.to_owned()
}

/// Splits "`x`, expected one of `a`, `b`" into ("`x`", Some("`a`, `b`")).
fn split_expected(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once(", expected ") {
        Some((head, expected)) => (head, Some(expected.strip_prefix("one of ").unwrap_or(expected))),
        None => (rest.split_once(", there are no").map_or(rest, |(head, _)| head), None),
    }
}

/// "`a`, `b`" → "a, b".
fn names(list: &str) -> String {
    list.replace('`', "")
}

/// serde's description of what was found, in pt-BR.
fn found_pt(found: &str) -> String {
    let pairs = [
        ("string ", "o texto "),
        ("integer ", "o número "),
        ("floating point ", "o número decimal "),
        ("boolean ", "o valor lógico "),
    ];
    for (english, portuguese) in pairs {
        if let Some(rest) = found.strip_prefix(english) {
            return format!("{portuguese}{}", rest.replace('`', ""));
        }
    }
    match found {
        "sequence" => "uma lista".to_owned(),
        "map" => "uma seção (tabela)".to_owned(),
        other => other.to_owned(),
    }
}

/// serde's description of what was expected, in pt-BR.
fn expected_pt(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "um número inteiro não negativo".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "um número inteiro".to_owned(),
        "a string" => "um texto entre aspas".to_owned(),
        "a boolean" => "true ou false".to_owned(),
        "a sequence" => "uma lista entre colchetes".to_owned(),
        "path string" => "um caminho entre aspas".to_owned(),
        other if other.starts_with("struct ") || other == "a map" => "uma seção (tabela)".to_owned(),
        other if other.starts_with("enum ") => "um dos valores permitidos".to_owned(),
        other => other.to_owned(),
    }
}
