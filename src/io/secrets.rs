//! Every secret goes through here: reading it (a small regular file, or a systemd credential),
//! the forms it takes on the way out (as it is, JSON-escaped, percent- and form-encoded, in
//! base64, inside a Basic header), and the `Redactor` that masks all of them in whatever comes
//! back — an API's echo, a login endpoint's error, a source's output — before anything is
//! recorded, logged or shown. The named secrets of `{secret:NAME}` placeholders are resolved
//! here too (`[secrets]`, else the systemd credential NAME).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;

use crate::core::secret::{MASK, Secret};

/// The largest secret file read: a password or token is a line, not a file's worth.
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// A secret file's content without its trailing newline, not empty (`read_small_text`).
pub fn read_secret(path: &Path, what: &str) -> Result<Secret, String> {
    let text = read_small_text(path, what)?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(format!("{what}: {} está vazio", path.display()));
    }
    Ok(Secret::new(secret.to_owned()))
}

/// A small UTF-8 file that holds secrets (a password, an environment file). Only a regular file
/// is read (opened without blocking, so a FIFO cannot hang the daemon), and at most
/// `MAX_SECRET_BYTES`: a path such as `/dev/zero` is refused, not read for ever. Errors name
/// `what` and the path, never the content.
pub fn read_small_text(path: &Path, what: &str) -> Result<String, String> {
    String::from_utf8(read_small_file(path, what)?)
        .map_err(|_| format!("{what}: não foi possível ler {}: não está em UTF-8", path.display()))
}

/// A small file's bytes, read as `read_small_text` reads (a certificate bundle, a PKCS#12 file).
pub fn read_small_file(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let cannot = |detail: String| format!("{what}: não foi possível ler {}: {detail}", path.display());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|error| cannot(crate::core::text::io_error(&error)))?;
    let meta = file.metadata().map_err(|error| cannot(crate::core::text::io_error(&error)))?;
    if !meta.is_file() {
        return Err(cannot("não é um arquivo comum (um dispositivo, FIFO ou diretório)".to_owned()));
    }
    let too_big = || cannot(format!("tem mais de {} KiB: não parece uma senha", MAX_SECRET_BYTES / 1024));
    if meta.len() > MAX_SECRET_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| cannot(crate::core::text::io_error(&error)))?;
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        return Err(too_big());
    }
    Ok(bytes)
}

/// The systemd credential `name` (`LoadCredential=`/`SetCredentialEncrypted=` in the unit), if
/// the service has one: the path of its file.
pub fn credential(name: &str) -> Option<PathBuf> {
    let directory = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    let path = Path::new(&directory).join(name);
    path.is_file().then_some(path)
}

/// A secret from `file`, else the systemd credential `credential`; `None` when neither is set.
pub fn from_file_or_credential(
    file: Option<&Path>,
    key: &str,
    credential_name: &str,
) -> Result<Option<Secret>, String> {
    if let Some(path) = file {
        return read_secret(path, key).map(Some);
    }
    match credential(credential_name) {
        Some(path) => read_secret(&path, &format!("a credencial systemd {credential_name}")).map(Some),
        None => Ok(None),
    }
}

/// The values of the named secrets `names` (the `{secret:NAME}` of the config): from the file
/// `[secrets]` gives for the name, else from the systemd credential of that name.
pub fn named<'n>(
    table: &BTreeMap<String, PathBuf>,
    names: impl IntoIterator<Item = &'n str>,
) -> Result<BTreeMap<String, Secret>, String> {
    let mut values = BTreeMap::new();
    for name in names {
        if values.contains_key(name) {
            continue;
        }
        let value = match table.get(name) {
            Some(path) => read_secret(path, &format!("secrets.{name}"))?,
            None => match credential(name) {
                Some(path) => read_secret(&path, &format!("a credencial systemd {name}"))?,
                None => {
                    return Err(format!(
                        "{{secret:{name}}}: diga de onde vem o segredo `{name}` — uma linha `{name} = \
                         \"/etc/extrator/{name}\"` na seção [secrets] (arquivo legível só pelo serviço) \
                         ou a credencial systemd {name} (LoadCredential={name}:… na unidade)"
                    ));
                }
            },
        };
        values.insert(name.to_owned(), value);
    }
    Ok(values)
}

