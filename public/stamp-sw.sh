#!/usr/bin/env bash
# Trunk post-build hook: writes the app shell's file list and a content
# version into sw.js in the staging directory.
set -euo pipefail
dir="${TRUNK_STAGING_DIR:?run by trunk}"
cd "$dir"
files=$(find . -type f ! -name sw.js | sed 's|^\./||' | sort)
version=$(cat $files | sha256sum | cut -c1-16)
list=$(printf '%s\n' "./" $files | sed 's/.*/"&"/' | paste -sd, -)
sed -i "s|__SHELL_VERSION__|$version|; s|\"__SHELL_FILES__\"|$list|" sw.js
