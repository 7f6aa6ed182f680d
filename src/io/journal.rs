//! The journal: extrator's events as journald entries, and the message catalog that explains them.
//!
//! `Layer` is a `tracing` layer that speaks journald's native protocol: an event's `message`
//! becomes `MESSAGE`, its `message_id` becomes `MESSAGE_ID`, every other field `EXTRATOR_<NAME>`
//! (so `journalctl -u extrator EXTRATOR_CODE=04` works), and the level becomes `PRIORITY`. Every
//! value is cut to `MAX_FIELD` bytes, so an entry always fits one datagram whatever the API
//! answered. Why our own layer rather than tracing-journald's: its field prefix is all or nothing
//! (`with_field_prefix(None)` would send `MESSAGE_ID`, but then `code` becomes `CODE` and the
//! documented `EXTRATOR_CODE=04` filters break), and it sends a value of any size (through a
//! memfd), where we want every entry bounded whatever the API answered.
//!
//! `Message` lists the events support filters on and alerts on, each with a stable
//! `MESSAGE_ID`; `catalog()` generates from it and from `codes::CATALOG` the pt-BR catalog the
//! package installs (`/usr/lib/systemd/catalog/extrator.catalog`), which `journalctl -x` shows
//! under each entry. A failed attempt has one id per code, so the text under it is that code's
//! meaning and what to do; a give-up has one id whatever the code, so `journalctl MESSAGE_ID=…`
//! finds every give-up.

use std::fmt::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;

use crate::core::codes::{CATALOG, Code};

/// journald's native socket.
pub const SOCKET: &str = "/run/systemd/journal/socket";
/// The longest value sent in one field; longer ones are cut at a character boundary and marked.
pub const MAX_FIELD: usize = 8 * 1024;
/// The prefix of our own fields: the event field `code` becomes `EXTRATOR_CODE`.
pub const FIELD_PREFIX: &str = "EXTRATOR_";

/// An event that matters to support, with a stable `MESSAGE_ID` and a catalog entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// The service is up (READY sent).
    Started,
    /// A cancellation was delivered (or accepted to be processed).
    Delivered,
    /// An attempt failed with this code and will be retried.
    AttemptFailed(Code),
    /// An item gave up: `failed` until `extrator retry`.
    GaveUp,
    /// The circuit opened: the API is unreachable or failing, one probe at a time.
    CircuitOpened,
    /// Sending is paused on the credentials (02/03).
    Paused,
    /// The API asked to slow down (08): sending waits.
    RateLimited,
    /// Sending resumed.
    CircuitClosed,
    /// The database failed a read or write.
    DatabaseError,
    /// A reload was refused: the previous config stays.
    ReloadRefused,
    /// A spool file was rejected (moved to `rejeitados/` with a `.erro`).
    SpoolRejected,
    /// A polled source's run failed (logged when it starts failing, or fails differently).
    SourceFailed,
}

/// Attempt failures: these 30 hex digits, then the code's two digits.
const ATTEMPT_FAILED_PREFIX: &str = "5fb96f9b5af04cb7b009962910162a";

impl Message {
    /// Every message, in the catalog's order.
    pub fn all() -> Vec<Message> {
        let mut all = vec![Message::Started, Message::Delivered];
        all.extend(CATALOG.iter().map(|info| Message::AttemptFailed(info.code)));
        all.extend([
            Message::GaveUp,
            Message::CircuitOpened,
            Message::Paused,
            Message::RateLimited,
            Message::CircuitClosed,
            Message::DatabaseError,
            Message::ReloadRefused,
            Message::SpoolRejected,
            Message::SourceFailed,
        ]);
        all
    }