/// The names of the `{secret:NAME}` placeholders in a text (an `[api.headers]` value).
pub fn placeholders(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices("{secret:").filter_map(move |(at, _)| {
        let rest = &text[at + "{secret:".len()..];
        rest.find('}').map(|end| rest[..end].trim())
    })
}

/// A text with each `{secret:NAME}` replaced by the secret's value.
pub fn fill(text: &str, values: &BTreeMap<String, Secret>) -> Result<String, String> {
    let mut filled = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("{secret:") {
        filled.push_str(&rest[..at]);
        let after = &rest[at + "{secret:".len()..];
        let end = after.find('}').ok_or_else(|| "um `{secret:` sem `}`".to_owned())?;
        let name = after[..end].trim();
        let value = values.get(name).ok_or_else(|| format!("o segredo `{name}` não foi lido"))?;
        filled.push_str(value.expose());
        rest = &after[end + 1..];
    }
    filled.push_str(rest);
    Ok(filled)
}

/// The base64 of a Basic header's `user:password`, with and without its padding.
pub fn basic_forms(user: &str, password: &str) -> Vec<String> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let unpadded = encoded.trim_end_matches('=').to_owned();
    vec![encoded, unpadded]
}

/// Masks secrets in text that came back from the other side — an API, a WAF or a proxy that
/// echoes the request, a login endpoint's error, a source's output — before anything records,
/// logs or shows it. A secret is found in any mix of the encodings it may have been sent or
/// echoed in, character by character (`secret_at`): as it is, JSON-escaped (`\/`, `\uXXXX`,
/// `\"`…, as serde_json, PHP's `json_encode` or Python's `json.dumps` write it), percent- or
/// form-encoded (`%C3%A7`, `+`), or as an HTML entity; and whole in base64 (a Basic header's
/// `user:password`, a token an API echoes encoded). Text is cut only after masking.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Secrets as they are, found in any per-character encoding.
    secrets: Vec<String>,
    /// Exact forms (base64), longest first.
    literals: Vec<String>,
}

/// The shortest secret masked: shorter ones would mask ordinary text.
const MIN_SECRET_CHARS: usize = 4;

/// Whether a fixed header (`[api.headers]`, `[api.request.headers]`) probably carries a
/// credential (an API key, a token): by its name; never the idempotency header.
pub fn looks_secret(name: &str, idempotency_header: Option<&str>) -> bool {
    if idempotency_header.is_some_and(|idempotency| idempotency.eq_ignore_ascii_case(name)) {
        return false;
    }
    let name = name.to_ascii_lowercase();
    ["authorization", "token", "secret", "senha", "password", "key", "chave", "cookie", "auth"]
        .iter()
        .any(|word| name.contains(word))
}

/// A credential header's value as shown: its scheme word kept (`Bearer ***`), the rest masked.
pub fn masked_credential(value: &str) -> String {
    match value.split_once(' ') {
        Some((scheme, _)) if scheme.chars().all(|c| c.is_ascii_alphabetic()) => format!("{scheme} {MASK}"),
        _ => MASK.to_owned(),
    }
}

/// The fixed text a credential header's value carries, as the redactor must know it: each stretch
/// between placeholders (their secrets are known by name), whole and without a scheme word
/// (`Bearer abc…` → `abc…` too).
fn fixed_credentials(value: &str) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut rest = value;
    loop {
        let (piece, after) = match rest.find('{') {
            Some(open) => (&rest[..open], rest[open..].find('}').map(|close| &rest[open + close + 1..])),
            None => (rest, None),
        };
        let piece = piece.trim();
        pieces.push(piece.to_owned());
        if let Some((scheme, credential)) = piece.split_once(' ')
            && scheme.chars().all(|c| c.is_ascii_alphabetic())
        {
            pieces.push(credential.trim().to_owned());
        }
        match after {
            Some(after) => rest = after,
            None => return pieces,
        }
    }
}

