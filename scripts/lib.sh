# Shared by the scripts in this folder: sourced, not run.

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# In CI the clone is fresh each run; keep build artefacts outside it so runs share them.
if [ -n "${CI:-}" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
    export CARGO_TARGET_DIR=/var/tmp/agent-registry-target
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# apt_install PKG... installs the Debian packages that are missing, updating the index once.
apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# wait_for URL waits up to 10 s for anything to answer HTTP at URL; fails, saying so, if not.
wait_for() {
    for _ in $(seq 100); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "nothing answered at $1 within 10 s" >&2
    return 1
}

need_cargo() {
    command -v cargo >/dev/null || { echo "cargo is required: install Rust from rustup.rs" >&2; exit 1; }
}

# bench_push_image URL REPO DIR [CURL-ARG...] pushes a one-layer image (4 KiB of random bytes)
# as REPO:v1, with DIR for its files and the curl arguments (credentials) on every request.
bench_push_image() {
    local url="$1" repo="$2" dir="$3"
    shift 3
    local blob digest config layer
    printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$dir/config"
    head -c 4096 /dev/urandom >"$dir/layer"
    for blob in config layer; do
        digest="sha256:$(sha256sum "$dir/$blob" | cut -d' ' -f1)"
        curl -fs "$@" -X POST --data-binary "@$dir/$blob" "$url/v2/$repo/blobs/uploads/?digest=$digest" >/dev/null
        printf -v "$blob" '%s' "$digest"
    done
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":4096}]}' \
        "$config" "$(stat -c %s "$dir/config")" "$layer" >"$dir/manifest"
    curl -fs "$@" -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
        --data-binary "@$dir/manifest" "$url/v2/$repo/manifests/v1" >/dev/null
}

# manifest_rps URL REPO CONNECTIONS SECONDS [HEADER...] prints the requests/s wrk reaches on
# GET URL/v2/REPO/manifests/v1, and fails on any non-2xx answer.
manifest_rps() {
    local url="$1" repo="$2" conns="$3" secs="$4"
    shift 4
    local args=(-t2 -c"$conns" -d"${secs}s" -H 'Accept: application/vnd.oci.image.manifest.v1+json')
    for h in "$@"; do args+=(-H "$h"); done
    wrk "${args[@]}" "$url/v2/$repo/manifests/v1" | python3 -c '
import re, sys
text = sys.stdin.read()
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errors: sys.exit("non-2xx responses: " + errors.group(1))
print(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))'
}
