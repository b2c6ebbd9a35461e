//! A VM's serial console as a file: what tests read of it.

use std::path::Path;

/// The console so far, as text without escapes (firmware and boot loader output need not be
/// UTF-8).
pub fn read(path: &Path) -> String {
    without_escapes(&String::from_utf8_lossy(
        &std::fs::read(path).unwrap_or_default(),
    ))
}

/// Its last `n` lines, for an error message.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `text` without terminal escape sequences and carriage returns (systemd colours its status).
pub fn without_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            // CSI: parameters up to the final byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else if c != '\r' {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_dropped_and_the_tail_is_the_end() {
        assert_eq!(
            without_escapes("[\u{1b}[0;32m  OK  \u{1b}[0m] Reached\r\n"),
            "[  OK  ] Reached\n"
        );
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
