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

# The backend's GraphQL playground (CHAKOR_GRAPHIQL_ASSETS_DIR): GraphiQL's and React's UMD bundles,
# served from /graphql/static/ instead of a CDN. Optional: without them /graphql says they are missing.
graphiql_pins=(graphiql@3.8.3 react@18.3.1 react-dom@18.3.1)
graphiql_dir="$repo/.tools/graphiql"
graphiql_stamp="$graphiql_dir/.installed-$(IFS=+; echo "${graphiql_pins[*]}")"
if [ ! -f "$graphiql_stamp" ]; then
  if npm install --no-save --ignore-scripts --no-audit --no-fund --prefix "$graphiql_dir" "${graphiql_pins[@]}"; then
    rm -f "$graphiql_dir"/.installed-*
    touch "$graphiql_stamp"
  else
    echo "warning: npm install of ${graphiql_pins[*]} failed; the GraphQL playground at /graphql is unavailable" >&2
  fi
fi
