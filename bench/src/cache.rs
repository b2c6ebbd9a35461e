//! Item 3: `strata build` on the host, each build with a fresh buildah storage root (a new pod):
//! a cold build with the registry cache on (an empty cache repository), a rebuild that changes only
//! the last step with the same cache repository, and the same rebuild without a cache (what the
//! MCO does on every retry and change).

use anyhow::Result;

use crate::host;

/// Steps of the fragment; each costs some CPU and writes a layer, like a package install would.
pub const STEPS: usize = 4;

/// The fragment: `STEPS - 1` costly steps, then a cheap last one carrying `last`.
pub fn fragment(last: &str) -> String {
    let mut text = String::new();
    for i in 1..STEPS {
        // ~1-2 s of shell arithmetic plus 16 MiB written: a stand-in for `dnf install`.
        text.push_str(&format!(
            "RUN i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; mkdir -p /usr/lib/bench && head -c 16777216 /dev/urandom > /usr/lib/bench/step-{i}.bin\n"
        ));
    }
    text.push_str(&format!("RUN echo '{last}' > /etc/strata-bench-last\n"));
    text
}

/// The rendered Containerfile of a MachineOSConfig with `fragment`, as the controller makes it.
pub async fn render(strata: &str, base: &str, registry: &str, fragment: &str) -> Result<String> {
    let mosc = serde_json::json!({
        "apiVersion": "strata.dev/v1alpha1",
        "kind": "MachineOSConfig",
        "metadata": {"name": "bench-cache"},
        "spec": {
            "machineConfigPool": {"name": "bench-cache"},
            "imageBuilder": {"imageBuilderType": "Job"},
            "renderedImagePushSecret": {"name": "bench-push"},
            "renderedImagePushSpec": format!("{registry}/bench/cache:latest"),
            "containerFile": [{"containerfileArch": "NoArch", "content": fragment}],
        },
    });
    let dir = host::work_dir();
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("bench-cache.json");
    std::fs::write(&file, mosc.to_string())?;
    let file_s = file.display().to_string();
    host::run(
        strata,
        &["render", "-f", &file_s, "--base-image", base],
        &[],
    )
    .await
}

pub struct CacheRun {
    pub cold: f64,
    pub cached_rebuild: f64,
    pub uncached_rebuild: f64,
}

pub async fn run(strata: &str, base: &str, registry: &str, nonce: &str) -> Result<CacheRun> {
    let cache_repo = format!("{registry}/bench/cache-{nonce}");
    let image = |tag: &str| format!("{registry}/bench/cache:{tag}-{nonce}");
    let first = render(strata, base, registry, &fragment(&format!("first {nonce}"))).await?;
    let second = render(
        strata,
        base,
        registry,
        &fragment(&format!("second {nonce}")),
    )
    .await?;
    let third = render(strata, base, registry, &fragment(&format!("third {nonce}"))).await?;
    let (cold, _) = host::strata_build(
        strata,
        "cache",
        &first,
        &image("cold"),
        registry,
        Some(&cache_repo),
    )
    .await?;
    let (cached_rebuild, _) = host::strata_build(
        strata,
        "cache",
        &second,
        &image("rebuild"),
        registry,
        Some(&cache_repo),
    )
    .await?;
    let (uncached_rebuild, _) =
        host::strata_build(strata, "cache", &third, &image("nocache"), registry, None).await?;
    Ok(CacheRun {
        cold,
        cached_rebuild,
        uncached_rebuild,
    })
}
