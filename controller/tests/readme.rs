//! README.md and docs/ say what the code does (issue 19, item 1; the README was split into docs/
//! by issue 28), checked against the built binary and the Makefiles. The checks run over the union
//! of README.md and every docs/**/*.md, each file parsed on its own (headings do not carry over):
//!
//! - every `--flag` they name for `strata controller`, `build`, `render`, `disk-image` or `boot-check` exists in
//!   that subcommand's `--help`, and every flag there is named in them (so a new flag cannot go
//!   undocumented and a removed one, like `--build-registry-cache`, cannot stay);
//! - in their flag tables, each flag's environment variable and default are the ones `--help`
//!   prints;
//! - every `make <target>` they name is a target of the Makefiles;
//! - `kubectl`/`oc` commands name Strata's kinds by their own short names (`smosc`, `smosb`), never
//!   by `mosc`/`mosb`, which are OpenShift's own MachineOSConfig and MachineOSBuild.
//!
//! Which subcommand a flag belongs to: a command in code (`strata build --image …`) says so; a bare
//! flag in code (`--build-history`) belongs to `strata controller`, unless it stands under a heading
//! that names `strata build`, `strata render`, `strata disk-image` or `strata boot-check`. Flags of other programs are only ever written
//! after their program's name (`buildah bud --pull=never`), so they are not taken for Strata's.
//! Each check asserts that it found a minimum number of things, so it cannot pass vacuously.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The Markdown files under `dir`, recursively, relative to the repository.
fn markdown_under(dir: &Path, found: &mut Vec<String>) {
    let entries =
        std::fs::read_dir(repo().join(dir)).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = dir.join(
            entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .file_name(),
        );
        if repo().join(&path).is_dir() {
            markdown_under(&path, found);
        } else if path.extension().is_some_and(|e| e == "md") {
            found.push(path.display().to_string());
        }
    }
}

/// README.md and docs/**/*.md, parsed one by one and put together.
fn user_docs() -> Readme {
    let mut files = vec!["README.md".to_string()];
    markdown_under(Path::new("docs"), &mut files);
    assert!(files.len() >= 3, "README.md and docs/ hold only {files:?}");
    let mut all = Readme {
        snippets: Vec::new(),
        rows: Vec::new(),
    };
    for file in &files {
        let one = parse_readme(&read(file));
        all.snippets.extend(one.snippets);
        all.rows.extend(one.rows);
    }
    all
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Sub {
    Top,
    Controller,
    Build,
    Render,
    Crds,
    DiskImage,
    BootCheck,
    Status,
    Logs,
    Rebuild,
}

impl Sub {
    fn args(self) -> &'static [&'static str] {
        match self {
            Sub::Top => &[],
            Sub::Controller => &["controller"],
            Sub::Build => &["build"],
            Sub::Render => &["render"],
            Sub::Crds => &["crds"],
            Sub::DiskImage => &["disk-image"],
            Sub::BootCheck => &["boot-check"],
            Sub::Status => &["status"],
            Sub::Logs => &["logs"],
            Sub::Rebuild => &["rebuild"],
        }
    }

    fn from_word(word: &str) -> Option<Sub> {
        match word {
            "controller" => Some(Sub::Controller),
            "build" => Some(Sub::Build),
            "render" => Some(Sub::Render),
            "crds" => Some(Sub::Crds),
            "disk-image" => Some(Sub::DiskImage),
            "boot-check" => Some(Sub::BootCheck),
            "status" => Some(Sub::Status),
            "logs" => Some(Sub::Logs),
            "rebuild" => Some(Sub::Rebuild),
            _ => None,
        }
    }
}

/// What `--help` says about one flag.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct HelpFlag {
    env: Option<String>,
    default: Option<String>,
}

