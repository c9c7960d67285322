#!/usr/bin/env bash
# Checks hack/check-tracked-files.sh on a scratch repository: a clean one
# passes; a committed binary, or a file over 1 MiB, fails it.
set -o errexit -o nounset -o pipefail

check=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/check-tracked-files.sh
scratch=$(mktemp -d)
trap 'rm -rf "${scratch}"' EXIT
cd "${scratch}"
git init -q .
git config user.email test@example.test
git config user.name test
echo 'package main' >main.go
git add main.go && git commit -qm clean

expect() { # expect pass|fail: what the check must do now
  if bash "${check}" "${scratch}" 2>/dev/null; then got=pass; else got=fail; fi
  if [[ "${got}" != "$1" ]]; then
    echo "test-check-tracked-files: $2: check gave ${got}, want $1" >&2
    exit 1
  fi
}

expect pass "a clean repository"
cp "$(type -P true)" app && git add app && git commit -qm binary
expect fail "a committed ELF executable"
git rm -q app && git commit -qm "no binary"
expect pass "the binary removed"
head -c $((2 * 1024 * 1024)) /dev/zero >big.dat && git add big.dat && git commit -qm big
expect fail "a 2 MiB file"
echo "test-check-tracked-files: ok"
