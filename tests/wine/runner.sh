#!/usr/bin/env bash
# Cargo runner for x86_64-pc-windows-gnu: runs a Windows test binary under Wine in the harness
# prefix (see setup.sh, which this calls when the prefix is not ready yet).
#
#   CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=tests/wine/runner.sh \
#       cargo test -p supervisor --target x86_64-pc-windows-gnu
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
prefix="${CARGO_TARGET_DIR:-$root/target}/wine/prefix"

if [[ ! -f "$prefix/.harness-ready" || ! -f "$prefix/drive_c/windows/system32/bcryptprimitives.dll" ]]; then
    "$here/setup.sh" >/dev/null
fi

export WINEPREFIX="$prefix" WINEDEBUG=-all DISPLAY= WAYLAND_DISPLAY= WINEDLLOVERRIDES="mscoree,mshtml="
if command -v wine >/dev/null 2>&1; then
    exec wine "$@"
fi
exec wine64 "$@"
