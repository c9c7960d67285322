#!/usr/bin/env bash
# Builds the pinned code generators once (cached by version) and prints the
# directory that holds them, for PATH.
set -o errexit -o nounset -o pipefail

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bin_dir="$(mailfleet_cache)/protoc-plugins-${PROTOC_GEN_GO_VERSION}-${PROTOC_GEN_GO_GRPC_VERSION}"
mkdir -p "${bin_dir}"
go_go=$(go_build_tool protoc-gen-go "${PROTOC_GEN_GO_VERSION}" google.golang.org/protobuf google.golang.org/protobuf/cmd/protoc-gen-go)
go_grpc=$(go_build_tool protoc-gen-go-grpc "${PROTOC_GEN_GO_GRPC_VERSION}" google.golang.org/grpc/cmd/protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc)
ln -sf "${go_go}" "${bin_dir}/protoc-gen-go"
ln -sf "${go_grpc}" "${bin_dir}/protoc-gen-go-grpc"
echo "${bin_dir}"
