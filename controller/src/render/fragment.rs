//! The rules a fragment must follow to be placed on top of the OS base: where its stages come
//! from, which names are reserved, and how its text splits around the template's base stages.

use super::FragmentError;
use super::containerfile::{self, Instruction};

/// The stage holding the OS base image, pinned by digest.
pub const BASE_STAGE: &str = "base";
/// An alias of `base`, so fragments written for OpenShift's MCO (`FROM configs AS final`) work.
pub const CONFIGS_STAGE: &str = "configs";

/// A checked fragment, split where the template needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FragmentLayout {
    /// Parser directive lines; they must open the rendered file.
    pub directives: String,
    /// Lines before the first FROM of a multi-stage fragment (global ARGs and comments).
    pub preamble: String,
    /// The instructions: from the first FROM on, or the whole fragment without FROM.
    pub body: String,
    /// Whether the fragment has its own FROM lines.
    pub multi_stage: bool,
    /// The fragment's 1-based line number of the body's first line.
    pub body_first_line: usize,
}

/// One FROM line: `FROM [--flag=…] image [AS name]`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stage {
    line: usize,
    /// What it starts from, lower-cased when it names a stage.
    from: String,
    name: Option<String>,
}

/// Checks `text` and splits it for the template.
pub fn analyse(text: &str) -> Result<FragmentLayout, FragmentError> {
    let parsed = containerfile::parse(text)?;
    let lines: Vec<&str> = text.split('\n').collect();
    let directive_lines = parsed.directives.last().map_or(0, |d| d.line);
    let slice =
        |from: usize, to: usize| join_lines(&lines[from.min(lines.len())..to.min(lines.len())]);

    let Some(first_from) = parsed.instructions.iter().position(|i| i.keyword == "FROM") else {
        return Ok(FragmentLayout {
            directives: slice(0, directive_lines),
            preamble: String::new(),
            body: slice(directive_lines, lines.len()),
            multi_stage: false,
            body_first_line: first_kept_line(&lines, directive_lines),
        });
    };
    if let Some(early) = parsed.instructions[..first_from]
        .iter()
        .find(|i| i.keyword != "ARG")
    {
        return Err(FragmentError::new(
            early.line,
            format!(
                "{} comes before the first FROM; in a multi-stage fragment only ARG may precede FROM",
                early.keyword
            ),
        ));
    }
    let stages = parsed
        .instructions
        .iter()
        .filter(|i| i.keyword == "FROM")
        .map(parse_from)
        .collect::<Result<Vec<_>, _>>()?;
    check_stage_names(&stages)?;
    check_final_stage(&stages)?;

    let from_line = parsed.instructions[first_from].line - 1;
    Ok(FragmentLayout {
        directives: slice(0, directive_lines),
        preamble: slice(directive_lines, from_line),
        body: slice(from_line, lines.len()),
        multi_stage: true,
        body_first_line: first_kept_line(&lines, from_line),
    })
}

/// 1-based number of the first line [`join_lines`] keeps from `lines[from..]`.
fn first_kept_line(lines: &[&str], from: usize) -> usize {
    from + lines.iter().skip(from).take_while(|l| l.is_empty()).count() + 1
}

fn join_lines(lines: &[&str]) -> String {
    let text = lines.join("\n");
    let text = text.trim_matches('\n');
    if text.trim().is_empty() {
        String::new()
    } else {
        format!("{}\n", text.trim_end())
    }
}

fn parse_from(instruction: &Instruction) -> Result<Stage, FragmentError> {
    let usage = || {
        FragmentError::new(
            instruction.line,
            format!(
                "FROM takes '[--platform=…] image [AS name]', got 'FROM {}'",
                instruction.args
            ),
        )
    };
    let mut words = instruction
        .args
        .split_whitespace()
        .skip_while(|w| w.starts_with("--"));
    let from = words.next().ok_or_else(usage)?;
    let name = match (words.next(), words.next(), words.next()) {
        (None, _, _) => None,
        (Some(kw), Some(name), None) if kw.eq_ignore_ascii_case("as") => {
            Some(name.to_ascii_lowercase())
        }
        _ => return Err(usage()),
    };
    if let Some(name) = &name {
        let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
        if !valid {
            return Err(FragmentError::new(
                instruction.line,
                format!(
                    "invalid stage name '{name}': use a letter followed by letters, digits, '-', '_' or '.'"
                ),
            ));
        }
    }
    let from = if from.contains(['/', ':', '@']) {
        from.to_string()
    } else {
        from.to_ascii_lowercase()
    };
    Ok(Stage {
        line: instruction.line,
        from,
        name,
    })
}