    /// The `MESSAGE_ID`: 32 lowercase hex digits, never changed once shipped.
    pub fn id(self) -> String {
        match self {
            Message::Started => "cf52124cd57e4014a49f8c95a3f586e4".to_owned(),
            Message::Delivered => "7b8ec82a5b4a4cffa79380ab6026c09b".to_owned(),
            Message::AttemptFailed(code) => format!("{ATTEMPT_FAILED_PREFIX}{}", code.as_str()),
            Message::GaveUp => "688361de1cd1436ebdf834f401b46ae5".to_owned(),
            Message::CircuitOpened => "698591765b654942ba5c3232dab0f58b".to_owned(),
            Message::Paused => "c4923210b201448c980cb92ad3e6d1d4".to_owned(),
            Message::RateLimited => "c5f9dffaa94f41f2a799cbe45787ed44".to_owned(),
            Message::CircuitClosed => "aec28cc4411641faaab627846119b96d".to_owned(),
            Message::DatabaseError => "0d0e702945694314ac875a889c4b5c09".to_owned(),
            Message::ReloadRefused => "f577a26442894d67ac061715970fad49".to_owned(),
            Message::SpoolRejected => "5ddd9900900f4810ad5f673b4a61221d".to_owned(),
            Message::SourceFailed => "fea273209ef04bb8bda11c0d9d2411b9".to_owned(),
        }
    }

