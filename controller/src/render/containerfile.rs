//! A Containerfile parser that knows the grammar well enough to find instructions reliably:
//! parser directives, comments, line continuations (with the `escape` directive), heredocs and
//! JSON-form arguments. It does not expand variables or run anything.

use super::FragmentError;

/// Every instruction keyword buildah/BuildKit accepts.
const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];
/// Instructions whose arguments may open heredocs.
const HEREDOC_KEYWORDS: &[&str] = &["RUN", "COPY", "ADD"];
/// Parser directives; anything else in a leading comment is a plain comment.
const DIRECTIVES: &[&str] = &["syntax", "escape", "check"];

/// A parser directive (`# escape=\``) at the top of a Containerfile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    pub line: usize,
    pub key: String,
    pub value: String,
}

/// A heredoc opened by an instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heredoc {
    pub delimiter: String,
    pub body: String,
}

/// One instruction, with its continuation lines joined and its heredoc bodies collected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line of the keyword.
    pub line: usize,
    /// 1-based last line, including continuations and heredoc bodies.
    pub end_line: usize,
    /// The keyword, upper-cased.
    pub keyword: String,
    /// Everything after the keyword, continuations joined, trimmed.
    pub args: String,
    /// The arguments in JSON (exec) form, when they are a JSON array of strings.
    pub json: Option<Vec<String>>,
    pub heredocs: Vec<Heredoc>,
}

/// A parsed Containerfile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Containerfile {
    pub directives: Vec<Directive>,
    /// The escape character (`\` unless the `escape` directive says `` ` ``).
    pub escape: char,
    pub instructions: Vec<Instruction>,
}

/// Parses `text`; errors carry the 1-based line they concern.
pub fn parse(text: &str) -> Result<Containerfile, FragmentError> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let (directives, mut i) = parse_directives(&lines)?;
    let escape = directives
        .iter()
        .find(|d| d.key == "escape")
        .and_then(|d| d.value.chars().next())
        .unwrap_or('\\');

    let mut instructions = Vec::new();
    while i < lines.len() {
        let trimmed = lines[i].trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        instructions.push(parse_instruction(&lines, &mut i, escape)?);
    }
    Ok(Containerfile {
        directives,
        escape,
        instructions,
    })
}

/// The instruction starting at line `*i`, with its continuations and heredoc bodies; `*i` moves
/// past them.
fn parse_instruction(
    lines: &[&str],
    i: &mut usize,
    escape: char,
) -> Result<Instruction, FragmentError> {
    let start = *i;
    let logical = logical_line(lines, i, escape)?;
    let logical = logical.trim();
    let (word, args) = logical
        .split_once(char::is_whitespace)
        .unwrap_or((logical, ""));
    let keyword = word.to_ascii_uppercase();
    if !KEYWORDS.contains(&keyword.as_str()) {
        return Err(FragmentError::new(
            start + 1,
            format!("unknown instruction '{word}'"),
        ));
    }
    let args = args.trim().to_string();
    let json = parse_json_form(&args);
    let mut heredocs = Vec::new();
    if json.is_none() && HEREDOC_KEYWORDS.contains(&keyword.as_str()) {
        for (delimiter, strip_tabs) in heredoc_markers(&args) {
            let body = heredoc_body(lines, i, start, &delimiter, strip_tabs)?;
            heredocs.push(Heredoc { delimiter, body });
        }
    }
    Ok(Instruction {
        line: start + 1,
        end_line: *i,
        keyword,
        args,
        json,
        heredocs,
    })
}

/// The lines from `*i` joined at their continuations (`escape` at the end of a line); `*i` moves
/// past them.
fn logical_line(lines: &[&str], i: &mut usize, escape: char) -> Result<String, FragmentError> {
    let start = *i;
    let mut logical = String::new();
    loop {
        let line = lines[*i].trim_end();
        *i += 1;
        match line.strip_suffix(escape) {
            Some(head) => {
                logical.push_str(head);
                logical.push(' ');
                // Comment and empty lines inside a continuation are dropped, as BuildKit does.
                while *i < lines.len()
                    && (lines[*i].trim().is_empty() || lines[*i].trim_start().starts_with('#'))
                {
                    *i += 1;
                }
                if *i >= lines.len() {
                    return Err(FragmentError::new(
                        start + 1,
                        format!(
                            "the instruction ends in a line continuation ('{escape}') at the end of the text"
                        ),
                    ));
                }
            }
            None => {
                logical.push_str(line);
                break;
            }
        }
    }
    Ok(logical)
}

