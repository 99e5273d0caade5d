//! How errors are shown to people: an `anyhow` chain as one line of bounded length.

/// The error and its causes on one line, skipping a cause whose text its parent already shows
/// (errors that both print and chain their source would otherwise repeat it).
///
/// The result is always a single line of bounded length, whatever a hostile file put in the
/// names and texts it quotes: control characters (newlines, escape sequences) are escaped, and a
/// message longer than [`MAX_MESSAGE_CHARS`] keeps its start (file, node) and end (reason) around
/// an ellipsis.
pub fn error_chain(e: &anyhow::Error) -> String {
    one_line(&raw_chain(e))
}

/// Longest error message printed, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4096;

/// `text` with control characters escaped (`\n`, `\u{1b}`, ...) and its middle elided when it
/// is longer than [`MAX_MESSAGE_CHARS`].
pub fn one_line(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    let n = escaped.chars().count();
    if n <= MAX_MESSAGE_CHARS {
        return escaped;
    }
    let keep = MAX_MESSAGE_CHARS / 2;
    let head: String = escaped.chars().take(keep).collect();
    let tail: String = escaped.chars().skip(n - keep).collect();
    format!("{head} [... {} characters elided ...] {tail}", n - 2 * keep)
}

fn raw_chain(e: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}
