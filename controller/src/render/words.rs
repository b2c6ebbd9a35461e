//! Words of an instruction as buildah's parser (moby's, through openshift/imagebuilder) reads
//! them: the leading `--flags` with their quotes removed, words split on unquoted whitespace, and
//! `$NAME`, `${NAME}`, `${NAME:-word}`, `${NAME:+word}` (and the forms without `:`) expanded.

/// What a variable holds where it is used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Set to this text.
    Set(String),
    /// Declared without a value: expands to nothing.
    Unset,
    /// Its value cannot be told from the Containerfile (set by `ENV`, by the base image, or not
    /// declared where it is used).
    Unknown,
}

/// Why a word could not be expanded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpandError {
    /// The variable's value cannot be told ([`Value::Unknown`], or [`Value::Unset`] where a value
    /// is required).
    Unknown(String),
    /// `${…}` not closed, or a modifier buildah would read differently.
    Syntax(String),
}

/// The leading `--flags` of `args` and the rest of the arguments, as moby's
/// `extractBuilderFlags` reads them: a flag is a word whose raw text starts with `--` (a quoted
/// `"--from=…"` is a path, not a flag); quotes are removed and a backslash escapes the next
/// character, in quotes too, whatever the `escape` directive says.
pub fn leading_flags(args: &str) -> (Vec<String>, &str) {
    let mut flags = Vec::new();
    let mut rest = args.trim_start();
    while rest.starts_with("--") {
        let (word, end) = flag_word(rest);
        rest = rest[end..].trim_start();
        if word == "--" {
            break;
        }
        flags.push(word);
    }
    (flags, rest)
}

/// The first word of `text` with quotes and backslash escapes removed, and where it ended.
fn flag_word(text: &str) -> (String, usize) {
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => return (word, i),
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (_, '\\') => word.extend(chars.next().map(|(_, n)| n)),
            (_, c) => word.push(c),
        }
    }
    (word, text.len())
}

/// The words of `args`, split on unquoted whitespace, quotes and escapes kept (for
/// [`expand`] to process).
pub fn raw_words(args: &str, escape: char) -> Vec<&str> {
    let mut words = Vec::new();
    let mut rest = args.trim_start();
    while !rest.is_empty() {
        let end = word_end(rest, escape);
        words.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    words
}

/// Where the first word of `text` ends: at unquoted whitespace.
fn word_end(text: &str, escape: char) -> usize {
    let mut quote: Option<char> = None;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => return i,
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (q, c) if c == escape && q != Some('\'') => {
                chars.next();
            }
            _ => {}
        }
    }
    text.len()
}

/// `word` with its quotes and escapes removed and its variables replaced through `lookup`, as
/// buildah's `ProcessWord` does.
pub fn expand(
    word: &str,
    escape: char,
    lookup: &dyn Fn(&str) -> Value,
) -> Result<String, ExpandError> {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('\''), '\'') | (Some('"'), '"') => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (Some('\''), c) => out.push(c),
            // In double quotes the escape character escapes only `"`, `$` and itself.
            (Some('"'), c) if c == escape => {
                match chars.next_if(|n| matches!(n, '"' | '$') || *n == escape) {
                    Some(n) => out.push(n),
                    None => out.push(c),
                }
            }
            (_, c) if c == escape => out.extend(chars.next()),
            (_, '$') => out.push_str(&variable(&mut chars, escape, lookup)?),
            (_, c) => out.push(c),
        }
    }
    Ok(out)
}

/// The value of the variable after a `$`.
fn variable(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    escape: char,
    lookup: &dyn Fn(&str) -> Value,
) -> Result<String, ExpandError> {
    let is_name = |c: &char| c.is_ascii_alphanumeric() || *c == '_';
    if chars.peek() != Some(&'{') {
        let mut name = String::new();
        while let Some(c) = chars.next_if(is_name) {
            name.push(c);
        }
        if name.is_empty() {
            return Ok("$".into());
        }
        return required(&name, lookup);
    }
    chars.next();
    let mut name = String::new();
    while let Some(c) = chars.next_if(is_name) {
        name.push(c);
    }
    let mut modifier = String::new();
    let mut depth = 0usize;
    loop {
        match chars.next() {
            None => {
                return Err(ExpandError::Syntax(format!(
                    "'${{{name}{modifier}' is not closed"
                )));
            }
            Some('}') if depth == 0 => break,
            Some(c) => {
                depth = match c {
                    '{' => depth + 1,
                    '}' => depth - 1,
                    _ => depth,
                };
                modifier.push(c);
            }
        }
    }
    if modifier.is_empty() {
        return required(&name, lookup);
    }
    let (colon, rest) = match modifier.strip_prefix(':') {
        Some(rest) => (true, rest),
        None => (false, modifier.as_str()),
    };
    if !rest.starts_with(['-', '+']) {
        return Err(ExpandError::Syntax(format!(
            "'${{{name}{modifier}}}': only ${{NAME:-word}} and ${{NAME:+word}} are understood"
        )));
    }
    let value = lookup(&name);
    let present = match &value {
        Value::Set(text) => !colon || !text.is_empty(),
        Value::Unset => false,
        Value::Unknown => return Err(ExpandError::Unknown(name)),
    };
    let alternative = || expand(&rest[1..], escape, lookup);
    match (rest.starts_with('-'), present) {
        (true, true) => required(&name, lookup),
        (true, false) | (false, true) => alternative(),
        (false, false) => Ok(String::new()),
    }
}

