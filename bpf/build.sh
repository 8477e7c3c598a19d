#!/bin/sh
# Builds bpf/src/*.bpf.c into OUT_DIR (default: bpf/prebuilt, which is committed) and records the
# toolchain in OUT_DIR/TOOLCHAIN. The Makefile and test/bpf/prebuilt.test.ts both call this, so
# the flags live in one place; it needs only sh, clang, llvm-strip and libbpf's headers (no make).
#
# Deterministic output: sources are compiled by relative path from bpf/, the debug prefix map
# hides the checkout's location, and DWARF is stripped (llvm-strip -g) while .BTF and .BTF.ext
# stay: libbpf needs BTF for the sk_storage maps, the verifier uses the line info.
#
# No vmlinux.h: the programs use only UAPI context structs, declared in src/uapi.h, so the
# objects do not depend on the build host's kernel or kernel headers.
set -eu
cd "$(dirname "$0")"
OUT=${1:-prebuilt}
CLANG=${CLANG:-clang}
LLVM_STRIP=${LLVM_STRIP:-llvm-strip}
LIBBPF_INCLUDE=${LIBBPF_INCLUDE:-/usr/include}
mkdir -p "$OUT"
for src in src/*.bpf.c; do
	obj="$OUT/$(basename "$src" .c).o"
	"$CLANG" -O2 -g -target bpf -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter \
		-nostdinc -isystem "$LIBBPF_INCLUDE" -Isrc \
		-fdebug-prefix-map="$(pwd)"=. -fdebug-compilation-dir=. \
		-c "$src" -o "$obj.tmp"
	"$LLVM_STRIP" -g "$obj.tmp"
	mv "$obj.tmp" "$obj"
done
# The objects are reproducible for one toolchain; the test compares only when this matches.
{
	"$CLANG" --version | head -n 1
	printf 'libbpf headers %s.%s\n' \
		"$(sed -n 's/^#define LIBBPF_MAJOR_VERSION //p' "$LIBBPF_INCLUDE/bpf/libbpf_version.h")" \
		"$(sed -n 's/^#define LIBBPF_MINOR_VERSION //p' "$LIBBPF_INCLUDE/bpf/libbpf_version.h")"
} > "$OUT/TOOLCHAIN"
