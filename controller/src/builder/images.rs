//! The images a Containerfile names: the pull step fetches exactly these (with the pull
//! credentials) so that the build step can run with `--pull=never` and no credential at all.

use crate::render::parse;

/// Every image the Containerfile names in `FROM`, `RUN --mount=…,from=` and `COPY/ADD --from=`,
/// in order, without stage names or `scratch`. Global `ARG`s (before the first `FROM`) with
/// defaults are substituted; an image that still depends on an argument is an error, since the
/// build step could not fetch it.
pub fn images_to_pull(containerfile: &str) -> Result<Vec<String>, String> {
    let parsed = parse(containerfile).map_err(|e| e.to_string())?;
    let mut args: Vec<(String, String)> = Vec::new();
    let mut stages: Vec<String> = Vec::new();
    let mut images: Vec<String> = Vec::new();
    let mut seen_from = false;
    let add = |image: String, images: &mut Vec<String>| {
        if !images.contains(&image) {
            images.push(image);
        }
    };
    for instruction in &parsed.instructions {
        let line = instruction.line;
        let words: Vec<&str> = instruction.args.split_whitespace().collect();
        let options = || words.iter().take_while(|w| w.starts_with("--"));
        match instruction.keyword.as_str() {
            "ARG" if !seen_from => {
                for word in &words {
                    if let Some((name, value)) = word.split_once('=') {
                        args.push((
                            name.to_string(),
                            value.trim_matches(['"', '\'']).to_string(),
                        ));
                    }
                }
            }
            "FROM" => {
                seen_from = true;
                let mut rest = words.iter().skip_while(|w| w.starts_with("--"));
                let Some(image) = rest.next() else {
                    return Err(format!("line {line}: FROM names no image"));
                };
                let image = substitute(image, &args)
                    .ok_or_else(|| format!("line {line}: cannot tell which image 'FROM {image}' names: give its ARG a default before the first FROM"))?;
                if let (Some(kw), Some(name)) = (rest.next(), rest.next())
                    && kw.eq_ignore_ascii_case("as")
                {
                    stages.push(name.to_ascii_lowercase());
                }
                let is_stage = stages[..stages.len().saturating_sub(usize::from(
                    words.iter().any(|w| w.eq_ignore_ascii_case("as")),
                ))]
                    .contains(&image.to_ascii_lowercase());
                if !is_stage && !image.eq_ignore_ascii_case("scratch") {
                    add(image, &mut images);
                }
            }
            "RUN" => {
                for option in options() {
                    let Some(mount) = option.strip_prefix("--mount=") else {
                        continue;
                    };
                    for field in mount.split(',') {
                        if let Some(from) = field.strip_prefix("from=") {
                            push_unless_stage(from, &stages, &args, line, &mut images)?;
                        }
                    }
                }
            }
            "COPY" | "ADD" => {
                for option in options() {
                    if let Some(from) = option.strip_prefix("--from=") {
                        push_unless_stage(from, &stages, &args, line, &mut images)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(images)
}

fn push_unless_stage(
    from: &str,
    stages: &[String],
    args: &[(String, String)],
    line: usize,
    images: &mut Vec<String>,
) -> Result<(), String> {
    let from = from.trim_matches(['"', '\'']);
    if stages.contains(&from.to_ascii_lowercase()) || from.parse::<usize>().is_ok() {
        return Ok(());
    }
    let image = substitute(from, args).ok_or_else(|| {
        format!("line {line}: cannot tell which image 'from={from}' names: give its ARG a default before the first FROM")
    })?;
    if !images.contains(&image) {
        images.push(image);
    }
    Ok(())
}

/// `$NAME` and `${NAME}` replaced by the global ARGs' defaults; None when one has none.
fn substitute(word: &str, args: &[(String, String)]) -> Option<String> {
    let mut out = String::new();
    let mut rest = word;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let (name, tail) = if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}')?;
            (&inner[..end], &inner[end + 1..])
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        let value = args.iter().rev().find(|(n, _)| n == name)?;
        out.push_str(&value.1);
        rest = tail;
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str =
        "r.example.com/os@sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn every_image_named_is_found_once_and_stages_are_not() {
        let containerfile = format!(
            "ARG TOOLS=quay.io/tools/go:1.22\n\
             FROM {BASE} AS base\n\
             FROM base AS configs\n\
             FROM ${{TOOLS}} AS build\n\
             RUN --mount=type=cache,target=/root/.cache go build ./...\n\
             FROM base\n\
             COPY --from=build /out/tool /usr/bin/tool\n\
             COPY --from=registry.example.com/extra/files:1 /etc/x /etc/x\n\
             RUN --mount=type=bind,from=quay.io/helpers/bin:2,source=/b,target=/h /h/run\n\
             RUN --mount=type=bind,from=build,source=/out,target=/o true\n\
             COPY --from=0 /a /a\n\
             FROM scratch AS empty\n"
        );
        assert_eq!(
            images_to_pull(&containerfile).unwrap(),
            vec![
                BASE.to_string(),
                "quay.io/tools/go:1.22".into(),
                "registry.example.com/extra/files:1".into(),
                "quay.io/helpers/bin:2".into(),
            ]
        );
    }

    #[test]
    fn an_image_hidden_behind_an_argument_without_default_is_an_error() {
        let err =
            images_to_pull(&format!("ARG IMG\nFROM {BASE} AS base\nFROM $IMG\n")).unwrap_err();
        assert!(err.starts_with("line 3:"), "{err}");
        // A stage name that shadows nothing is a stage, even written in capitals.
        let ok = images_to_pull(&format!("FROM {BASE} AS Base\nFROM BASE\n")).unwrap();
        assert_eq!(ok, vec![BASE.to_string()]);
    }
}
