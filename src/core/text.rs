//! pt-BR text helpers: ages, counts that agree, I/O errors, escaping for a terminal, cutting, and
//! aligned tables. Pure (local times, which read the server's zone, are `view::local_time`).

use std::io;
use std::time::Duration;

/// How long ago, rounded to a readable unit: `há 5min`, `há 2h`, `agora`.
pub fn ago(at: jiff::Timestamp, now: jiff::Timestamp) -> String {
    let millis = now.as_millisecond().saturating_sub(at.as_millisecond());
    if millis < 0 {
        return format!("daqui a {}", rounded(Duration::from_millis(millis.unsigned_abs())));
    }
    if millis < 1_000 {
        return "agora".to_owned();
    }
    format!("há {}", rounded(Duration::from_millis(millis.unsigned_abs())))
}

/// A count with its noun agreeing, as a person writes it: `1 item`, `3 itens`, `0 itens`
/// (Portuguese takes the plural for zero). `one` and `many` may be phrases ("registro inválido").
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A duration with its largest unit only (`3d`, `5h`, `12min`, `40s`).
pub fn rounded(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3_600 => format!("{}min", secs / 60),
        3_600..86_400 => format!("{}h", secs / 3_600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// An I/O error in pt-BR, for messages that also name the path.
pub fn io_error(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "não encontrado".to_owned(),
        io::ErrorKind::PermissionDenied => "permissão negada".to_owned(),
        io::ErrorKind::IsADirectory => "é um diretório, não um arquivo".to_owned(),
        io::ErrorKind::NotADirectory => "não é um diretório".to_owned(),
        io::ErrorKind::StorageFull => "o disco está cheio".to_owned(),
        io::ErrorKind::ReadOnlyFilesystem => "o sistema de arquivos é somente leitura".to_owned(),
        io::ErrorKind::AlreadyExists => "já existe".to_owned(),
        io::ErrorKind::InvalidData => "o conteúdo não é texto UTF-8".to_owned(),
        io::ErrorKind::ConnectionRefused => "conexão recusada".to_owned(),
        io::ErrorKind::ConnectionReset => "conexão reiniciada pelo outro lado".to_owned(),
        io::ErrorKind::ConnectionAborted => "conexão abortada".to_owned(),
        io::ErrorKind::TimedOut => "tempo esgotado".to_owned(),
        io::ErrorKind::HostUnreachable => "host inalcançável".to_owned(),
        io::ErrorKind::NetworkUnreachable => "rede inalcançável".to_owned(),
        io::ErrorKind::AddrInUse => "endereço já em uso".to_owned(),
        io::ErrorKind::AddrNotAvailable => "endereço indisponível nesta máquina".to_owned(),
        io::ErrorKind::BrokenPipe => "o outro lado fechou a conexão".to_owned(),
        io::ErrorKind::Interrupted => "interrompido".to_owned(),
        // The errno's number is kept for search; its English text is not shown.
        _ => match error.raw_os_error() {
            Some(errno) => format!("erro do sistema (errno {errno})"),
            None => format!("erro de E/S ({error})"),
        },
    }
}

/// `text` made safe to print on a terminal: control characters (C0, DEL, C1: escapes, BEL, CR,
/// line breaks) and the invisible bidirectional controls that reorder what is shown (U+202E …)
/// are written as `\u{…}`, so hostile text from the ERP or the API can neither move the cursor
/// nor disguise itself. Everything else passes unchanged.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut safe = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            safe.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            safe.push(c);
        }
    }
    std::borrow::Cow::Owned(safe)
}

/// `terminal_safe` for each line of a text of several lines: the line breaks are kept, and a
/// carriage return or any other control inside a line is escaped.
pub fn terminal_safe_lines(text: &str) -> String {
    text.split('\n').map(|line| terminal_safe(line).into_owned()).collect::<Vec<_>>().join("\n")
}

/// The first few of a list that can be as long as its input, and how many there were in all: an
/// error about a 64 MiB document names twenty faults and counts the rest, rather than hold
/// millions of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed<T> {
    /// At most `Listed::MAX`, in order.
    pub first: Vec<T>,
    pub total: usize,
}

impl<T> Default for Listed<T> {
    fn default() -> Self {
        Listed { first: Vec::new(), total: 0 }
    }
}

impl<T> Listed<T> {
    /// How many are kept.
    pub const MAX: usize = 20;

