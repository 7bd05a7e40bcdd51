#!/usr/bin/env bash
# Create or update .venv: pinned requirements, detectron2, then this package in editable mode.
# Idempotent: a fingerprint of everything that decides the result is stored in the venv, and a
# second run with the same fingerprint and a working import only checks it and returns.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY="$VENV/bin/python"
D2_SAL_SPEC="sal-detectron2==0.7.2"
STAMP="$VENV/.setup-fingerprint"

fingerprint() {
    {
        cat requirements/base.txt requirements/constraints.txt setup.py dev/setup_venv.sh
        echo "DETECTRON2_SOURCE=${DETECTRON2_SOURCE:-}"
        python3 --version
    } | sha256sum | cut -d' ' -f1
}

want=$(fingerprint)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] \
    && "$PY" -c "import detectron2, detectron2_myeloma" 2>/dev/null; then
    echo "setup: $VENV is up to date"
    exit 0
fi

echo "setup: building $VENV (torch wheels come from local disk; a first run takes a few minutes)"
[[ -x "$PY" ]] || python3 -m venv "$VENV"
"$PY" -m pip install -q --upgrade "pip>=24"
"$PY" -m pip install -q -c requirements/constraints.txt -r requirements/base.txt

site=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
if [[ -n "${DETECTRON2_SOURCE:-}" ]]; then
    # Official detectron2: a local checkout or any pip spec (git+https://..., a wheel, a sdist).
    echo "setup: installing detectron2 from DETECTRON2_SOURCE=$DETECTRON2_SOURCE"
    rm -rf "$site/detectron2" "$site"/sal_detectron2-*.dist-info
    "$PY" -m pip install -q --no-build-isolation -c requirements/constraints.txt "$DETECTRON2_SOURCE"
else
    # The only registry copy of detectron2's Python tree: a CPython 3.10 wheel whose pure-Python part
    # works on 3.11 (its compiled ops are skipped at import and detectron2 falls back).
    if ! "$PY" -m pip show -q sal-detectron2 >/dev/null 2>&1; then
        echo "setup: installing $D2_SAL_SPEC (Python tree of detectron2)"
        "$PY" -m pip install -q --no-deps --only-binary=:all: --python-version 3.10 \
            --target "$site" --upgrade "$D2_SAL_SPEC"
    fi
fi

"$PY" -m pip install -q --no-deps -e .
"$PY" -W "ignore:\`torch.jit.script\` is deprecated:FutureWarning" \
    -c "import detectron2, detectron2_myeloma; print('setup: detectron2', detectron2.__version__, 'OK')"
echo "$want" > "$STAMP"
