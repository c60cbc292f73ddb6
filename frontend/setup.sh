#!/usr/bin/env bash
# Idempotent offline setup for the Reflex app: bun from the npm registry into the repo's .tools/.
# Reflex would otherwise download bun from GitHub; the platform package is a plain binary, no install script.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
bun="$repo/.tools/node_modules/@oven/bun-linux-x64/bin/bun"
if [ ! -x "$bun" ]; then
  npm install --no-save --ignore-scripts --no-audit --no-fund \
    --prefix "$repo/.tools" @oven/bun-linux-x64@1.4.4
fi
"$bun" --version >/dev/null