impl Redactor {
    /// Masks the fixed credential in a header the config writes (`X-Api-Key = "…"`,
    /// `Authorization = "Bearer …"`), when its name says it is one.
    pub fn add_fixed_header(&mut self, name: &str, value: &str, idempotency_header: Option<&str>) {
        if looks_secret(name, idempotency_header) {
            for piece in fixed_credentials(value) {
                self.add_secret(&piece);
            }
        }
    }

    /// A redactor for these secrets.
    pub fn of_secrets<'s>(secrets: impl IntoIterator<Item = &'s str>) -> Redactor {
        let mut redactor = Redactor::default();
        for secret in secrets {
            redactor.add_secret(secret);
        }
        redactor
    }

    /// Masks `secret` too, and its base64 forms.
    pub fn add_secret(&mut self, secret: &str) {
        if secret.chars().count() < MIN_SECRET_CHARS || self.secrets.iter().any(|known| known == secret) {
            return;
        }
        self.secrets.push(secret.to_owned());
        self.secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        self.add_literals(base64_forms(secret));
    }

    /// Masks a Basic header's `user:password` in base64 too.
    pub fn add_basic(&mut self, user: &str, password: &str) {
        self.add_literals(basic_forms(user, password));
    }

    fn add_literals(&mut self, forms: Vec<String>) {
        self.literals.extend(forms.into_iter().filter(|form| form.len() >= MIN_SECRET_CHARS));
        self.literals.sort_by_key(|form| std::cmp::Reverse(form.len()));
        self.literals.dedup();
    }

    /// This redactor and `other`'s secrets together.
    pub fn and(mut self, other: &Redactor) -> Redactor {
        for secret in &other.secrets {
            self.add_secret(secret);
        }
        self.add_literals(other.literals.clone());
        self
    }

    /// `text` with every secret masked, and `extra` (the current token) too.
    pub fn redact(&self, text: &str, extra: Option<&str>) -> String {
        let extra = extra.filter(|token| token.chars().count() >= MIN_SECRET_CHARS);
        let mut text = text.to_owned();
        for literal in self.literals.iter().cloned().chain(extra.map(base64_forms).unwrap_or_default()) {
            if literal.len() >= MIN_SECRET_CHARS && text.contains(literal.as_str()) {
                text = text.replace(literal.as_str(), MASK);
            }
        }
        for secret in self.secrets.iter().map(String::as_str).chain(extra) {
            text = mask_secret(&text, secret);
        }
        text
    }
}

/// The base64 forms of a secret: standard and URL-safe, with and without padding.
fn base64_forms(secret: &str) -> Vec<String> {
    let mut forms = Vec::new();
    for engine in [&base64::engine::general_purpose::STANDARD, &base64::engine::general_purpose::URL_SAFE] {
        let encoded = engine.encode(secret);
        forms.push(encoded.trim_end_matches('=').to_owned());
        forms.push(encoded);
    }
    forms
}

/// `text` with every occurrence of `secret`, in any per-character encoding, replaced by `MASK`.
fn mask_secret(text: &str, secret: &str) -> String {
    let bytes = text.as_bytes();
    let first = secret.as_bytes()[0];
    let mut masked = String::with_capacity(text.len());
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        // Cheap first look: a match starts with the first character itself or an escape.
        let may_start = bytes[at] == first || matches!(bytes[at], b'\\' | b'%' | b'&' | b'+');
        if may_start
            && text.is_char_boundary(at)
            && let Some(end) = secret_at(bytes, at, secret)
        {
            masked.push_str(&text[copied..at]);
            masked.push_str(MASK);
            copied = end;
            at = end;
            continue;
        }
        at += 1;
    }
    if copied == 0 {
        return text.to_owned();
    }
    masked.push_str(&text[copied..]);
    masked
}

