# shellcheck shell=bash
# Shared helpers for hack/ scripts. Source it; do not run it.
#
# Tools are built once and cached outside the checkout, keyed by version, so a
# fresh clone (as CI makes) reuses them instead of rebuilding.

# Where pinned tools live: $MAILFLEET_CACHE, else $XDG_CACHE_HOME/mailfleet,
# else ~/.cache/mailfleet.
mailfleet_cache() {
  echo "${MAILFLEET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mailfleet}"
}

# go_build_tool NAME VERSION MODULE PKG: build PKG from MODULE@VERSION into
# $(mailfleet_cache)/NAME-VERSION/NAME unless it is already there, and print the
# binary's path. Builds happen in a throwaway module so that the tool's own
# replace directives and dependencies never touch the project's go.mod files.
go_build_tool() {
  local name=$1 version=$2 module=$3 pkg=$4
  local dir bin tmp
  dir="$(mailfleet_cache)/${name}-${version}"
  bin="${dir}/${name}"
  if [[ -x "${bin}" ]]; then
    echo "${bin}"
    return 0
  fi
  mkdir -p "${dir}"
  tmp=$(mktemp -d)
  # The caller's trap may be overwritten; clean up explicitly as well.
  (
    cd "${tmp}"
    go mod init mailfleet.local/tool-build >/dev/null 2>&1
    go get "${pkg}@${version}" >&2
    CGO_ENABLED=0 go build -trimpath -o "${bin}.tmp" "${pkg}" >&2
  ) || { rm -rf "${tmp}" "${bin}.tmp"; return 1; }
  rm -rf "${tmp}"
  mv "${bin}.tmp" "${bin}"
  echo "${bin}"
}

# go_build_wrapper NAME VERSION MODULE IMPORT CALL: build a tiny main that
# imports IMPORT from MODULE@VERSION and runs CALL (for tools whose main
# package lives in a module we cannot `go get`, like kubectl's).
go_build_wrapper() {
  local name=$1 version=$2 module=$3 import=$4 call=$5
  local dir bin tmp
  dir="$(mailfleet_cache)/${name}-${version}"
  bin="${dir}/${name}"
  if [[ -x "${bin}" ]]; then
    echo "${bin}"
    return 0
  fi
  mkdir -p "${dir}"
  tmp=$(mktemp -d)
  (
    cd "${tmp}"
    go mod init mailfleet.local/tool-build >/dev/null 2>&1
    printf 'package main\n\nimport "%s"\n\nfunc main() { %s }\n' "${import}" "${call}" > main.go
    go get "${module}@${version}" >&2
    go mod tidy >&2
    CGO_ENABLED=0 go build -trimpath -o "${bin}.tmp" . >&2
  ) || { rm -rf "${tmp}" "${bin}.tmp"; return 1; }
  rm -rf "${tmp}"
  mv "${bin}.tmp" "${bin}"
  echo "${bin}"
}
