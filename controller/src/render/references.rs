//! Every image a Containerfile names, resolved the way buildah resolves it: `FROM` with the global
//! `ARG`s, `COPY/ADD --from=` and `RUN --mount=…,from=` with the stage's own `ARG`s (a stage
//! `ARG X` without a value takes the global default), quotes and escapes removed first. The pull
//! step fetches exactly these with the pull credentials; the build step runs with `--pull=never`,
//! so an image this finds differently from buildah would be one nobody vetted. What cannot be
//! told (an `ENV` or base-image variable, an `ARG` without a value, an `ONBUILD` trigger that
//! names an image) is refused with its line, and so is a short name or a local image ID, which the
//! build step would resolve against its own storage.

use super::FragmentError;
use super::containerfile::{self, Instruction};
use super::words::{self, ExpandError, Value};

/// The platform arguments buildah sets for the amd64 builds Strata runs.
const PLATFORM_ARGS: [(&str, &str); 8] = [
    ("TARGETPLATFORM", "linux/amd64"),
    ("TARGETOS", "linux"),
    ("TARGETARCH", "amd64"),
    ("TARGETVARIANT", ""),
    ("BUILDPLATFORM", "linux/amd64"),
    ("BUILDOS", "linux"),
    ("BUILDARCH", "amd64"),
    ("BUILDVARIANT", ""),
];

/// Every image `containerfile` names, in order, once each, without stages or `scratch`. Errors
/// carry the Containerfile's line.
pub fn images_named(containerfile: &str) -> Result<Vec<String>, FragmentError> {
    let parsed = containerfile::parse(containerfile)?;
    let mut resolver = Resolver {
        escape: parsed.escape,
        global: Vec::new(),
        stage: Vec::new(),
        stages: Vec::new(),
        images: Vec::new(),
    };
    for instruction in &parsed.instructions {
        resolver.instruction(instruction)?;
    }
    Ok(resolver.images)
}

struct Resolver {
    escape: char,
    /// `ARG`s before the first `FROM`, in order (a later one wins).
    global: Vec<(String, Value)>,
    /// The current stage's `ARG`s and `ENV`s, in order.
    stage: Vec<(String, Value)>,
    /// Stage names so far, lower-cased ("" for a stage without a name).
    stages: Vec<String>,
    images: Vec<String>,
}

fn last(vars: &[(String, Value)], name: &str) -> Option<Value> {
    vars.iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

fn platform(name: &str) -> Option<Value> {
    PLATFORM_ARGS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| Value::Set((*v).to_string()))
}

impl Resolver {
    fn global_value(&self, name: &str) -> Value {
        last(&self.global, name)
            .or_else(|| platform(name))
            .unwrap_or(Value::Unknown)
    }

    fn stage_value(&self, name: &str) -> Value {
        last(&self.stage, name).unwrap_or(Value::Unknown)
    }

    /// `name`'s value among the global `ARG`s or the stage's.
    fn value(&self, name: &str, global: bool) -> Value {
        if global {
            self.global_value(name)
        } else {
            self.stage_value(name)
        }
    }

    fn in_stage(&self) -> bool {
        !self.stages.is_empty()
    }

    fn instruction(&mut self, instruction: &Instruction) -> Result<(), FragmentError> {
        let line = instruction.line;
        let (flags, rest) = words::leading_flags(&instruction.args);
        match instruction.keyword.as_str() {
            "ARG" => self.arg(rest),
            "ENV" if self.in_stage() => self.env(rest),
            "FROM" => return self.from(line, rest),
            "COPY" | "ADD" => {
                for flag in &flags {
                    if let Some(from) = flag.strip_prefix("--from=") {
                        self.reference(line, "--from", from)?;
                    }
                }
            }
            "RUN" => {
                for from in mount_sources(&flags) {
                    self.reference(line, "--mount from", from)?;
                }
            }
            "ONBUILD" => return self.onbuild(line, &instruction.args),
            _ => {}
        }
        Ok(())
    }

    /// `ARG NAME[=default] …`: a default is expanded with what is declared so far; in a stage,
    /// `ARG NAME` alone takes the global default.
    fn arg(&mut self, args: &str) {
        for word in words::raw_words(args, self.escape) {
            let (name, value) = match word.split_once('=') {
                Some((name, default)) => {
                    let global = !self.in_stage();
                    let value = words::expand(default, self.escape, &|n| self.value(n, global))
                        .map_or(Value::Unknown, Value::Set);
                    (name, value)
                }
                None if self.in_stage() => {
                    let value = match self.global_value(word) {
                        Value::Unknown => Value::Unset,
                        known => known,
                    };
                    (word, value)
                }
                None => (word, platform(word).unwrap_or(Value::Unset)),
            };
            let vars = if self.in_stage() {
                &mut self.stage
            } else {
                &mut self.global
            };
            vars.push((name.to_string(), value));
        }
    }

    /// `ENV`: its variables' values are not told apart from the image's; a reference using one
    /// is refused.
    fn env(&mut self, args: &str) {
        let raw = words::raw_words(args, self.escape);
        let names: Vec<&str> = if raw.first().is_some_and(|w| w.contains('=')) {
            raw.iter()
                .filter_map(|w| w.split_once('='))
                .map(|(n, _)| n)
                .collect()
        } else {
            raw.first().copied().into_iter().collect()
        };
        for name in names {
            self.stage.push((name.to_string(), Value::Unknown));
        }
    }

