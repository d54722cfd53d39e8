#!/usr/bin/env bash
# The container image's dependency locks: every runtime package pinned, with hashes, for
# the image's Python (3.11, Linux), in requirements/EXTRAS.txt. The Dockerfile builds from
# them (`--build-arg EXTRAS=fast` or `fast,capture`), so two builds ship the same packages.
#
#   scripts/lock.sh            rewrite the locks after a pyproject.toml change (pins kept)
#   scripts/lock.sh --upgrade  move every pin to the newest version allowed
#   scripts/lock.sh --check    exit 1 when a lock does not match pyproject.toml (CI)
#
# uv (from the dev extra) resolves; an existing lock's pins are kept as preferences, so a
# lock that is current compiles to itself byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."

UV="${UV:-.venv/bin/uv}"
PYTHON_VERSION=3.11  # the Dockerfile's PYTHON_IMAGE
PLATFORM=x86_64-manylinux_2_28
LOCKS=(fast fast,capture)

mode=write
case "${1:-}" in
  --check) mode=check ;;
  --upgrade) mode=upgrade ;;
  "") ;;
  *) echo "usage: scripts/lock.sh [--check|--upgrade]" >&2; exit 2 ;;
esac

compile() { # compile EXTRAS OUTPUT [uv options]
  local extras="$1" out="$2"
  shift 2
  local args=()
  for extra in ${extras//,/ }; do args+=(--extra "$extra"); done
  "$UV" pip compile --quiet pyproject.toml "${args[@]}" \
    --python-version "$PYTHON_VERSION" --python-platform "$PLATFORM" \
    --generate-hashes --no-emit-index-url --custom-compile-command "scripts/lock.sh" \
    --output-file "$out" "$@"
}

stale=0
for extras in "${LOCKS[@]}"; do
  lock="requirements/${extras//,/-}.txt"
  case "$mode" in
    write) compile "$extras" "$lock" ;;
    upgrade) compile "$extras" "$lock" --upgrade ;;
    check)
      scratch="$(mktemp)"
      cp "$lock" "$scratch" 2>/dev/null || : >"$scratch"
      compile "$extras" "$scratch"
      if ! cmp -s "$lock" "$scratch"; then
        echo "lock.sh: $lock is not current with pyproject.toml: run scripts/lock.sh" >&2
        diff -u "$lock" "$scratch" >&2 || true
        stale=1
      fi
      rm -f "$scratch"
      ;;
  esac
done
exit "$stale"
