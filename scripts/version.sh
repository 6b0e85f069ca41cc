#!/usr/bin/env bash
# Prints the version stamped into the binaries (make deb, make appliance):
# a tag vX.Y.Z gives X.Y.Z (X.Y.Z+gitN.HASH past it), else
# 0.0.0~gitYYYYMMDD.HASH from the last commit (SOURCE_DATE_EPOCH's day when
# set); +dirty for uncommitted changes to tracked files.
set -euo pipefail
cd "$(dirname "$0")/.."
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
hash=$(git rev-parse --short=12 HEAD)
if tag=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null); then
	n=$(git rev-list --count "$tag"..HEAD)
	version=${tag#v}
	[ "$n" -eq 0 ] || version+="+git$n.$hash"
else
	version="0.0.0~git$(date -u -d "@$epoch" +%Y%m%d).$hash"
fi
git diff --quiet HEAD -- || version+="+dirty"
echo "$version"