    /// Counts `item`, keeping it if fewer than `MAX` are kept.
    pub fn push(&mut self, item: T) {
        self.total += 1;
        if self.first.len() < Self::MAX {
            self.first.push(item);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Each kept item on a line of its own, indented, then "… e mais N" for the rest.
    pub fn write_lines(&self, f: &mut impl std::fmt::Write, line: impl Fn(&T) -> String) -> std::fmt::Result {
        for item in &self.first {
            write!(f, "\n  {}", line(item))?;
        }
        if self.total > self.first.len() {
            write!(f, "\n  … e mais {}", self.total - self.first.len())?;
        }
        Ok(())
    }
}

impl<T> FromIterator<T> for Listed<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let mut listed = Listed::default();
        for item in items {
            listed.push(item);
        }
        listed
    }
}

/// Cuts `text` to `width` characters, with `…` when cut, on one line.
pub fn truncate(text: &str, width: usize) -> String {
    let one_line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if one_line.chars().count() <= width {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `text` cut to at most `bytes` bytes on a character boundary, with `…` when cut. Cut only
/// after masking: half a secret is no longer recognised as one.
pub fn cut(text: &str, bytes: usize) -> String {
    if text.len() <= bytes {
        return text.to_owned();
    }
    let mut end = bytes.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The longest stretch of a value quoted back in a message.
pub const QUOTED_CHARS: usize = 200;

/// A value from the input quoted in a message: whole, in quotes, when short; else its first
/// `QUOTED_CHARS` characters and its length, so a 15 MB value never makes a 15 MB message.
pub fn quoted(value: &str) -> String {
    let count = value.chars().count();
    if count <= QUOTED_CHARS {
        format!("\"{value}\"")
    } else {
        let start: String = value.chars().take(QUOTED_CHARS).collect();
        format!("\"{start}…\" ({count} caracteres)")
    }
}

/// A table with a header row, printed with columns aligned by character count (so accented
/// headers line up).
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        Table { rows: vec![headers.iter().map(|header| (*header).to_owned()).collect()] }
    }

    /// Adds a row; missing cells are blank.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The aligned text, one line per row, the last column unpadded.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|column| {
                self.rows
                    .iter()
                    .map(|row| row.get(column).map_or(0, |cell| cell.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (column, width) in widths.iter().enumerate() {
                let cell = row.get(column).map_or("", String::as_str);
                if column + 1 == columns {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(width - cell.chars().count() + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_by_characters_not_bytes() {
        let mut table = Table::new(&["ESTADO", "N"]);
        table.row(vec!["concluído".into(), "1".into()]);
        table.row(vec!["falhou".into(), "22".into()]);
        assert_eq!(table.render(), "ESTADO     N\nconcluído  1\nfalhou     22\n");
    }

    #[test]
    fn ages_read_naturally() {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let before = |secs: i64| jiff::Timestamp::from_second(1_800_000_000 - secs).unwrap();
        assert_eq!(ago(before(0), now), "agora");
        assert_eq!(ago(before(42), now), "há 42s");
        assert_eq!(ago(before(600), now), "há 10min");
        assert_eq!(ago(before(7_300), now), "há 2h");
        assert_eq!(ago(before(-120), now), "daqui a 2min");
    }

    #[test]
    fn terminal_safe_escapes_controls_and_bidi_overrides() {
        assert_eq!(terminal_safe("pedido 1 ação"), "pedido 1 ação");
        assert_eq!(terminal_safe("a\u{1b}[31mb\u{7}\r\n"), "a\\u{1b}[31mb\\u{7}\\u{d}\\u{a}");
        assert_eq!(terminal_safe("x\u{202e}gpj.exe"), "x\\u{202e}gpj.exe");
        assert_eq!(terminal_safe("\u{9b}2J"), "\\u{9b}2J");
    }

    #[test]
    fn terminal_safe_lines_keeps_line_breaks_only() {
        assert_eq!(terminal_safe_lines("a\nb\r\n\u{1b}]0;x\u{7}"), "a\nb\\u{d}\n\\u{1b}]0;x\\u{7}");
    }

    #[test]
    fn cut_is_bounded_in_bytes_on_a_character_boundary() {
        assert_eq!(cut("curto", 10), "curto");
        let long = "ção".repeat(1000);
        let short = cut(&long, 100);
        assert!(short.len() <= 100 && short.ends_with('…'), "{short}");
    }

    #[test]
    fn truncate_keeps_one_line() {
        assert_eq!(truncate("a\nb", 10), "a b");
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
