#!/usr/bin/env bash
# Refuses what must not be in git: compiled executables (ELF, Mach-O, PE)
# and any file over 1 MiB. Binaries belong in bin/ or the build cache, and
# large generated files are made by the build, not committed.
#
#   hack/check-tracked-files.sh [repository]   (default: this one)
set -o errexit -o nounset -o pipefail

repo=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "${repo}"
limit=$((1024 * 1024))
bad=0
while IFS= read -r -d '' f; do
  [[ -f "${f}" ]] || continue # deleted in the work tree
  size=$(stat -c %s "${f}")
  if ((size > limit)); then
    echo "tracked file over 1 MiB: ${f} (${size} bytes)" >&2
    bad=1
  fi
  magic=$(head -c 4 "${f}" | od -An -tx1 | tr -d ' \n')
  case "${magic}" in
  7f454c46 | cffaedfe | cefaedfe | feedface | feedfacf | 4d5a9000)
    echo "tracked compiled executable: ${f}" >&2
    bad=1
    ;;
  esac
done < <(git ls-files -z)
exit "${bad}"
