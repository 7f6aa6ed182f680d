//! Fuzzes the secret masking with each secret embedded, in one of the encodings it can take on
//! the way back from an API or a command, inside an arbitrary body: as itself; JSON-escaped with
//! any mix of `\uXXXX`, `\/` and literal characters (PHP's `json_encode`, Python's `json.dumps`);
//! percent-encoded with any mix of escaped and literal bytes in either case; form-encoded; HTML
//! entities; base64 alone and inside the Basic header's `user:password`. What the redactor
//! returns never holds the secret, in that encoding or in clear. Layout: 1 byte secret and
//! encoding, 1 byte where the body splits, 16 bytes of per-character choices, the rest is the body.
#![no_main]

use base64::Engine as _;
use extrator::io::secrets::Redactor;

/// Secrets as support writes them: accents and a slash, quotes and a backslash, a space and the
/// characters form encoding changes, beyond the BMP.
const SECRETS: [&str; 4] = ["Coração/2026", "S3nh4-\"Forte\"\\x", "chave api+fixa&2026=%", "𝄞-senha-€-ä<b>"];
const USER: &str = "integrador";

/// `secret` written in encoding `kind`, each character's form chosen by `choices`.
fn encode(secret: &str, kind: u8, choices: &[u8]) -> String {
    let choice = |index: usize| choices[index % choices.len()];
    let mut out = String::new();
    match kind % 7 {
        0 => out.push_str(secret),
        1 => {
            for (index, c) in secret.chars().enumerate() {
                let unicode = |out: &mut String| {
                    let mut units = [0_u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        if choice(index + 1) % 2 == 0 {
                            out.push_str(&format!("\\u{unit:04x}"));
                        } else {
                            out.push_str(&format!("\\u{unit:04X}"));
                        }
                    }
                };
                match (c, choice(index) % 3) {
                    ('"', _) => out.push_str("\\\""),
                    ('\\', _) => out.push_str("\\\\"),
                    ('/', 0) => out.push_str("\\/"),
                    (c, 0) if !c.is_ascii() => unicode(&mut out),
                    (_, 1) => unicode(&mut out),
                    (c, _) => out.push(c),
                }
            }
        }
        2 => {
            for (index, byte) in secret.bytes().enumerate() {
                match choice(index) % 3 {
                    0 if byte.is_ascii_alphanumeric() => out.push(char::from(byte)),
                    0 | 1 => out.push_str(&format!("%{byte:02X}")),
                    _ => out.push_str(&format!("%{byte:02x}")),
                }
            }
        }
        3 => out.extend(form_urlencoded::byte_serialize(secret.as_bytes())),
        4 => {
            for (index, c) in secret.chars().enumerate() {
                match (c, choice(index) % 3) {
                    ('<', _) => out.push_str("&lt;"),
                    ('&', _) => out.push_str("&amp;"),
                    ('"', 0) => out.push_str("&quot;"),
                    (c, 1) => out.push_str(&format!("&#{};", u32::from(c))),
                    (c, 2) if !c.is_ascii_alphanumeric() => out.push_str(&format!("&#x{:x};", u32::from(c))),
                    (c, _) => out.push(c),
                }
            }
        }
        5 => out = base64::engine::general_purpose::STANDARD.encode(secret),
        _ => out = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{secret}")),
    }
    out
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 18 {
        return;
    }
    let secret = SECRETS[usize::from(data[0] % 4)];
    let kind = data[0] / 4;
    let choices = &data[2..18];
    let body = String::from_utf8_lossy(&data[18..]);
    let split = usize::from(data[1]).min(body.len());
    let split = (0..=split).rev().find(|at| body.is_char_boundary(*at)).unwrap_or(0);
    let encoded = encode(secret, kind, choices);
    // Spaces around it: a body that ends in `\` would otherwise make the first escape another.
    let text = format!("{} {encoded} {}", &body[..split], &body[split..]);
    // As the client builds it: every secret, and the Basic header's forms.
    let mut redactor = Redactor::of_secrets(SECRETS);
    for secret in SECRETS {
        redactor.add_basic(USER, secret);
    }
    let masked = redactor.redact(&text, None);
    assert!(!masked.contains(&encoded), "{secret} as {encoded} survived in {masked:?}");
    assert!(!masked.contains(secret), "{secret} survived in {masked:?}");
    // Masking what was masked changes nothing more that matters (the decoded message is).
    let again = redactor.redact(&masked, None);
    assert!(!again.contains(secret));
});
