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
# binary's path.
go_build_tool() {
  cached_go_build "$1" "$2" "" "$4@$2" "$4"
}

# go_build_wrapper NAME VERSION MODULE IMPORT CALL: the same for a tiny main
# that imports IMPORT from MODULE@VERSION and runs CALL (for tools whose main
# package lives in a module we cannot `go get`, like kubectl's).
go_build_wrapper() {
  cached_go_build "$1" "$2" "$(printf 'package main\n\nimport "%s"\n\nfunc main() { %s }\n' "$4" "$5")" "$3@$2" .
}

# cached_go_build NAME VERSION MAIN GET TARGET: print the cached binary of
# NAME at VERSION, or build it first: in a throwaway module (so that the
# tool's own replace directives and dependencies never touch the project's
# go.mod files), with MAIN as main.go if it is not empty, `go get GET`, then
# `go build TARGET`.
cached_go_build() {
  local name=$1 version=$2 main=$3 get=$4 target=$5
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
    if [[ -n "${main}" ]]; then
      printf '%s\n' "${main}" > main.go
    fi
    go get "${get}" >&2
    if [[ -n "${main}" ]]; then
      go mod tidy >&2
    fi
    CGO_ENABLED=0 go build -trimpath -o "${bin}.tmp" "${target}" >&2
  ) || { rm -rf "${tmp}" "${bin}.tmp"; return 1; }
  rm -rf "${tmp}"
  mv "${bin}.tmp" "${bin}"
  echo "${bin}"
}