/// The body of heredoc `delimiter`, from line `*i` to its closing line; `*i` moves past it. Errors
/// name the instruction's line, `start`.
fn heredoc_body(
    lines: &[&str],
    i: &mut usize,
    start: usize,
    delimiter: &str,
    strip_tabs: bool,
) -> Result<String, FragmentError> {
    let mut body = String::new();
    loop {
        let Some(line) = lines.get(*i) else {
            return Err(FragmentError::new(
                start + 1,
                format!("heredoc <<{delimiter} is never closed: expected a line '{delimiter}'"),
            ));
        };
        *i += 1;
        let candidate = if strip_tabs {
            line.trim_start_matches('\t')
        } else {
            line
        };
        if candidate == delimiter {
            break;
        }
        body.push_str(candidate);
        body.push('\n');
    }
    Ok(body)
}

/// Leading `# key=value` lines; the first other line ends them. Returns them and the index of the
/// first line after them.
fn parse_directives(lines: &[&str]) -> Result<(Vec<Directive>, usize), FragmentError> {
    let mut directives: Vec<Directive> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(comment) = line.trim().strip_prefix('#') else {
            return Ok((directives, i));
        };
        let Some((key, value)) = comment.split_once('=') else {
            return Ok((directives, i));
        };
        let key = key.trim().to_ascii_lowercase();
        if !DIRECTIVES.contains(&key.as_str()) || key.contains(char::is_whitespace) {
            return Ok((directives, i));
        }
        let value = value.trim().to_string();
        if directives.iter().any(|d| d.key == key) {
            return Err(FragmentError::new(
                i + 1,
                format!("parser directive '{key}' is given twice"),
            ));
        }
        if key == "escape" && value != "\\" && value != "`" {
            return Err(FragmentError::new(
                i + 1,
                format!("invalid escape character '{value}': it must be '\\' or '`'"),
            ));
        }
        directives.push(Directive {
            line: i + 1,
            key,
            value,
        });
    }
    Ok((directives, lines.len()))
}

/// `["a", "b"]` → the strings; anything else (including invalid JSON) is shell form, as in BuildKit.
fn parse_json_form(args: &str) -> Option<Vec<String>> {
    if !args.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(args).ok()
}

