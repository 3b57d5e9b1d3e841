//! The conventions of the binaries: logging, colour, completions, tables.

use std::io::{IsTerminal, Write};

use clap::{CommandFactory, Subcommand};
use clap_complete::Shell;
use tracing_subscriber::EnvFilter;
use unicode_width::UnicodeWidthStr;

/// Installs the tracing subscriber of binary `name`: events go to stderr, filtered by `RUST_LOG`
/// (`default_filter` when unset, e.g. `warn`), coloured only when [`color`] says so. Call it first
/// in `main`, before parsing arguments, so even `--help` honours `RUST_LOG`.
pub fn init(name: &str, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color(&std::io::stderr()))
        .try_init();
    if installed.is_ok() {
        tracing::debug!(version = env!("CARGO_PKG_VERSION"), "{name} starting");
    }
}

/// Whether output to `stream` may be coloured: it is a terminal and `NO_COLOR` is unset or empty
/// (<https://no-color.org>).
pub fn color(stream: &impl IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `text` in SGR colour `code` (e.g. `"32"`, green) when `color`, else as is.
pub fn paint(text: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// The subcommands of a binary plus `completions SHELL`, which every binary has so packages
/// install completions the same way for all of them: `BIN completions bash|zsh|fish|elvish|powershell`
/// prints the script on stdout.
#[derive(Debug, Clone, Subcommand)]
pub enum WithCompletions<C: Subcommand> {
    #[command(flatten)]
    Command(C),
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: Shell,
    },
}

impl<C: Subcommand> WithCompletions<C> {
    /// The binary's own command; for `completions SHELL`, prints the script for the parser `P`
    /// and exits, as clap does for `--help`.
    pub fn or_print_completions<P: CommandFactory>(self) -> C {
        match self {
            WithCompletions::Command(command) => command,
            WithCompletions::Completions { shell } => {
                std::process::exit(print_completions::<P>(shell))
            }
        }
    }
}

/// Prints the script; returns the exit status.
fn print_completions<P: CommandFactory>(shell: Shell) -> i32 {
    let mut command = P::command();
    let name = command.get_name().to_owned();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&script).and_then(|()| stdout.flush()) {
        Ok(()) => 0,
        // `| head` closed the pipe: what was asked for has been read.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(err) => {
            eprintln!("error: writing the completion script: {err}");
            1
        }
    }
}

/// `text` with its control characters (C0, DEL, C1: ESC, BEL, CR, newlines) escaped as Rust
/// escapes them (`\u{1b}`, `\n`), so text from a config file or a record cannot move the cursor,
/// clear the screen or set the terminal title when printed.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A table in the one style of the binaries: a header row, columns separated by two spaces, no
/// borders, no colour, no wrapping, no trailing blanks (easy to read and to `awk`). Columns are
/// as wide as their widest cell on a terminal (`unicode-width`).
pub struct TextTable {
    rows: Vec<Vec<String>>,
}

impl TextTable {
    pub fn new<S: ToString>(header: impl IntoIterator<Item = S>) -> Self {
        let mut table = TextTable { rows: Vec::new() };
        table.row(header);
        table
    }

    /// Adds a row; control characters in the cells are escaped ([`printable`]).
    pub fn row<S: ToString>(&mut self, cells: impl IntoIterator<Item = S>) -> &mut Self {
        let cells = cells
            .into_iter()
            .map(|cell| printable(&cell.to_string()).into_owned());
        self.rows.push(cells.collect());
        self
    }
}

impl std::fmt::Display for TextTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut widths: Vec<usize> = Vec::new();
        for row in &self.rows {
            widths.resize(widths.len().max(row.len()), 0);
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.width());
            }
        }
        let mut line = String::new();
        for (r, row) in self.rows.iter().enumerate() {
            line.clear();
            for (width, cell) in widths.iter().zip(row) {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', width - cell.width() + 2));
            }
            let newline = if r + 1 < self.rows.len() { "\n" } else { "" };
            write!(f, "{}{newline}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_a_header_aligned_columns_and_no_trailing_blanks() {
        let mut t = TextTable::new(["ID", "NAME"]);
        t.row(["a1", "long name"]).row(["b", "-"]);
        assert_eq!(t.to_string(), "ID  NAME\na1  long name\nb   -");
        // A wide character takes two columns on a terminal.
        t.row(["日本", "x"]);
        assert_eq!(
            t.to_string(),
            "ID    NAME\na1    long name\nb     -\n日本  x"
        );
    }

    #[test]
    fn control_characters_are_escaped_in_text_and_tables() {
        let hostile = "a\x1b]0;title\x07\x1b[2J\u{9b}b\nc\td";
        assert_eq!(
            printable(hostile),
            "a\\u{1b}]0;title\\u{7}\\u{1b}[2J\\u{9b}b\\nc\\td"
        );
        assert!(matches!(
            printable("plain é"),
            std::borrow::Cow::Borrowed(_)
        ));
        let mut t = TextTable::new(["ID"]);
        t.row([hostile]);
        assert_eq!(t.to_string().lines().count(), 2, "{t}");
        assert!(
            !t.to_string()
                .lines()
                .any(|l| l.chars().any(char::is_control)),
            "{t}"
        );
    }

    #[test]
    fn paint_only_when_asked() {
        assert_eq!(paint("ok", "32", false), "ok");
        assert_eq!(paint("ok", "32", true), "\x1b[32mok\x1b[0m");
    }
}
