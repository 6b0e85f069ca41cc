#!/usr/bin/env bash
# Builds the Debian package dist/wolfpack_VERSION_amd64.deb (make deb):
# clusterd, resmon and cluster static (CGO_ENABLED=0) and reproducible
# (-trimpath; every file's mtime in the package is SOURCE_DATE_EPOCH, the
# last commit's time), the systemd unit, the man pages gzipped, a sample
# node file. nfpm runs by `go run` at a pinned version, so it adds nothing
# to go.mod. DEB_OUT=DIR writes the package there instead of dist/.
# Prints the package's path.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
out=${DEB_OUT:-dist}
stage=.cache/deb/stage

SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
export SOURCE_DATE_EPOCH
# The version (scripts/version.sh).
version=$(./scripts/version.sh)
export WOLFPACK_VERSION=$version

rm -rf "$stage" && mkdir -p "$stage" "$out"
for cmd in clusterd resmon cluster; do
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $GO build -trimpath \
		-ldflags "-s -w -X github.com/wolfpack-ha/wolfpack/internal/version.Version=$version" \
		-o "$stage/$cmd" "./cmd/$cmd"
done
for page in packaging/man/*.8; do
	gzip -9 -n -c "$page" >"$stage/$(basename "$page").gz"
done
deb="$out/wolfpack_${version}_amd64.deb"
$GO run "$NFPM" package --config packaging/nfpm.yaml --packager deb --target "$deb" >&2
echo "$deb"