    /// The catalog entry's subject and text (pt-BR). `@EXTRATOR_…@` is replaced by journalctl
    /// with the entry's own field; only fields every such entry carries are used.
    fn entry(self) -> (String, String) {
        match self {
            Message::Started => (
                "extrator iniciado".to_owned(),
                "O serviço extrator está no ar e avisou o systemd (READY). A linha de status de\n\
                 `systemctl status extrator` resume a fila; `extrator status` mostra os detalhes."
                    .to_owned(),
            ),
            Message::Delivered => (
                "Cancelamento entregue à API".to_owned(),
                "A API de cancelamento aceitou o cancelamento do pedido @EXTRATOR_ORDER@.\n\
                 O histórico do item: extrator show --order @EXTRATOR_ORDER@"
                    .to_owned(),
            ),
            Message::AttemptFailed(code) => {
                let info = code.info();
                let mut text = format!(
                    "O envio do cancelamento do pedido @EXTRATOR_ORDER@ falhou com o código {} ({}):\n\
                     {}.\n\nO que o extrator faz: {}.\n\nCausas prováveis:\n",
                    code,
                    info.name,
                    info.meaning,
                    info.behaviour
                );
                for cause in info.causes {
                    let _ = writeln!(text, "  - {cause}");
                }
                text.push_str("\nO que fazer:\n");
                for (number, step) in info.steps.iter().enumerate() {
                    let _ = writeln!(text, "  {}. {step}", number + 1);
                }
                let _ = write!(
                    text,
                    "\nO item e todas as tentativas: extrator show --order @EXTRATOR_ORDER@\n\
                     O código explicado: extrator explain {code}"
                );
                (format!("Falha no envio: erro {}", code.label()), text)
            }
            Message::GaveUp => (
                "Cancelamento não entregue: o item ficou em falha definitiva".to_owned(),
                "O extrator desistiu do cancelamento do pedido @EXTRATOR_ORDER@ (erro @EXTRATOR_CODE@):\n\
                 a API o recusou (07) ou as tentativas de retry.max_attempts acabaram (04, 99).\n\
                 O item fica no estado failed e não é enviado de novo sozinho.\n\n\
                 O que fazer:\n\
                 \x20 1. leia a mensagem da API: extrator show --order @EXTRATOR_ORDER@\n\
                 \x20 2. veja o que o código significa: extrator explain @EXTRATOR_CODE@\n\
                 \x20 3. corrija a causa (com o fornecedor da API, no ERP ou em [api.request])\n\
                 \x20 4. reenvie: extrator retry --order @EXTRATOR_ORDER@\n\n\
                 Todas as desistências: journalctl -u extrator MESSAGE_ID="
                    .to_owned()
                    + &Message::GaveUp.id(),
            ),
            Message::CircuitOpened => (
                "Envio suspenso: circuito aberto".to_owned(),
                "A API falhou para a maioria dos pedidos recentes (erro @EXTRATOR_CODE@) e o extrator\n\
                 parou de enviar: só um envio de teste (sonda) sai de tempos em tempos, cada vez com\n\
                 outro pedido, com espera crescente até retry.max_delay, até a API voltar. Nenhum\n\
                 cancelamento se perde e estas falhas não gastam tentativas dos itens.\n\n\
                 O que fazer:\n\
                 \x20 1. veja o que o código significa: extrator explain @EXTRATOR_CODE@\n\
                 \x20 2. teste a conexão, o DNS e o TLS: extrator check\n\
                 \x20 3. quando a API voltar, o envio recomeça sozinho (mensagem \"envio retomado\")"
                    .to_owned(),
            ),
            Message::Paused => (
                "Envio PAUSADO: a API recusou as credenciais".to_owned(),
                "A API recusou o usuário ou a senha (erro @EXTRATOR_CODE@). Todo envio fica pausado:\n\
                 repetir com credenciais erradas só bloquearia a conta. Um teste é feito a cada 5 minutos.\n\n\
                 O que fazer:\n\
                 \x20 1. veja o que o código significa: extrator explain @EXTRATOR_CODE@\n\
                 \x20 2. confirme usuário e senha com o fornecedor e corrija api.auth (ou o arquivo de senha)\n\
                 \x20 3. teste: extrator check\n\
                 \x20 4. aplique: systemctl reload extrator (os itens pendentes seguem sozinhos)"
                    .to_owned(),
            ),
            Message::RateLimited => (
                "Envio aguardando: a API pediu para reduzir o ritmo".to_owned(),
                "A API respondeu 429 (erro 08): o extrator espera o tempo pedido em Retry-After\n\
                 (60 s se ela não disser) e depois continua sozinho. Não gasta tentativas.\n\n\
                 Se for frequente, reduza api.concurrency ou defina api.max_rate e recarregue;\n\
                 detalhes: extrator explain 08"
                    .to_owned(),
            ),
            Message::CircuitClosed => (
                "Envio retomado".to_owned(),
                "A API voltou a responder e o extrator voltou a enviar normalmente. Os itens que\n\
                 esperavam seguem sozinhos; `extrator status` mostra quantos ainda estão pendentes."
                    .to_owned(),
            ),
            Message::DatabaseError => (
                "Erro no banco de dados da fila".to_owned(),
                "Uma leitura ou gravação no banco de dados da fila (SQLite) falhou. Nada do que já\n\
                 estava na fila se perde; o extrator tenta de novo a cada ciclo e avisa quando voltar\n\
                 (\"o banco de dados voltou a aceitar gravações\").\n\n\
                 O que fazer:\n\
                 \x20 1. leia a causa na mensagem (disco cheio, permissão, outro processo com a trava)\n\
                 \x20 2. confira o espaço: df -h /var/lib/extrator\n\
                 \x20 3. confira os donos: ls -l /var/lib/extrator (devem ser do usuário extrator)\n\
                 \x20 4. se o banco não volta em alguns minutos, o watchdog do systemd reinicia o serviço"
                    .to_owned(),
            ),
            Message::ReloadRefused => (
                "Recarga da configuração recusada".to_owned(),
                "`systemctl reload extrator` leu uma configuração inválida; o serviço continua com a\n\
                 configuração anterior. A mensagem diz o arquivo, a linha e a chave.\n\n\
                 O que fazer: corrija o arquivo, valide com `extrator check` e recarregue de novo."
                    .to_owned(),
            ),
            Message::SpoolRejected => (
                "Arquivo do spool rejeitado".to_owned(),
                "Um arquivo que o ERP deixou no diretório de spool não pôde ser importado e nada dele\n\
                 entrou na fila. Ele foi movido para rejeitados/ com um arquivo .erro ao lado, que diz\n\
                 cada linha com problema.\n\n\
                 O que fazer: leia o .erro, corrija a origem no ERP e gere o arquivo de novo (os pedidos\n\
                 que já estão na fila com o mesmo conteúdo não são duplicados)."
                    .to_owned(),
            ),
            Message::SourceFailed => (
                "Fonte de cancelamentos falhou".to_owned(),
                "O comando da fonte @EXTRATOR_SOURCE@ ([[source]] na configuração) falhou e nada desta\n\
                 execução entrou na fila; a entrega do que já está na fila continua. O extrator tenta de\n\
                 novo a cada intervalo e avisa quando a fonte voltar (só uma mensagem por mudança).\n\n\
                 O que fazer:\n\
                 \x20 1. leia o motivo na mensagem (código de saída, timeout, saída grande ou inválida) e\n\
                 \x20    a saída de erro do comando, que vem junto (senhas do environment_file mascaradas)\n\
                 \x20 2. rode `extrator check`: ele executa a fonte uma vez, sem enfileirar, e mostra o resultado\n\
                 \x20 3. `extrator status` mostra a última execução de cada fonte"
                    .to_owned(),
            ),
        }
    }
}

