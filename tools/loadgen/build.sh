#!/bin/sh
# Owns building the compiled load generator: ./build.sh [OUTPUT] (default tools/loadgen/loadgen).
set -eu
DIR=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-"$DIR/loadgen"}
gcc -std=c11 -O2 -Wall -Wextra -o "$OUT" "$DIR/loadgen.c" -lssl -lcrypto -lm
