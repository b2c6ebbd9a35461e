use super::*;

const BASE: &str =
    "r.example.com/os@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const OTHER: &str = "r.example.com/other-pool@sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn images(text: &str) -> Vec<String> {
    match images_named(text) {
        Ok(images) => images,
        Err(e) => panic!("{e}\n{text}"),
    }
}

fn refused(text: &str) -> FragmentError {
    match images_named(text) {
        Ok(images) => panic!("accepted, naming {images:?}:\n{text}"),
        Err(e) => e,
    }
}

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
        images(&containerfile),
        vec![
            BASE.to_string(),
            "quay.io/tools/go:1.22".into(),
            "registry.example.com/extra/files:1".into(),
            "quay.io/helpers/bin:2".into(),
        ]
    );
}

#[test]
fn a_stage_arg_is_the_value_buildah_uses() {
    // The attack of issue 32: the global X is the vetted base, the stage's X another image.
    let text =
        format!("ARG X={BASE}\nFROM {BASE} AS base\nARG X={OTHER}\nCOPY --from=$X /loot /loot\n");
    assert_eq!(images(&text), vec![BASE.to_string(), OTHER.to_string()]);
    // Within a stage, a later ARG wins from its line on.
    let text = format!(
        "FROM {BASE}\nARG X=quay.io/a:1\nCOPY --from=$X /a /a\nARG X=quay.io/b:1\nRUN --mount=from=${{X}},target=/b true\n"
    );
    assert_eq!(
        images(&text),
        vec![BASE.to_string(), "quay.io/a:1".into(), "quay.io/b:1".into()]
    );
}

#[test]
fn a_stage_arg_without_value_takes_the_global_default_and_stages_do_not_share_args() {
    let text = format!(
        "ARG TOOL=quay.io/tool:1\nFROM {BASE} AS one\nARG TOOL\nCOPY --from=$TOOL /t /t\nFROM {BASE}\nARG LOCAL=quay.io/local:1\nFROM {BASE}\nARG LOCAL\nCOPY --from=${{LOCAL:-quay.io/fallback:1}} /l /l\n"
    );
    assert_eq!(
        images(&text),
        vec![
            BASE.to_string(),
            "quay.io/tool:1".into(),
            "quay.io/fallback:1".into()
        ]
    );
    // A global ARG not declared in the stage is not in scope there (buildah expands it to
    // nothing): refused rather than guessed.
    let err = refused(&format!(
        "ARG TOOL=quay.io/tool:1\nFROM {BASE}\nCOPY --from=$TOOL /t /t\n"
    ));
    assert_eq!(err.line, 3);
    assert!(err.message.contains("$TOOL has no value"), "{err}");
}

#[test]
fn quotes_and_escapes_are_removed_before_the_flag_is_read() {
    let text = format!(
        "FROM {BASE}\nRUN --mount=type=bind,\"from={OTHER}\",target=/o true\nCOPY \"--from=quay.io/q:1\" /q /q\nCOPY --from='quay.io/s:1' /s /s\nRUN --mount=type=bind,FROM=quay.io/upper:1,target=/u true\n"
    );
    // A quoted "--from=…" is a source path, not a flag (moby reads flags from the raw text).
    assert_eq!(
        images(&text),
        vec![
            BASE.to_string(),
            OTHER.to_string(),
            "quay.io/s:1".into(),
            "quay.io/upper:1".into()
        ]
    );
    // With the escape directive, the flag's value is expanded with backtick escapes.
    let text = format!(
        "# escape=`\nFROM {BASE}\nARG V=2\nCOPY --from=quay.io/x:`$V /x /x\nCOPY --from=quay.io/y:$V /y /y\n"
    );
    assert_eq!(
        images(&text),
        vec![
            BASE.to_string(),
            "quay.io/x:$V".into(),
            "quay.io/y:2".into()
        ]
    );
}

