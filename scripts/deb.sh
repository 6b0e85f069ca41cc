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
# The version: a tag vX.Y.Z gives X.Y.Z (X.Y.Z+gitN.HASH past it), else
# 0.0.0~gitYYYYMMDD.HASH from the last commit; +dirty for uncommitted
# changes to tracked files.
hash=$(git rev-parse --short=12 HEAD)
if tag=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null); then
	n=$(git rev-list --count "$tag"..HEAD)
	version=${tag#v}
	[ "$n" -eq 0 ] || version+="+git$n.$hash"
else
	version="0.0.0~git$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d).$hash"
fi
git diff --quiet HEAD -- || version+="+dirty"
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