fn required(name: &str, lookup: &dyn Fn(&str) -> Value) -> Result<String, ExpandError> {
    match lookup(name) {
        Value::Set(text) => Ok(text),
        Value::Unset | Value::Unknown => Err(ExpandError::Unknown(name.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Value {
        match name {
            "IMG" => Value::Set("quay.io/a/b:1".into()),
            "EMPTY" => Value::Set(String::new()),
            "DECLARED" => Value::Unset,
            _ => Value::Unknown,
        }
    }

    fn x(word: &str) -> Result<String, ExpandError> {
        expand(word, '\\', &vars)
    }

    #[test]
    fn flags_lose_their_quotes_and_stop_at_the_first_other_word() {
        let (flags, rest) = leading_flags(
            r#"--mount=type=bind,"from=IMG",target=/x --network='none' echo "--not=a flag""#,
        );
        assert_eq!(
            flags,
            ["--mount=type=bind,from=IMG,target=/x", "--network=none"]
        );
        assert_eq!(rest, r#"echo "--not=a flag""#);
        let (flags, rest) = leading_flags(r"--from=a\ b --chown=1 src dst");
        assert_eq!(flags, ["--from=a b", "--chown=1"]);
        assert_eq!(rest, "src dst");
        // In quotes too a backslash escapes; a quoted word is no flag; `--` ends the flags.
        let (flags, rest) = leading_flags(r#"--from='a\'b' "--from=c" d"#);
        assert_eq!(
            (flags.as_slice(), rest),
            (&["--from=a'b".to_string()][..], r#""--from=c" d"#)
        );
        let (flags, rest) = leading_flags("--chown=1 -- --from=x y");
        assert_eq!(
            (flags.as_slice(), rest),
            (&["--chown=1".to_string()][..], "--from=x y")
        );
    }

    #[test]
    fn words_split_on_unquoted_whitespace_only() {
        assert_eq!(
            raw_words(r#"A="x y" B='p q' C=a\ b D"#, '\\'),
            [r#"A="x y""#, "B='p q'", r"C=a\ b", "D"]
        );
    }

    #[test]
    fn variables_expand_as_buildah_expands_them() {
        assert_eq!(x("$IMG").unwrap(), "quay.io/a/b:1");
        assert_eq!(x("${IMG}-x").unwrap(), "quay.io/a/b:1-x");
        assert_eq!(x("\"$IMG\"").unwrap(), "quay.io/a/b:1");
        assert_eq!(x("'$IMG'").unwrap(), "$IMG");
        assert_eq!(x(r"\$IMG").unwrap(), "$IMG");
        assert_eq!(x("${DECLARED:-r/fallback}").unwrap(), "r/fallback");
        assert_eq!(x("${EMPTY:-r/f}").unwrap(), "r/f");
        assert_eq!(x("${EMPTY-r/f}").unwrap(), "");
        assert_eq!(x("${IMG:+r/alt}").unwrap(), "r/alt");
        assert_eq!(x("${DECLARED:+r/alt}").unwrap(), "");
        assert_eq!(x("${DECLARED:-${IMG}}").unwrap(), "quay.io/a/b:1");
        assert_eq!(x("a$").unwrap(), "a$");
        assert_eq!(x(r#""a\b\$IMG""#).unwrap(), r"a\b$IMG");
    }

    #[test]
    fn what_cannot_be_told_is_an_error() {
        assert_eq!(x("$OTHER"), Err(ExpandError::Unknown("OTHER".into())));
        assert_eq!(
            x("${DECLARED}"),
            Err(ExpandError::Unknown("DECLARED".into()))
        );
        assert_eq!(x("${OTHER:-x}"), Err(ExpandError::Unknown("OTHER".into())));
        assert!(matches!(x("${IMG"), Err(ExpandError::Syntax(_))));
        assert!(matches!(x("${IMG#quay.io/}"), Err(ExpandError::Syntax(_))));
    }
}