fn check_stage_names(stages: &[Stage]) -> Result<(), FragmentError> {
    let mut seen: Vec<&str> = Vec::new();
    for stage in stages {
        let Some(name) = stage.name.as_deref() else {
            continue;
        };
        if name == BASE_STAGE || name == CONFIGS_STAGE {
            return Err(FragmentError::new(
                stage.line,
                format!(
                    "stage name '{name}' is reserved for the OS base image; start from it with 'FROM {name}' instead"
                ),
            ));
        }
        if seen.contains(&name) {
            return Err(FragmentError::new(
                stage.line,
                format!("stage name '{name}' is used twice"),
            ));
        }
        seen.push(name);
    }
    Ok(())
}

/// The final stage becomes the OS image, so it must start from the base, directly or through
/// earlier stages that do.
fn check_final_stage(stages: &[Stage]) -> Result<(), FragmentError> {
    let Some(last) = stages.last() else {
        return Ok(());
    };
    let mut current = last;
    for _ in 0..=stages.len() {
        if current.from == BASE_STAGE || current.from == CONFIGS_STAGE {
            return Ok(());
        }
        let parent = stages
            .iter()
            .rev()
            .find(|s| s.line < current.line && s.name.as_deref() == Some(current.from.as_str()));
        match parent {
            Some(parent) => current = parent,
            None => break,
        }
    }
    Err(FragmentError::new(
        last.line,
        format!(
            "the final stage must descend from the OS base image ('FROM base' or 'FROM configs', or a stage built from them), but it starts from '{}'",
            current.from
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected_at(text: &str) -> Option<(usize, String)> {
        analyse(text).err().map(|e| (e.line, e.message))
    }

    #[test]
    fn fragment_without_from_is_the_whole_body() -> Result<(), FragmentError> {
        let layout = analyse("\n# drop-in\nRUN echo hi > /etc/motd\n\n")?;
        assert!(!layout.multi_stage);
        assert_eq!(layout.body_first_line, 2);
        assert_eq!(layout.body, "# drop-in\nRUN echo hi > /etc/motd\n");
        assert_eq!(layout.preamble, "");
        Ok(())
    }

    #[test]
    fn mco_style_final_stage_is_accepted() -> Result<(), FragmentError> {
        let layout = analyse(
            "FROM configs AS final\nRUN rpm-ostree install vim && ostree container commit\n",
        )?;
        assert!(layout.multi_stage);
        assert!(layout.body.starts_with("FROM configs AS final\n"));
        Ok(())
    }

    #[test]
    fn builder_stages_and_global_args() -> Result<(), FragmentError> {
        let text = "# syntax=docker/dockerfile:1\nARG GO=1.22\nFROM golang:${GO} AS build\nRUN go build -o /tool .\nFROM base AS os\nFROM os\nCOPY --from=build /tool /usr/bin/tool\n";
        let layout = analyse(text)?;
        assert_eq!(layout.directives, "# syntax=docker/dockerfile:1\n");
        assert_eq!(layout.preamble, "ARG GO=1.22\n");
        assert!(layout.body.starts_with("FROM golang:${GO} AS build\n"));
        assert_eq!(layout.body_first_line, 3);
        Ok(())
    }

    #[test]
    fn final_stage_from_elsewhere_is_rejected_with_its_line() {
        let (line, msg) =
            rejected_at("FROM base AS a\nRUN true\nFROM fedora:40\nRUN true\n").unwrap_or_default();
        assert_eq!(line, 3);
        assert!(msg.contains("fedora:40"), "{msg}");
        let (line, _) = rejected_at("FROM scratch AS x\nFROM x\n").unwrap_or_default();
        assert_eq!(line, 2);
    }

    #[test]
    fn reserved_and_duplicate_stage_names() {
        assert_eq!(
            rejected_at("FROM fedora AS base\nFROM base\n").map(|e| e.0),
            Some(1)
        );
        assert_eq!(
            rejected_at("FROM base AS a\nFROM base AS A\n").map(|e| e.0),
            Some(2)
        );
    }

    #[test]
    fn instructions_before_from_and_malformed_from() {
        assert_eq!(rejected_at("RUN true\nFROM base\n").map(|e| e.0), Some(1));
        assert_eq!(
            rejected_at("RUN true\n\nFROM base AS\n").map(|e| e.0),
            Some(1)
        );
        assert_eq!(
            rejected_at("ARG X\n\nFROM base AS a b\n").map(|e| e.0),
            Some(3)
        );
        assert_eq!(rejected_at("FROM\n").map(|e| e.0), Some(1));
    }

    #[test]
    fn from_inside_a_heredoc_is_not_a_stage() -> Result<(), FragmentError> {
        let layout = analyse("RUN <<EOF\nFROM fedora\nEOF\n")?;
        assert!(!layout.multi_stage);
        Ok(())
    }

    #[test]
    fn platform_flag_is_skipped() -> Result<(), FragmentError> {
        analyse("FROM --platform=linux/amd64 base AS a\nFROM a\n")?;
        Ok(())
    }
}
