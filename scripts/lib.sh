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

need_cargo() {
    command -v cargo >/dev/null || { echo "cargo is required: install Rust from rustup.rs" >&2; exit 1; }
}
