#!/bin/sh
# Builds the component dist/{{NAME}}.wasm (`sluice build` runs this):
#   1. C bindings of the world: `wit-bindgen c` -> build/plugin.h, plugin.c, plugin_component_type.o
#   2. a WASI preview1 reactor module: clang --target=wasm32-wasi with wasi-libc
#   3. the component: `wasm-tools component new` with the WASI preview1 reactor adapter
# Tools: clang + lld + wasi-libc (Debian: clang lld wasi-libc libclang-rt-dev-wasm32),
# wit-bindgen-cli 0.46 and wasm-tools (crates.io), the adapter of wasmtime 48.0.8
# ($WASI_ADAPTER, default where Sluice's installer puts it).
set -eu
cd "$(dirname "$0")"
adapter="${WASI_ADAPTER:-${SLUICE_CACHE:-$HOME/.cache/sluice}/wasi-adapter/48.0.8/wasi_snapshot_preview1.reactor.wasm}"
mkdir -p build dist
wit-bindgen c wit --world plugin --out-dir build
clang --target=wasm32-wasi -mexec-model=reactor -O2 -std=c11 -Wall -Wextra -Wl,--strip-debug \
  ${WASI_SYSROOT:+--sysroot="$WASI_SYSROOT"} -I build -I . \
  handler.c component.c build/plugin.c build/plugin_component_type.o -o build/core.wasm
wasm-tools component new build/core.wasm --adapt "wasi_snapshot_preview1=$adapter" -o dist/{{NAME}}.wasm
