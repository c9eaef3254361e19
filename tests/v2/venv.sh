# shellcheck shell=bash
# Sourced by tests/v2/run.sh and tests/v2/mlserver_bench.sh: cached Python venvs under
# target/v2-venv/. `ensure_venv NAME REQUIREMENTS` creates target/v2-venv/NAME from the pinned
# REQUIREMENTS file, or reuses it when its stamp (the sha256 of that file and the Python version)
# still matches; a changed requirements file or Python recreates it from scratch. Prints the
# venv's path on stdout (progress goes to stderr).

V2_VENV_ROOT="${V2_VENV_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/target/v2-venv}"
V2_PYTHON="${V2_PYTHON:-python3}"

ensure_venv() {
    local name=$1 requirements=$2
    local dir="$V2_VENV_ROOT/$name"
    local stamp want
    want="$(sha256sum "$requirements" | cut -d' ' -f1) $("$V2_PYTHON" -c 'import sys; print(sys.version.split()[0])')"
    stamp="$dir/.requirements.sha256"
    if [[ -x "$dir/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        echo "venv $name: up to date ($dir)" >&2
    else
        echo "venv $name: creating $dir from $requirements (takes a minute or two)" >&2
        local started=$SECONDS
        rm -rf "$dir" && mkdir -p "$V2_VENV_ROOT" || return 1
        "$V2_PYTHON" -m venv "$dir" || return 1
        # The stamp is written only after a complete install, so a failed one is redone.
        "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2 ||
            return 1
        echo "$want" >"$stamp" || return 1
        echo "venv $name: ready in $((SECONDS - started)) s" >&2
    fi
    printf '%s\n' "$dir"
}