/// The catalog file the package installs, generated from `Message` and the code catalog.
pub fn catalog() -> String {
    let mut text = String::from(
        "# extrator: catálogo de mensagens do journal (pt-BR). `journalctl -u extrator -x` mostra o\n\
         # texto de cada evento abaixo da linha; `journalctl MESSAGE_ID=ID` encontra os eventos de um tipo.\n\
         # Gerado de src/io/journal.rs e src/core/codes.rs (o catálogo dos códigos): não edite à mão.\n",
    );
    for message in Message::all() {
        let (subject, body) = message.entry();
        let _ = write!(
            text,
            "\n-- {}\nSubject: {subject}\nDefined-By: extrator\nSupport: man:extrator(1)\n\n{body}\n",
            message.id()
        );
    }
    text
}

/// The journald priority of a level.
fn priority(level: tracing::Level) -> u8 {
    match level {
        tracing::Level::ERROR => 3,
        tracing::Level::WARN => 4,
        tracing::Level::INFO => 6,
        tracing::Level::DEBUG | tracing::Level::TRACE => 7,
    }
}

/// One journal entry in the native protocol's binary form (every field length-prefixed, so a
/// value may hold newlines): `PRIORITY`, `SYSLOG_IDENTIFIER`, then the event's fields.
pub fn entry(priority: u8, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(256);
    put(&mut entry, "PRIORITY", &priority.to_string());
    put(&mut entry, "SYSLOG_IDENTIFIER", "extrator");
    for (name, value) in fields {
        let name = match *name {
            "message" => "MESSAGE".to_owned(),
            "message_id" => "MESSAGE_ID".to_owned(),
            other => {
                let mut name = FIELD_PREFIX.to_owned();
                name.extend(
                    other
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .map(|c| c.to_ascii_uppercase()),
                );
                name
            }
        };
        put(&mut entry, &name, value);
    }
    entry
}

/// `NAME\n`, the value's length (64-bit little endian), the value cut to `MAX_FIELD`, `\n`.
fn put(entry: &mut Vec<u8>, name: &str, value: &str) {
    let value = cut(value);
    entry.extend_from_slice(name.as_bytes());
    entry.push(b'\n');
    entry.extend_from_slice(&(value.len() as u64).to_le_bytes());
    entry.extend_from_slice(value.as_bytes());
    entry.push(b'\n');
}

/// A value of at most `MAX_FIELD` bytes, marked with " …" when cut.
fn cut(value: &str) -> std::borrow::Cow<'_, str> {
    if value.len() <= MAX_FIELD {
        return value.into();
    }
    let mut end = MAX_FIELD - " …".len();
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} …", &value[..end]).into()
}

