//! The client certificate an API that requires mutual TLS checks (Pix through the banks, Efí,
//! SEFAZ): a PKCS#12 file (`.p12`/`.pfx`, the way these certificates are usually delivered, its
//! password in a file or the systemd credential `api-certificate-password`) or a PEM
//! certificate with its key. Loaded when the client is built — at start and on reload — so a
//! wrong password or a damaged file is a configuration error naming the key, and the running
//! config stays. Its expiry is read too, for `check`, `status`, the log and `/metrics`.

use std::path::Path;

use base64::Engine;

use crate::config::ApiConfig;
use crate::io::secrets;

/// A client certificate, ready for reqwest, and what support wants to know of it.
pub struct ClientCertificate {
    pub identity: reqwest::Identity,
    /// When the certificate (the first of the chain: the client's own) stops being valid.
    pub not_after: jiff::Timestamp,
    /// Its subject, as the issuer wrote it (`CN=…, O=…`).
    pub subject: String,
}

/// How long before it expires a certificate is warned about.
pub const EXPIRY_WARNING: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3_600);

/// The client certificate `api.client_certificate` names, if any. Errors are pt-BR and name the
/// key at fault; they never quote a password.
pub fn load(api: &ApiConfig) -> Result<Option<ClientCertificate>, String> {
    let Some(path) = &api.client_certificate else { return Ok(None) };
    let bytes = secrets::read_small_file(path, "api.client_certificate")?;
    let pem = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        from_pem(&bytes, api.client_key.as_deref(), path)?
    } else {
        from_pkcs12(&bytes, api, path)?
    };
    let (not_after, subject) = first_certificate(&pem).ok_or_else(|| {
        format!("api.client_certificate: {} não tem um certificado X.509 legível", path.display())
    })?;
    let identity = reqwest::Identity::from_pem(pem.as_bytes()).map_err(|_| {
        format!(
            "api.client_certificate: a chave privada de {} não serve para o certificado (ou não está em PEM/PKCS#8)",
            path.display()
        )
    })?;
    Ok(Some(ClientCertificate { identity, not_after, subject }))
}

/// The PEM key and certificates of a PEM certificate: its key from `client_key`, or from the
/// same file when it holds both.
fn from_pem(certificate: &[u8], key: Option<&Path>, path: &Path) -> Result<String, String> {
    let certificate = String::from_utf8_lossy(certificate).into_owned();
    let key = match key {
        Some(key) => secrets::read_small_text(key, "api.client_key")?,
        None if certificate.contains("PRIVATE KEY-----") => String::new(),
        None => {
            return Err(format!(
                "api.client_key: {} é um certificado PEM sem a chave privada: informe o arquivo da chave em \
                 api.client_key (ou use o arquivo .p12/.pfx com api.client_certificate_password_file)",
                path.display()
            ));
        }
    };
    if !key.is_empty() && !key.contains("PRIVATE KEY-----") {
        return Err("api.client_key: o arquivo não tem uma chave privada PEM (-----BEGIN PRIVATE KEY-----)"
            .to_owned());
    }
    Ok(format!("{key}\n{certificate}"))
}

/// The PEM key and certificates inside a PKCS#12 file.
fn from_pkcs12(bytes: &[u8], api: &ApiConfig, path: &Path) -> Result<String, String> {
    let password = secrets::from_file_or_credential(
        api.client_certificate_password_file.as_deref(),
        "api.client_certificate_password_file",
        "api-certificate-password",
    )?;
    let password = password.as_ref().map_or("", |password| password.expose());
    let store = p12_keystore::KeyStore::from_pkcs12(
        bytes,
        password,
        p12_keystore::Pkcs12ImportPolicy::Relaxed,
    )
    .map_err(|error| match error {
        p12_keystore::error::Error::MacError(_) => format!(
            "api.client_certificate_password_file: a senha não abre {} (confira a senha que veio com o \
                 certificado)",
            path.display()
        ),
        _ => format!(
            "api.client_certificate: {} não é um arquivo PKCS#12 (.p12/.pfx) nem PEM legível, ou a senha \
                 em api.client_certificate_password_file está errada",
            path.display()
        ),
    })?;
    let (_, chain) = store.private_key_chain().ok_or_else(|| {
        format!(
            "api.client_certificate: {} não tem uma chave privada com o seu certificado (é só a cadeia da \
             autoridade?)",
            path.display()
        )
    })?;
    if chain.certs().is_empty() {
        return Err(format!("api.client_certificate: {} tem a chave mas não o certificado", path.display()));
    }
    let mut pem = pem_block("PRIVATE KEY", chain.key().as_der());
    for certificate in chain.certs() {
        pem.push_str(&pem_block("CERTIFICATE", certificate.as_der()));
    }
    Ok(pem)
}

/// A DER blob as a PEM block.
fn pem_block(label: &str, der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// The expiry and subject of the first certificate in `pem`.
fn first_certificate(pem: &str) -> Option<(jiff::Timestamp, String)> {
    for block in x509_parser::pem::Pem::iter_from_buffer(pem.as_bytes()) {
        let block = block.ok()?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        let (_, certificate) = x509_parser::parse_x509_certificate(&block.contents).ok()?;
        let not_after = jiff::Timestamp::from_second(certificate.validity().not_after.timestamp()).ok()?;
        return Some((not_after, certificate.subject().to_string()));
    }
    None
}

/// What to tell support about a certificate at `now`: its expiry in pt-BR, and whether it is
/// expired or close to it (`EXPIRY_WARNING`).
pub fn describe_expiry(not_after: jiff::Timestamp, now: jiff::Timestamp) -> (String, bool) {
    let seconds = not_after.as_second() - now.as_second();
    let date = crate::view::local_time(not_after);
    if seconds <= 0 {
        (format!("VENCIDO desde {date}: a API vai recusar a conexão (erro 06); troque o certificado"), true)
    } else {
        let days = seconds / 86_400;
        let warn = seconds <= EXPIRY_WARNING.as_secs() as i64;
        let hint = if warn { " — renove-o com o fornecedor antes disso" } else { "" };
        (format!("vence em {date} (em {}){hint}", crate::core::text::count(days as u64, "dia", "dias")), warn)
    }
}