/// The long flags of `strata <sub> --help`, with their env and default.
fn help(sub: Sub) -> BTreeMap<String, HelpFlag> {
    let out = Command::new(STRATA)
        .args(sub.args())
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("running {STRATA}: {e}"));
    assert!(
        out.status.success(),
        "strata {:?} --help failed",
        sub.args()
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut flags: BTreeMap<String, HelpFlag> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        // An option line: `  -f, --filename <FILE>` or `      --builder-image <BUILDER_IMAGE>`
        // (not a `- value: …` line of a flag's possible values, which is indented further).
        let indent = line.len() - trimmed.len();
        let is_option = indent <= 6
            && (trimmed.starts_with("--")
                || (trimmed.starts_with('-') && trimmed.get(2..5) == Some(", -")));
        if is_option {
            let option = trimmed;
            current = option
                .split([' ', ','])
                .find(|w| w.starts_with("--"))
                .map(str::to_string);
            if let Some(flag) = &current {
                flags.entry(flag.clone()).or_default();
            }
            continue;
        }
        let Some(flag) = &current else { continue };
        let entry = flags.entry(flag.clone()).or_default();
        if let Some(env) = trimmed
            .strip_prefix("[env: ")
            .and_then(|r| r.split('=').next())
        {
            entry.env = Some(env.to_string());
        }
        if let Some(default) = trimmed
            .strip_prefix("[default: ")
            .and_then(|r| r.strip_suffix(']'))
        {
            let default = default.trim_matches('"');
            entry.default = (!default.is_empty()).then(|| default.to_string());
        }
    }
    flags.remove("--help");
    flags.remove("--version");
    flags
}

/// A piece of code in the README: an inline code span or a line of a fenced block, with the
/// heading it stands under.
#[derive(Debug)]
struct Snippet {
    heading: String,
    code: String,
}

/// A table row: its cells (code spans kept with their backticks), with its heading and the
/// table's header cells.
#[derive(Debug)]
struct Row {
    heading: String,
    header: Vec<String>,
    cells: Vec<String>,
}

struct Readme {
    snippets: Vec<Snippet>,
    rows: Vec<Row>,
}

/// The inline code spans of a line of prose (`\|` in a span, as tables need it, is a `|`).
fn code_spans(line: &str) -> Vec<String> {
    let mut spans = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        let ticks = rest[start..].chars().take_while(|&c| c == '`').count();
        let fence = "`".repeat(ticks);
        let after = &rest[start + ticks..];
        let Some(end) = after.find(&fence) else { break };
        spans.push(after[..end].trim().replace("\\|", "|"));
        rest = &after[end + ticks..];
    }
    spans
}

/// A table row's cells: split at `|` outside code spans, `\|` kept as text.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = vec![String::new()];
    let mut in_code = false;
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                if let Some(cell) = cells.last_mut() {
                    cell.push('|');
                }
            }
            '`' => {
                in_code = !in_code;
                if let Some(cell) = cells.last_mut() {
                    cell.push(c);
                }
            }
            '|' if !in_code => cells.push(String::new()),
            _ => {
                if let Some(cell) = cells.last_mut() {
                    cell.push(c);
                }
            }
        }
    }
    cells.iter().map(|c| c.trim().to_string()).collect()
}

