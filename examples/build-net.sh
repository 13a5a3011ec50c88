#!/bin/sh
# Rebuild the networking examples (echo, http, client) from C with Zig's bundled clang and wasi-libc.
# Needs the `ziglang` Python package (it is in donjon's [test] extra).
#   PYTHON=/path/to/python examples/build-net.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-python3}
# Zig writes caches; keep them out of the repository and out of $HOME.
export ZIG_GLOBAL_CACHE_DIR=${ZIG_GLOBAL_CACHE_DIR:-${TMPDIR:-/tmp}/donjon-zigcache}
export ZIG_LOCAL_CACHE_DIR=${ZIG_LOCAL_CACHE_DIR:-$ZIG_GLOBAL_CACHE_DIR}
for name in echo http client secretsha; do
    "$python" -m ziglang cc -target wasm32-wasi -O2 -Wall -Wextra -Werror -Wl,--strip-debug \
        -o "$here/$name/$name.wasm" "$here/$name/$name.c"
    echo "built examples/$name/$name.wasm"
done