/// The tracing layer that writes to the journal.
pub struct Layer {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Layer {
    /// A layer sending to journald's socket (`SOCKET`), or why it cannot.
    pub fn new() -> std::io::Result<Layer> {
        let path = PathBuf::from(SOCKET);
        std::fs::metadata(&path)?;
        Ok(Layer { socket: UnixDatagram::unbound()?, path })
    }
}

/// An event's fields as text.
#[derive(Default)]
struct Fields(Vec<(&'static str, String)>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name(), value.to_owned()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name(), format!("{value:?}")));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Layer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let fields: Vec<(&str, &str)> =
            fields.0.iter().map(|(name, value)| (*name, value.as_str())).collect();
        let entry = entry(priority(*event.metadata().level()), &fields);
        // journald gone (stopping, restarting): the entry is lost, as with any logger.
        let _ = self.socket.send_to(&entry, &self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields of a binary entry, decoded as journald does.
    fn decode(mut entry: &[u8]) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        while let Some(newline) = entry.iter().position(|byte| *byte == b'\n') {
            let name = String::from_utf8(entry[..newline].to_vec()).expect("name");
            let length = u64::from_le_bytes(entry[newline + 1..newline + 9].try_into().expect("length"));
            let start = newline + 9;
            let end = start + usize::try_from(length).expect("length");
            fields.push((name, String::from_utf8(entry[start..end].to_vec()).expect("value")));
            assert_eq!(entry[end], b'\n');
            entry = &entry[end + 1..];
        }
        fields
    }

    #[test]
    fn fields_get_the_prefix_but_message_and_its_id_do_not() {
        let fields = decode(&entry(
            4,
            &[("message", "pedido 1: falha\nsegunda linha"), ("message_id", "abc"), ("http_status", "504")],
        ));
        let names: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["PRIORITY", "SYSLOG_IDENTIFIER", "MESSAGE", "MESSAGE_ID", "EXTRATOR_HTTP_STATUS"]);
        assert_eq!(fields[0].1, "4");
        assert_eq!(fields[2].1, "pedido 1: falha\nsegunda linha");
    }

    #[test]
    fn a_huge_value_is_cut_at_a_character_boundary() {
        let huge = "é".repeat(MAX_FIELD);
        let fields = decode(&entry(6, &[("message", &huge)]));
        assert!(fields[2].1.len() <= MAX_FIELD && fields[2].1.ends_with(" …"), "{}", fields[2].1.len());
    }

    #[test]
    fn ids_are_unique_and_well_formed() {
        let ids: Vec<String> = Message::all().iter().map(|message| message.id()).collect();
        for id in &ids {
            assert!(id.len() == 32 && id.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')), "{id}");
        }
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
    }

    #[test]
    fn the_monitoring_guide_lists_every_message_id() {
        let guide = include_str!("../../docs/monitoramento.md");
        for message in Message::all() {
            let id = match message {
                // Listed once, as the prefix and the code.
                Message::AttemptFailed(_) => ATTEMPT_FAILED_PREFIX.to_owned(),
                other => other.id(),
            };
            assert!(guide.contains(&id), "docs/monitoramento.md lacks {message:?} ({id})");
        }
    }

    #[test]
    fn the_catalog_explains_every_code_from_the_code_catalog() {
        let catalog = catalog();
        for info in &CATALOG {
            let id = Message::AttemptFailed(info.code).id();
            let entry = catalog.split("\n-- ").find(|entry| entry.starts_with(&id)).expect("entry");
            assert!(
                entry.contains(&format!("Subject: Falha no envio: erro {}", info.code.label())),
                "{entry}"
            );
            for line in info.steps.iter().chain(info.causes) {
                assert!(entry.contains(line), "{} lacks {line}", info.code);
            }
        }
        // A text line starting with "--" would begin a new entry.
        assert!(catalog.lines().filter(|line| line.starts_with("--")).count() == Message::all().len());
    }
}