/// Code spans and table rows, under their headings. A code span may wrap across the lines of a
/// paragraph; a line of a fenced block ending in `\` continues on the next.
fn parse_readme(text: &str) -> Readme {
    let mut snippets = Vec::new();
    let mut rows = Vec::new();
    let mut heading = String::new();
    let mut in_block = false;
    let mut header: Option<Vec<String>> = None;
    let mut paragraph = String::new();
    let mut continued = String::new();
    let flush = |paragraph: &mut String, heading: &str, snippets: &mut Vec<Snippet>| {
        for span in code_spans(paragraph) {
            snippets.push(Snippet {
                heading: heading.to_string(),
                code: span,
            });
        }
        paragraph.clear();
    };
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            flush(&mut paragraph, &heading, &mut snippets);
            in_block = !in_block;
            continue;
        }
        if in_block {
            continued.push_str(line.trim_end_matches('\\'));
            if !line.ends_with('\\') {
                snippets.push(Snippet {
                    heading: heading.clone(),
                    code: std::mem::take(&mut continued),
                });
            } else {
                continued.push(' ');
            }
            continue;
        }
        if line.starts_with('#') {
            flush(&mut paragraph, &heading, &mut snippets);
            heading = line.trim_start_matches('#').trim().to_string();
            header = None;
            continue;
        }
        if line.trim_start().starts_with('|') {
            flush(&mut paragraph, &heading, &mut snippets);
            let row = cells(line);
            if row.iter().all(|c| c.chars().all(|ch| "-: ".contains(ch))) {
                // the separator under the header
            } else if let Some(header) = &header {
                rows.push(Row {
                    heading: heading.clone(),
                    header: header.clone(),
                    cells: row,
                });
            } else {
                header = Some(row.iter().map(|c| c.to_lowercase()).collect());
            }
            for span in code_spans(line) {
                snippets.push(Snippet {
                    heading: heading.clone(),
                    code: span,
                });
            }
            continue;
        }
        header = None;
        if line.trim().is_empty() {
            flush(&mut paragraph, &heading, &mut snippets);
        } else {
            paragraph.push_str(line);
            paragraph.push(' ');
        }
    }
    flush(&mut paragraph, &heading, &mut snippets);
    Readme { snippets, rows }
}

/// One command of a snippet: its words, split at `&&`, `||`, `;` and `|`, environment
/// assignments and a `$ ` prompt dropped, comments cut.
fn commands(code: &str) -> Vec<Vec<String>> {
    let code = code.split(" #").next().unwrap_or_default();
    code.split("&&")
        .flat_map(|c| c.split("||"))
        .flat_map(|c| c.split(';'))
        .flat_map(|c| c.split('|'))
        .map(|c| {
            c.split_whitespace()
                .map(|w| w.trim_matches(|ch| "()`'\"".contains(ch)).to_string())
                .filter(|w| !w.is_empty())
                .skip_while(|w| w == "$" || w == "sudo" || is_assignment(w))
                .collect::<Vec<_>>()
        })
        .filter(|words| !words.is_empty())
        .collect()
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    })
}

/// `--flag` of a word (`--flag=value` → `--flag`), when it is one.
fn long_flag(word: &str) -> Option<String> {
    let flag = word.split('=').next().unwrap_or_default();
    let name = flag.strip_prefix("--")?;
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '*');
    ok.then(|| flag.to_string())
}

/// The subcommand a bare flag under `heading` belongs to.
fn section_sub(heading: &str) -> Sub {
    if heading.contains("strata build") {
        Sub::Build
    } else if heading.contains("strata render") {
        Sub::Render
    } else if heading.contains("strata disk-image") {
        Sub::DiskImage
    } else if heading.contains("strata boot-check") {
        Sub::BootCheck
    } else {
        Sub::Controller
    }
}

/// Every Strata flag the README names, by subcommand: (flag, where it was seen).
fn readme_flags(readme: &Readme) -> BTreeMap<Sub, BTreeSet<(String, String)>> {
    let mut found: BTreeMap<Sub, BTreeSet<(String, String)>> = BTreeMap::new();
    for snippet in &readme.snippets {
        for words in commands(&snippet.code) {
            let program = words[0].rsplit('/').next().unwrap_or_default();
            // `kubectl strata …` is the plugin: the same binary.
            let words: &[String] =
                if program == "kubectl" && words.get(1).is_some_and(|w| w == "strata") {
                    &words[1..]
                } else {
                    &words[..]
                };
            let program = words[0].rsplit('/').next().unwrap_or_default();
            let (sub, args): (Sub, &[String]) = if program == "strata" {
                match words.get(1).and_then(|w| Sub::from_word(w)) {
                    Some(sub) => (sub, &words[2..]),
                    None => (Sub::Top, &words[1..]),
                }
            } else if long_flag(&words[0]).is_some() {
                // A bare flag, or a list of them (`--metrics-tls-cert`/`--metrics-tls-key`).
                (section_sub(&snippet.heading), words)
            } else {
                continue; // another program's command: its flags are its own
            };
            for word in args {
                for part in word.split('/') {
                    if let Some(flag) = long_flag(part) {
                        found
                            .entry(sub)
                            .or_default()
                            .insert((flag, snippet.code.clone()));
                    }
                }
            }
        }
    }
    found
}

