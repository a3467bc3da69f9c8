#!/bin/sh
# Entrypoint of the wasmgate image: installs the default guard and agent into the components
# folder the first time, then runs the command (`wasmgate serve` by default).
#
# The components folder is usually a bind mount of ./deploy/components, so that dropping a
# .wasm into ./deploy/components/guards/ on the host deploys it without a restart. The defaults
# are copied once: a marker file records it, so a guard you delete stays deleted.
set -eu

dir="${WASMGATE_COMPONENTS:-/srv/components}"
defaults="${WASMGATE_DEFAULT_COMPONENTS:-/usr/share/wasmgate/components}"
marker="$dir/.defaults-installed"

fail() {
  echo "wasmgate-entrypoint: $*" >&2
  echo "wasmgate-entrypoint: the container runs as uid $(id -u), gid $(id -g); set WASMGATE_UID and WASMGATE_GID in .env to the owner of the folder mounted at $dir (on Linux: id -u; id -g), or make the folder writable for that user." >&2
  exit 1
}

if [ -d "$defaults" ] && [ ! -e "$marker" ]; then
  for kind in guards agents; do
    mkdir -p "$dir/$kind" 2>/dev/null || fail "cannot create $dir/$kind"
    for src in "$defaults/$kind"/*.wasm; do
      [ -e "$src" ] || continue
      dst="$dir/$kind/$(basename "$src")"
      if [ ! -e "$dst" ]; then
        # Hidden temporary name, then rename: the watcher never sees a half-written file.
        tmp="$dir/$kind/.$(basename "$src").tmp"
        cp "$src" "$tmp" 2>/dev/null || fail "cannot write to $dir/$kind"
        mv "$tmp" "$dst"
        echo "wasmgate-entrypoint: installed default $kind/$(basename "$src")" >&2
      fi
    done
  done
  date -u +%Y-%m-%dT%H:%M:%SZ > "$marker" 2>/dev/null || fail "cannot write $marker"
fi

exec "$@"
