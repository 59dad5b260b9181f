#!/usr/bin/env bash
# Starts stockd on 127.0.0.1:7070 with its data in ./data, and the outbox sidecar writing
# committed orders to ./data/orders.db (SQLite). Installs missing packages and builds first.
#
# Tokens never go on a command line (every local user sees those in ps): they live in
# ./data/secrets/ (mode 0600, the dirs 0700) and are passed as files. The first run generates
# random ones and prints them once; STOCKD_ADMIN_TOKEN / STOCKD_OUTBOX_TOKEN / STOCKD_CLIENT_TOKEN,
# when set, are written there instead (a client-token file, once there, stays in use: delete it
# to let buyers in without a token). Use the admin token with
#   stockctl --token-file data/secrets/admin-token ...
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh run
STOCKD_TARGETS="stockd stockd-outbox stockctl" scripts/build.sh build  # no test binaries

secrets=data/secrets
(umask 077 && mkdir -p "$secrets")
chmod 700 data "$secrets"

# secret NAME ENV_VALUE GENERATE: the path of data/secrets/NAME, written from ENV_VALUE when set,
# else generated (64 hex digits) if GENERATE=yes and the file does not exist yet.
secret() {
  local file="$secrets/$1" value=$2 generate=$3
  if [[ -n "$value" ]]; then
    (umask 077 && printf '%s\n' "$value" >"$file")
  elif [[ ! -s "$file" && "$generate" == yes ]]; then
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$file" && echo >>"$file")
    echo "run.sh: generated $1 $(cat "$file") (in $file)" >&2
  fi
  [[ -s "$file" ]] && chmod 600 "$file" && echo "$file"
  return 0
}
admin_file=$(secret admin-token "${STOCKD_ADMIN_TOKEN:-}" yes)
outbox_file=$(secret outbox-token "${STOCKD_OUTBOX_TOKEN:-}" yes)
client_file=$(secret client-token "${STOCKD_CLIENT_TOKEN:-}" no)
# The values are in the files now; stockd refuses a token given both ways.
unset STOCKD_ADMIN_TOKEN STOCKD_OUTBOX_TOKEN STOCKD_CLIENT_TOKEN
unset STOCKD_ADMIN_TOKEN_FILE STOCKD_OUTBOX_TOKEN_FILE STOCKD_CLIENT_TOKEN_FILE

token_flags=(--admin-token-file "$admin_file" --outbox-token-file "$outbox_file")
[[ -n "$client_file" ]] && token_flags+=(--client-token-file "$client_file")
echo "run.sh: admin: stockctl --token-file $admin_file ...; buyers: stockctl ...$(
  [[ -n "$client_file" ]] && echo " --token-file $client_file --role buyer")" >&2

sidecar=""
if [[ -x build/bin/stockd-outbox ]]; then
  build/bin/stockd-outbox --server 127.0.0.1:7070 --token-file "$outbox_file" \
    --sql sqlite:./data/orders.db &
  sidecar=$!
  trap '[[ -n "$sidecar" ]] && kill "$sidecar" 2>/dev/null; wait' EXIT
fi
build/bin/stockd --listen 127.0.0.1:7070 --data-dir ./data "${token_flags[@]}" "$@"