/// Where `secret` ends when it starts at `at` in `text`, each of its characters written in any of
/// the ways it may come back: itself; JSON's `\uXXXX` (a surrogate pair beyond the BMP), `\/`,
/// `\"`, `\\`, `\n`…; its UTF-8 bytes each as itself or `%HH`; `+` for a space; `&#NN;`,
/// `&#xHH;` or a named entity for the characters HTML escapes.
pub fn secret_at(text: &[u8], at: usize, secret: &str) -> Option<usize> {
    // A character may match in more than one way from the same place (`\\` is a backslash
    // itself, or the start of JSON's `\\\\`; `%` itself or `%25`): each is tried, depth first,
    // on a stack of its own (a secret may be a 64 KiB token: no recursion).
    let first = secret.chars().next()?;
    let ends = char_ends(text, at, first);
    if ends.iter().all(Option::is_none) {
        return None;
    }
    let mut pending: Vec<(usize, usize)> =
        ends.iter().flatten().map(|&end| (first.len_utf8(), end)).collect();
    while let Some((matched, end)) = pending.pop() {
        let Some(c) = secret[matched..].chars().next() else { return Some(end) };
        pending.extend(char_ends(text, end, c).iter().flatten().map(|&next| (matched + c.len_utf8(), next)));
    }
    None
}

/// Where character `c` ends when it starts at `at`, in each of the encodings of `secret_at`
/// that match there (at most one per way).
fn char_ends(text: &[u8], at: usize, c: char) -> [Option<usize>; 4] {
    let mut ends = [None; 4];
    let Some(rest) = text.get(at..) else { return ends };
    let mut utf8 = [0_u8; 4];
    let encoded = c.encode_utf8(&mut utf8).as_bytes();
    // Its bytes, each as itself or percent-encoded (`%` itself is tried both ways, below).
    let mut end = at;
    let mut bytes_match = true;
    for byte in encoded {
        if text.get(end) == Some(byte) && *byte != b'%' {
            end += 1;
        } else if text.get(end) == Some(&b'%') && text.get(end + 1..end + 3).and_then(hex_byte) == Some(*byte)
        {
            end += 3;
        } else {
            bytes_match = false;
            break;
        }
    }
    ends[0] = bytes_match.then_some(end);
    ends[1] = match c {
        '%' if rest.first() == Some(&b'%') => Some(at + 1),
        ' ' if rest.first() == Some(&b'+') => Some(at + 1),
        _ => None,
    };
    if rest.first() == Some(&b'\\') {
        let short = match c {
            '/' => Some(b'/'),
            '"' => Some(b'"'),
            '\\' => Some(b'\\'),
            '\n' => Some(b'n'),
            '\r' => Some(b'r'),
            '\t' => Some(b't'),
            '\u{8}' => Some(b'b'),
            '\u{c}' => Some(b'f'),
            _ => None,
        };
        if short.is_some() && rest.get(1).copied() == short {
            ends[2] = Some(at + 2);
        }
        ends[3] = unicode_escape_end(text, at, c);
    }
    if rest.first() == Some(&b'&') {
        ends[2] = entity_end(rest, c).map(|length| at + length);
    }
    ends
}

/// Where `c` written as JSON `\uXXXX` escapes (a surrogate pair beyond the BMP) ends.
fn unicode_escape_end(text: &[u8], at: usize, c: char) -> Option<usize> {
    let mut units = [0_u16; 2];
    let mut end = at;
    for unit in c.encode_utf16(&mut units) {
        let escape = text.get(end..end + 6)?;
        if escape[0] != b'\\' || escape[1] != b'u' || hex_u16(&escape[2..6])? != *unit {
            return None;
        }
        end += 6;
    }
    Some(end)
}

/// The length of the HTML entity for `c` at the start of `rest` (`&amp;`, `&#NN;`, `&#xHH;`).
fn entity_end(rest: &[u8], c: char) -> Option<usize> {
    let close = rest.iter().take(12).position(|byte| *byte == b';')?;
    let entity = std::str::from_utf8(&rest[1..close]).ok()?;
    let decoded = match entity {
        "quot" => Some('"'),
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "apos" => Some('\''),
        _ => entity.strip_prefix('#').and_then(|number| {
            let value = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            char::from_u32(value)
        }),
    };
    (decoded == Some(c)).then_some(close + 1)
}

