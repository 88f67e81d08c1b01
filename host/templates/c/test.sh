#!/bin/sh
# Runs the unit tests of handler.c natively, with the host's C compiler.
set -eu
cd "$(dirname "$0")"
mkdir -p build
${CC:-cc} -std=c11 -Wall -Wextra -o build/test_handler test_handler.c handler.c
build/test_handler