#[test]
fn heredoc_bodies_are_data_but_their_instruction_is_read() {
    let text = format!(
        "FROM {BASE}\nRUN --mount=from=quay.io/h:1,target=/h <<EOF\nCOPY --from={OTHER} / /loot\nFROM {OTHER}\nEOF\n"
    );
    assert_eq!(images(&text), vec![BASE.to_string(), "quay.io/h:1".into()]);
}

#[test]
fn what_cannot_be_told_is_refused_with_its_line() {
    let cases = [
        (
            format!("ARG IMG\nFROM {BASE} AS base\nFROM $IMG\n"),
            3,
            "give it a default in an ARG before the first FROM",
        ),
        (
            format!("FROM {BASE}\nENV X={OTHER}\nCOPY --from=$X / /x\n"),
            3,
            "ENV and the base image's variables",
        ),
        (
            format!("FROM {BASE}\nARG X=quay.io/a:1\nENV X={OTHER}\nCOPY --from=$X / /x\n"),
            4,
            "$X has no value",
        ),
        (
            format!("FROM {BASE}\nCOPY --from=$PATH / /x\n"),
            2,
            "$PATH has no value",
        ),
        (
            format!("FROM {BASE}\nARG X\nCOPY --from=$X / /x\n"),
            3,
            "$X has no value",
        ),
        (
            format!("FROM {BASE}\nCOPY --from=${{X#a}} / /x\n"),
            2,
            "only ${NAME:-word}",
        ),
        (
            format!("FROM {BASE}\nCOPY --from=1 / /x\n"),
            2,
            "names no earlier stage",
        ),
        (
            format!("FROM {BASE}\nCOPY --from=\"\" / /x\n"),
            2,
            "names nothing",
        ),
        (
            format!("FROM {BASE}\nONBUILD COPY --from={OTHER} / /x\n"),
            2,
            "ONBUILD COPY names an image",
        ),
        (
            format!("FROM {BASE}\nCOPY --from=fedora:40 / /x\n"),
            2,
            "not a fully qualified",
        ),
        (
            format!("FROM {BASE}\nCOPY --from=74d76ddc3b7d / /x\n"),
            2,
            "local image IDs",
        ),
        (
            format!("FROM {BASE}\nCOPY --from=sha256:74d76ddc3b7d / /x\n"),
            2,
            "not a fully qualified",
        ),
        (
            "ARG X=library/busybox\nFROM $X\n".to_string(),
            2,
            "not a fully qualified",
        ),
        (
            format!("FROM {BASE}\nonbuild run --mount=type=bind,from=x,target=/x true\n"),
            2,
            "ONBUILD RUN names",
        ),
    ];
    for (text, line, words) in cases {
        let err = refused(&text);
        assert_eq!(err.line, line, "{err}\n{text}");
        assert!(err.message.contains(words), "{err}\n{text}");
    }
    // An ONBUILD that names nothing stays allowed.
    assert_eq!(
        images(&format!("FROM {BASE}\nONBUILD RUN echo hi\n")),
        vec![BASE.to_string()]
    );
}

#[test]
fn a_registry_is_a_dot_a_port_or_localhost() {
    assert_eq!(
        images("FROM localhost/a:1\nFROM localhost:5000/b\nFROM registry:5000/c\n"),
        vec![
            "localhost/a:1".to_string(),
            "localhost:5000/b".into(),
            "registry:5000/c".into()
        ]
    );
}

#[test]
fn platform_arguments_have_the_amd64_values() {
    let text = "ARG TARGETARCH\nFROM quay.io/tool-${TARGETARCH}:1\nARG TARGETOS\nCOPY --from=quay.io/x-$TARGETOS:1 / /x\n";
    assert_eq!(
        images(text),
        vec![
            "quay.io/tool-amd64:1".to_string(),
            "quay.io/x-linux:1".into()
        ]
    );
}

#[test]
fn a_stage_name_written_in_capitals_is_a_stage() {
    assert_eq!(
        images(&format!(
            "FROM {BASE} AS Base\nFROM BASE\nCOPY --from=BaSe / /\n"
        )),
        vec![BASE.to_string()]
    );
}
