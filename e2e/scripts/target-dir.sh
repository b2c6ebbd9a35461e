#!/usr/bin/env bash
# Prints cargo's target dir for this checkout: outside the clone, one per checkout path.
# Sharing one target dir between checkouts is wrong: cargo keeps an artifact whose sources look
# unchanged by mtime, so a test binary could carry another checkout's env!("CARGO_MANIFEST_DIR")
# and include_str! contents. Per path, a clone made at the same place (CI) stays warm.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
echo "${XDG_CACHE_HOME:-$HOME/.cache}/strata/targets/$(printf %s "$ROOT" | sha256sum | cut -c1-12)"