/// The heredocs an instruction opens, in order: words `<<NAME`, `<<-NAME`, `<<"NAME"`, `<<'NAME'`.
fn heredoc_markers(args: &str) -> Vec<(String, bool)> {
    args.split_whitespace()
        .filter_map(|word| {
            let rest = word.strip_prefix("<<")?;
            if rest.starts_with('<') {
                return None; // a here-string (<<<), not a heredoc
            }
            let (strip_tabs, rest) = match rest.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let name = rest.trim_matches(|c| c == '"' || c == '\'');
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            valid.then(|| (name.to_string(), strip_tabs))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keywords(cf: &Containerfile) -> Vec<(usize, &str)> {
        cf.instructions
            .iter()
            .map(|i| (i.line, i.keyword.as_str()))
            .collect()
    }

    #[test]
    fn comments_blank_lines_and_case() -> Result<(), FragmentError> {
        let cf = parse("# a comment\n\nrun echo hi\n  # indented comment\nCopy a b\n")?;
        assert_eq!(keywords(&cf), vec![(3, "RUN"), (5, "COPY")]);
        assert_eq!(cf.instructions[0].args, "echo hi");
        Ok(())
    }

    #[test]
    fn continuations_join_and_skip_comment_lines() -> Result<(), FragmentError> {
        let cf =
            parse("RUN dnf install -y \\\n# why we need it\n    vim \\\n    tmux\nUSER root\n")?;
        assert_eq!(keywords(&cf), vec![(1, "RUN"), (5, "USER")]);
        assert_eq!(cf.instructions[0].end_line, 4);
        assert!(cf.instructions[0].args.contains("vim"));
        assert!(cf.instructions[0].args.contains("tmux"));
        Ok(())
    }

    #[test]
    fn escape_directive_switches_the_continuation_character() -> Result<(), FragmentError> {
        let cf = parse("# escape=`\nRUN echo C:\\path `\n  more\nUSER x\n")?;
        assert_eq!(cf.escape, '`');
        assert_eq!(cf.directives[0].key, "escape");
        assert_eq!(keywords(&cf), vec![(2, "RUN"), (4, "USER")]);
        Ok(())
    }

    #[test]
    fn directives_only_at_the_top() -> Result<(), FragmentError> {
        let cf = parse("RUN true\n# escape=`\nRUN a \\\n b\n")?;
        assert!(cf.directives.is_empty());
        assert_eq!(keywords(&cf), vec![(1, "RUN"), (3, "RUN")]);
        Ok(())
    }

    #[test]
    fn heredoc_words_are_not_instructions() -> Result<(), FragmentError> {
        let text = "RUN <<EOF\nFROM nothing\nset -e\nEOF\nCOPY <<-'CONF' /etc/x.conf\n\tkey=value\n\tCONF\nLABEL a=b\n";
        let cf = parse(text)?;
        assert_eq!(keywords(&cf), vec![(1, "RUN"), (5, "COPY"), (8, "LABEL")]);
        assert_eq!(
            cf.instructions[0].heredocs[0].body,
            "FROM nothing\nset -e\n"
        );
        assert_eq!(cf.instructions[1].heredocs[0].delimiter, "CONF");
        assert_eq!(cf.instructions[1].heredocs[0].body, "key=value\n");
        Ok(())
    }

    #[test]
    fn two_heredocs_in_one_instruction() -> Result<(), FragmentError> {
        let cf = parse("COPY <<A <<B /dst/\na\nA\nb\nB\nRUN true\n")?;
        assert_eq!(cf.instructions[0].heredocs.len(), 2);
        assert_eq!(keywords(&cf), vec![(1, "COPY"), (6, "RUN")]);
        Ok(())
    }

    #[test]
    fn here_string_is_not_a_heredoc() -> Result<(), FragmentError> {
        let cf = parse("RUN cat <<<hello\nUSER x\n")?;
        assert!(cf.instructions[0].heredocs.is_empty());
        assert_eq!(cf.instructions.len(), 2);
        Ok(())
    }

    #[test]
    fn json_form_and_fallback_to_shell_form() -> Result<(), FragmentError> {
        let cf = parse("CMD [\"/bin/sh\", \"-c\", \"echo <<EOF\"]\nRUN [not json\n")?;
        assert_eq!(
            cf.instructions[0].json.as_deref(),
            Some(&["/bin/sh".to_string(), "-c".into(), "echo <<EOF".into()][..])
        );
        assert_eq!(cf.instructions[1].json, None);
        Ok(())
    }

    #[test]
    fn errors_carry_lines() {
        let err = |t: &str| parse(t).err().map(|e| (e.line, e.message));
        assert_eq!(err("RUN a\n\nFORM x\n").map(|e| e.0), Some(3));
        assert!(
            err("RUN a\nRUN <<EOF\nnever closed\n")
                .is_some_and(|(l, m)| l == 2 && m.contains("never closed"))
        );
        assert!(err("RUN a \\\n").is_some_and(|(l, m)| l == 1 && m.contains("continuation")));
        assert!(err("# escape=x\n").is_some_and(|(l, _)| l == 1));
        assert!(err("# escape=`\n# escape=\\\n").is_some_and(|(l, _)| l == 2));
    }

    #[test]
    fn crlf_line_endings() -> Result<(), FragmentError> {
        let cf = parse("RUN a \\\r\n  b\r\nUSER c\r\n")?;
        assert_eq!(keywords(&cf), vec![(1, "RUN"), (3, "USER")]);
        Ok(())
    }
}