    fn from(&mut self, line: usize, rest: &str) -> Result<(), FragmentError> {
        let raw = words::raw_words(rest, self.escape);
        let Some(word) = raw.first() else {
            return Err(FragmentError::new(line, "FROM names no image"));
        };
        let image = self.resolve(line, &format!("FROM {word}"), word, true)?;
        let lowered = image.to_ascii_lowercase();
        if !self.stages.contains(&lowered) && lowered != "scratch" {
            self.add(line, image)?;
        }
        let name = match (raw.get(1), raw.get(2)) {
            (Some(kw), Some(name)) if kw.eq_ignore_ascii_case("as") => name.to_ascii_lowercase(),
            _ => String::new(),
        };
        self.stages.push(name);
        self.stage.clear();
        Ok(())
    }

    /// `raw` expanded with the global `ARG`s (a `FROM`) or the stage's; `what` is how the
    /// instruction names it in an error.
    fn resolve(
        &self,
        line: usize,
        what: &str,
        raw: &str,
        global: bool,
    ) -> Result<String, FragmentError> {
        let value = words::expand(raw, self.escape, &|n| self.value(n, global))
            .map_err(|e| cannot_tell(line, what, &e, global))?;
        if value.is_empty() {
            return Err(FragmentError::new(line, format!("'{what}' names nothing")));
        }
        Ok(value)
    }

    /// A `--from` or mount `from`: an earlier stage (by name or index) or an image.
    fn reference(&mut self, line: usize, what: &str, raw: &str) -> Result<(), FragmentError> {
        let from = self.resolve(line, &format!("{what}={raw}"), raw, false)?;
        let lowered = from.to_ascii_lowercase();
        if let Ok(index) = from.parse::<usize>() {
            // The stage in progress is counted in `stages`: only earlier ones can be named.
            if index + 1 < self.stages.len() {
                return Ok(());
            }
            return Err(FragmentError::new(
                line,
                format!("{what}={raw} names no earlier stage (stages are counted from 0)"),
            ));
        }
        if !self.stages.contains(&lowered) {
            self.add(line, from)?;
        }
        Ok(())
    }

    /// A trigger runs when some later build starts `FROM` this image, where Strata's pull step
    /// never sees it: one that names an image or stage is refused.
    fn onbuild(&self, line: usize, trigger: &str) -> Result<(), FragmentError> {
        match trigger_naming_image(trigger) {
            Some(keyword) => Err(FragmentError::new(
                line,
                format!(
                    "ONBUILD {keyword} names an image or stage ('{trigger}'): the trigger would run in a later build whose pull step cannot vet it; write the step without ONBUILD"
                ),
            )),
            None => Ok(()),
        }
    }

    /// Records an image; a short name or a local image ID is refused: the build step would look
    /// it up in its storage (by name, or by ID prefix) rather than where the pull step fetched it.
    fn add(&mut self, line: usize, image: String) -> Result<(), FragmentError> {
        if !is_qualified(&image) {
            return Err(FragmentError::new(
                line,
                format!(
                    "'{image}' is not a fully qualified image reference: name its registry (for example quay.io/org/image:tag); short names and local image IDs are not pulled"
                ),
            ));
        }
        if !self.images.contains(&image) {
            self.images.push(image);
        }
        Ok(())
    }
}

/// `host[:port]/path…`: the first component names a registry (a dot, a numeric port, or
/// `localhost`), as containers/image tells a domain from a Docker Hub path.
fn is_qualified(image: &str) -> bool {
    let Some((first, _)) = image.split_once('/') else {
        return false;
    };
    let (host, port) = first.split_once(':').unwrap_or((first, ""));
    let port_ok = port.is_empty() || port.chars().all(|c| c.is_ascii_digit());
    !host.is_empty() && port_ok && (host.contains('.') || host == "localhost" || !port.is_empty())
}

/// The instruction keyword of an `ONBUILD` trigger (`COPY …`, as an image's config records it)
/// when it names an image or stage (`COPY/ADD --from=`, `RUN --mount=…,from=`).
pub fn trigger_naming_image(trigger: &str) -> Option<String> {
    let trigger = trigger.trim();
    let (keyword, args) = trigger
        .split_once(char::is_whitespace)
        .unwrap_or((trigger, ""));
    let (flags, _) = words::leading_flags(args);
    let keyword = keyword.to_ascii_uppercase();
    let names = match keyword.as_str() {
        "COPY" | "ADD" => flags.iter().any(|f| f.starts_with("--from=")),
        "RUN" => !mount_sources(&flags).is_empty(),
        _ => false,
    };
    names.then_some(keyword)
}

/// The `from=` values of a `RUN`'s `--mount` flags (keys compared without case: any spelling
/// buildah might take is vetted).
fn mount_sources(flags: &[String]) -> Vec<&str> {
    flags
        .iter()
        .filter_map(|f| f.strip_prefix("--mount="))
        .flat_map(|spec| spec.split(','))
        .filter_map(|field| field.split_once('='))
        .filter(|(key, _)| key.trim().eq_ignore_ascii_case("from"))
        .map(|(_, value)| value)
        .collect()
}

fn cannot_tell(line: usize, what: &str, error: &ExpandError, global: bool) -> FragmentError {
    let why = match error {
        ExpandError::Unknown(name) if global => format!(
            "${name} has no value Strata can tell: give it a default in an ARG before the first FROM"
        ),
        ExpandError::Unknown(name) => format!(
            "${name} has no value Strata can tell: give it a default in an ARG of this stage (or an ARG {name} here with a global default); ENV and the base image's variables are not used"
        ),
        ExpandError::Syntax(message) => message.clone(),
    };
    FragmentError::new(
        line,
        format!("cannot tell which image '{what}' names: {why}"),
    )
}

#[cfg(test)]
mod tests;