/// Whether `flag` (or, ending in `*`, some flag it prefixes) is one of `known`. clap gives every
/// subcommand `--help` and `--version`.
fn matches(flag: &str, known: &BTreeMap<String, HelpFlag>) -> bool {
    if flag == "--help" || flag == "--version" {
        return true;
    }
    match flag.strip_suffix('*') {
        Some(prefix) => known.keys().any(|k| k.starts_with(prefix)),
        None => known.contains_key(flag),
    }
}

#[test]
fn every_flag_the_readme_names_exists_and_every_flag_is_documented() {
    let readme = user_docs();
    let found = readme_flags(&readme);
    let minimum = [
        (Sub::Controller, 28),
        (Sub::Build, 11),
        (Sub::Render, 3),
        (Sub::DiskImage, 6),
        (Sub::BootCheck, 11),
        (Sub::Status, 0),
        (Sub::Logs, 2),
        (Sub::Rebuild, 0),
    ];
    let mut problems = Vec::new();
    for (sub, at_least) in minimum {
        let known = help(sub);
        assert!(
            known.len() >= at_least,
            "strata {:?} --help lists only {} flags: {known:?}",
            sub.args(),
            known.len()
        );
        let named = found.get(&sub).cloned().unwrap_or_default();
        let names: BTreeSet<&str> = named.iter().map(|(f, _)| f.as_str()).collect();
        assert!(
            names.len() >= at_least,
            "README.md and docs/ name only {} flags of strata {:?} (expected at least {at_least}): {names:?}",
            names.len(),
            sub.args()
        );
        for (flag, code) in &named {
            if !matches(flag, &known) {
                problems.push(format!(
                    "README names {flag} for `strata {}` (in `{code}`), which its --help does not list",
                    sub.args().join(" ")
                ));
            }
        }
        for flag in known.keys() {
            if !names.contains(flag.as_str()) {
                problems.push(format!(
                    "`strata {} --help` lists {flag}, which neither README.md nor docs/ documents",
                    sub.args().join(" ")
                ));
            }
        }
    }
    for sub in [Sub::Top, Sub::Crds] {
        let known = help(sub);
        for (flag, code) in found.get(&sub).cloned().unwrap_or_default() {
            if !matches(&flag, &known) {
                problems.push(format!(
                    "README names {flag} (in `{code}`), which strata does not know"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn flag_tables_give_the_env_and_default_of_help() {
    let readme = user_docs();
    let helps: BTreeMap<Sub, BTreeMap<String, HelpFlag>> =
        [Sub::Controller, Sub::Build, Sub::Render]
            .into_iter()
            .map(|s| (s, help(s)))
            .collect();
    let column = |row: &Row, name: &str| row.header.iter().position(|h| h == name);
    let unquote = |cell: &str| cell.trim().trim_matches('`').to_string();
    let mut checked = 0;
    let mut problems = Vec::new();
    for row in &readme.rows {
        let (Some(f), Some(e), Some(d)) = (
            column(row, "flag"),
            column(row, "env"),
            column(row, "default"),
        ) else {
            continue;
        };
        let (Some(flag), Some(env), Some(default)) =
            (row.cells.get(f), row.cells.get(e), row.cells.get(d))
        else {
            problems.push(format!(
                "a flag table row with too few cells: {:?}",
                row.cells
            ));
            continue;
        };
        let flag = unquote(flag);
        let sub = section_sub(&row.heading);
        let Some(help_flag) = helps.get(&sub).and_then(|h| h.get(&flag)) else {
            problems.push(format!(
                "table under '{}' lists {flag}, not a flag of strata {:?}",
                row.heading,
                sub.args()
            ));
            continue;
        };
        let env = unquote(env);
        if help_flag.env.as_deref() != Some(env.as_str()) {
            problems.push(format!(
                "{flag}: README says env {env}, --help says {:?}",
                help_flag.env
            ));
        }
        // A default cell is the value in backticks, or a dash (no default) with a remark.
        let default = default
            .trim()
            .strip_prefix('`')
            .and_then(|d| d.split('`').next())
            .map(str::to_string);
        if default != help_flag.default {
            problems.push(format!(
                "{flag}: README says default {default:?}, --help says {:?}",
                help_flag.default
            ));
        }
        checked += 1;
    }
    assert!(
        checked >= 40,
        "only {checked} flag table rows checked (controller and build tables expected)"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Targets defined in the Makefile and the files it includes.
fn make_targets() -> BTreeSet<String> {
    let mut targets = BTreeSet::new();
    for file in ["Makefile", "e2e/e2e.mk", "console-plugin/console.mk"] {
        for line in read(file).lines() {
            let Some((name, rest)) = line.split_once(':') else {
                continue;
            };
            let is_target = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !rest.starts_with('=');
            if is_target {
                targets.insert(name.to_string());
            }
        }
    }
    targets
}

#[test]
fn every_make_target_the_readme_names_exists() {
    let readme = user_docs();
    let targets = make_targets();
    assert!(
        ["demo", "test", "check", "e2e-up", "console-test", "images"]
            .iter()
            .all(|t| targets.contains(*t)),
        "the Makefiles were not read: {targets:?}"
    );
    let mut named = BTreeSet::new();
    for snippet in &readme.snippets {
        for words in commands(&snippet.code) {
            if words[0] != "make" {
                continue;
            }
            for word in &words[1..] {
                if word.starts_with('-') || word.contains('=') {
                    continue;
                }
                named.insert(word.clone());
            }
        }
    }
    assert!(
        named.len() >= 10,
        "README.md and docs/ name only {} make targets: {named:?}",
        named.len()
    );
    let missing: Vec<&String> = named.iter().filter(|t| !targets.contains(*t)).collect();
    assert!(
        missing.is_empty(),
        "README.md or docs/ name make targets that do not exist: {missing:?} (targets: {targets:?})"
    );
}

/// The short names the CRDs declare (`crds/crds.yaml`).
fn crd_short_names() -> BTreeSet<String> {
    let yaml = read("crds/crds.yaml");
    let mut names = BTreeSet::new();
    let mut in_short_names = false;
    for line in yaml.lines() {
        let t = line.trim();
        if t.starts_with("shortNames:") {
            in_short_names = true;
            if let Some(inline) = t.strip_prefix("shortNames:").map(str::trim)
                && inline.starts_with('[')
            {
                names.extend(
                    inline
                        .trim_matches(['[', ']'])
                        .split(',')
                        .map(|n| n.trim().to_string()),
                );
                in_short_names = false;
            }
        } else if in_short_names {
            match t.strip_prefix("- ") {
                Some(name) => {
                    names.insert(name.trim().to_string());
                }
                None => in_short_names = false,
            }
        }
    }
    names
}

#[test]
fn kubectl_commands_use_stratas_own_short_names() {
    let short = crd_short_names();
    assert_eq!(
        short,
        BTreeSet::from(["smosb".to_string(), "smosc".to_string()]),
        "crds/crds.yaml short names"
    );
    // OpenShift's own MachineOSConfig/MachineOSBuild answer to these on an OpenShift cluster.
    let ambiguous = [
        "mosc",
        "mosb",
        "machineosconfig",
        "machineosconfigs",
        "machineosbuild",
        "machineosbuilds",
    ];
    let readme = user_docs();
    let mut ours = 0;
    let mut problems = Vec::new();
    for snippet in &readme.snippets {
        for words in commands(&snippet.code) {
            if words[0] != "kubectl" && words[0] != "oc" {
                continue;
            }
            let verb_at = words.iter().position(|w| {
                [
                    "get", "describe", "edit", "delete", "explain", "annotate", "patch", "wait",
                ]
                .contains(&w.as_str())
            });
            let Some(verb_at) = verb_at else { continue };
            // The resource: the first word after the verb that is not a flag (nor a flag's value).
            let mut rest = words[verb_at + 1..].iter();
            let mut resource = None;
            while let Some(w) = rest.next() {
                if w == "-n" || w == "-o" || w == "-l" || w == "--namespace" {
                    rest.next();
                } else if !w.starts_with('-') {
                    resource = Some(w.clone());
                    break;
                }
            }
            let Some(resource) = resource else { continue };
            for kind in resource.split(',') {
                let kind = kind.split('/').next().unwrap_or_default();
                // `explain smosc.spec`; a fully qualified `machineosconfigs.strata.dev` is fine.
                let qualified = kind.contains(".strata.dev")
                    || kind.contains(".machineconfiguration.openshift.io");
                let base = if qualified {
                    kind
                } else {
                    kind.split('.').next().unwrap_or_default()
                };
                if ambiguous.contains(&base) {
                    problems.push(format!(
                        "`{}` names {base}: on OpenShift that is OpenShift's own kind; use smosc/smosb",
                        snippet.code
                    ));
                }
                if short.contains(base) {
                    ours += 1;
                }
            }
        }
    }
    assert!(
        ours >= 5,
        "only {ours} kubectl/oc commands in README.md and docs/ name smosc or smosb"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_parsers_see_what_they_should() {
    assert_eq!(
        commands("CARGO_TARGET_DIR=x make e2e-up && . e2e/.state/env # start"),
        vec![
            vec!["make".to_string(), "e2e-up".to_string()],
            vec![".".to_string(), "e2e/.state/env".to_string()]
        ]
    );
    assert_eq!(
        long_flag("--build-history=3").as_deref(),
        Some("--build-history")
    );
    assert_eq!(long_flag("--builder-*").as_deref(), Some("--builder-*"));
    assert_eq!(long_flag("-o"), None);
    assert_eq!(
        code_spans("a `x` b ``y `z` `` c `p\\|q`"),
        vec!["x".to_string(), "y `z`".to_string(), "p|q".to_string()]
    );
    assert_eq!(
        cells("| `--a` | `A\\|B` | `c|d` |"),
        vec![
            "`--a`".to_string(),
            "`A|B`".to_string(),
            "`c|d`".to_string()
        ]
    );
    let readme = parse_readme(
        "## `strata build`\n\n| flag | env | default |\n|---|---|---|\n| `--image` | `STRATA_IMAGE` | — |\n\nSee `--work-dir` and `strata render --output json`.\n\n## Other\n\n`--build-history`, `buildah bud --layers`\n",
    );
    let found = readme_flags(&readme);
    let names = |s: Sub| -> Vec<String> {
        found
            .get(&s)
            .map(|v| v.iter().map(|(f, _)| f.clone()).collect())
            .unwrap_or_default()
    };
    assert_eq!(names(Sub::Build), vec!["--image", "--work-dir"]);
    assert_eq!(names(Sub::Render), vec!["--output"]);
    assert_eq!(names(Sub::Controller), vec!["--build-history"]);
    assert_eq!(readme.rows.len(), 1);
    assert_eq!(readme.rows[0].header, vec!["flag", "env", "default"]);
    // Continued lines belong to their command; a span may wrap across a paragraph's lines.
    let readme = parse_readme(
        "## Other\n\n```sh\noc create secret x \\\n  --docker-server=r.example.com\n```\n\nThen `oc get smosc -o\nwide` shows it.\n",
    );
    assert!(
        readme_flags(&readme).is_empty(),
        "{:?}",
        readme_flags(&readme)
    );
    let codes: Vec<&str> = readme.snippets.iter().map(|s| s.code.as_str()).collect();
    assert_eq!(
        codes,
        vec![
            "oc create secret x    --docker-server=r.example.com",
            "oc get smosc -o wide"
        ]
    );
}