/// Two hex digits (either case) as a byte.
fn hex_byte(digits: &[u8]) -> Option<u8> {
    u8::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// Four hex digits (either case) as a UTF-16 unit.
fn hex_u16(digits: &[u8]) -> Option<u16> {
    u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_that_is_also_the_start_of_its_own_escape_is_tried_both_ways() {
        // Found by the `redact` fuzz target: `\` taken as itself left JSON's `\\` unmatched.
        let redactor = Redactor::of_secrets(["S3nh4-\"Forte\"\\x", "taxa-100%-fixa"]);
        for echoed in [r#"S3nh4-\"Forte\"\\x"#, "S3nh4-%22Forte%22%5Cx", "taxa-100%25-fixa", "taxa-100%-fixa"]
        {
            let masked = redactor.redact(&format!("eco: {echoed} fim"), None);
            assert_eq!(masked, "eco: *** fim", "{echoed}");
        }
    }

    #[test]
    fn fixed_headers_that_look_like_credentials_are_masked_in_echoes() {
        assert!(looks_secret("X-Api-Key", Some("Idempotency-Key")));
        assert!(looks_secret("x-auth-token", None));
        assert!(!looks_secret("Idempotency-Key", Some("Idempotency-Key")));
        assert!(!looks_secret("X-Empresa", None));
        let mut redactor = Redactor::default();
        redactor.add_fixed_header("X-Api-Key", "chave-fixa-123456", None);
        redactor.add_fixed_header("Authorization", "Bearer tok-fixo-98765 {secret:extra}", None);
        redactor.add_fixed_header("X-Empresa", "empresa-visivel-1", None);
        let echoed = "{\"headers\":{\"x-api-key\":\"chave-fixa-123456\",\"authorization\":\"tok-fixo-98765\",\
                      \"x-empresa\":\"empresa-visivel-1\"}}";
        let masked = redactor.redact(echoed, None);
        assert!(!masked.contains("chave-fixa") && !masked.contains("tok-fixo"), "{masked}");
        assert!(masked.contains("empresa-visivel-1"), "{masked}");
    }

    #[test]
    fn a_secret_is_a_small_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("senha");
        std::fs::write(&good, "S3nh4\n").unwrap();
        assert_eq!(read_secret(&good, "teste").unwrap().expose(), "S3nh4");
        let error = read_secret(Path::new("/dev/zero"), "api.auth.password_file").err().unwrap();
        assert!(error.contains("não é um arquivo comum"), "{error}");
        let big = dir.path().join("grande");
        std::fs::write(&big, vec![b'x'; 70_000]).unwrap();
        assert!(read_secret(&big, "teste").err().unwrap().contains("não parece uma senha"));
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        assert!(read_secret(&fifo, "teste").err().unwrap().contains("não é um arquivo comum"));
    }

    #[test]
    fn a_secret_is_masked_in_every_form_it_is_sent_in() {
        let secret = "Coração/2026 +chave\"";
        let redactor = Redactor::of_secrets([secret]);
        for echoed in [
            secret.to_owned(),
            "Cora\\u00e7\\u00e3o\\/2026 +chave\\\"".to_owned(),
            "Coração\\/2026 +chave\\\"".to_owned(),
            "Cora\\u00E7ão/2026 +chave\\u0022".to_owned(),
            "Cora%C3%A7%C3%A3o%2F2026%20%2Bchave%22".to_owned(),
            "Cora%c3%a7ão%2F2026+%2Bchave\"".to_owned(),
            "Coração&#47;2026 +chave&quot;".to_owned(),
            base64::engine::general_purpose::STANDARD.encode(secret),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
        ] {
            let masked = redactor.redact(&format!("eco: [{echoed}] fim"), None);
            assert_eq!(masked, "eco: [***] fim", "{echoed}");
        }
        assert_eq!(redactor.redact("nada secreto", Some("tok-123456")), "nada secreto");
        assert_eq!(redactor.redact("Bearer tok-123456", Some("tok-123456")), "Bearer ***");
    }

    #[test]
    fn a_named_secret_comes_from_its_file_or_says_where_to_put_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chave");
        std::fs::write(&path, "abc-123\n").unwrap();
        let table = BTreeMap::from([("chave_api".to_owned(), path)]);
        let values = named(&table, ["chave_api", "chave_api"]).unwrap();
        assert_eq!(values["chave_api"].expose(), "abc-123");
        let missing = named(&table, ["outra"]).err().unwrap();
        assert!(missing.contains("[secrets]") && missing.contains("LoadCredential=outra"), "{missing}");
    }
}
