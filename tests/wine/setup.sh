#!/usr/bin/env bash
# Prepares the Wine prefix the Windows test suite runs in (x86_64-pc-windows-gnu under Wine):
# builds the bcryptprimitives.dll stand-in (processprng.c), creates and initialises a headless
# prefix at target/wine/prefix, installs the DLL in its system32, and prints the `export` lines
# to use. Idempotent: a second run only checks that everything is in place.
#
#   eval "$(tests/wine/setup.sh)"
#   cargo test -p supervisor --target x86_64-pc-windows-gnu
#
# Needs Debian's wine64 (or wine) and gcc-mingw-w64-x86-64. Everything but the export lines
# goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${CARGO_TARGET_DIR:-$root/target}/wine"
prefix="$out/prefix"
dll="$out/bcryptprimitives.dll"

say() { echo "wine-setup: $*" >&2; }

if command -v wine >/dev/null 2>&1; then
    wine=wine
elif command -v wine64 >/dev/null 2>&1; then
    wine=wine64
else
    say "neither wine nor wine64 is installed (Debian: apt-get install wine64)"
    exit 1
fi
cc="${MINGW_CC:-x86_64-w64-mingw32-gcc}"
if ! command -v "$cc" >/dev/null 2>&1; then
    say "$cc is not installed (Debian: apt-get install gcc-mingw-w64-x86-64)"
    exit 1
fi

mkdir -p "$out"

# 1. The DLL, rebuilt only when its source changed.
if [[ ! -f "$dll" || "$here/processprng.c" -nt "$dll" || "$here/processprng.def" -nt "$dll" ]]; then
    say "building $dll"
    "$cc" -O2 -shared -s -o "$dll.tmp" "$here/processprng.c" "$here/processprng.def" -ladvapi32
    mv "$dll.tmp" "$dll"
fi

# Headless and silent: no display, no debug channels, no Mono/Gecko installer dialogs.
export WINEPREFIX="$prefix" WINEDEBUG=-all DISPLAY= WAYLAND_DISPLAY= WINEDLLOVERRIDES="mscoree,mshtml="
unset WINEARCH

# 2. The prefix, created once (wineboot -i initialises it without asking anything).
if [[ ! -f "$prefix/.harness-ready" ]]; then
    say "creating the Wine prefix $prefix (takes a minute the first time)"
    mkdir -p "$prefix"
    # (Debian's wine64 has no 32-bit half: the one line about syswow64 is expected.)
    "$wine" wineboot -i </dev/null 2>&1 | { grep -v 'syswow64' || true; } >&2
    wineserver -w
    touch "$prefix/.harness-ready"
fi

# 3. The DLL in the prefix's system32 (64-bit DLLs live there in a 64-bit prefix).
sys32="$prefix/drive_c/windows/system32"
if [[ ! -d "$sys32" ]]; then
    say "$sys32 is missing: the prefix is broken; remove $prefix and run again"
    exit 1
fi
if ! cmp -s "$dll" "$sys32/bcryptprimitives.dll"; then
    say "installing bcryptprimitives.dll into $sys32"
    cp "$dll" "$sys32/bcryptprimitives.dll"
fi

echo "export WINEPREFIX='$prefix'"
echo "export WINEDEBUG=-all"
echo "export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER='$here/runner.sh'"
