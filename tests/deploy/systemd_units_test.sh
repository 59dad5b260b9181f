#!/usr/bin/env bash
# The systemd units shipped in deploy/systemd/.
#
#   systemd_units_test.sh verify UNIT_DIR BIN_DIR   (ctest systemd_units_verify, label unit)
#     systemd-analyze verify on both units (and security --offline, systemd-sysusers --dry-run
#     on the users file when this systemd has them), plus what the units promise: an
#     unprivileged user, a 0700 state dir, tokens as credentials and never flags, restart on
#     failure, hardening, LimitNOFILE that fits the connection flags. Exit 77 (skipped) when
#     systemd-analyze is not installed (Debian package `systemd`).
#   systemd_units_test.sh run UNIT_DIR BIN_DIR      (ctest systemd_units_run, label integration)
#     Runs the units' own ExecStart= and Environment= lines (without systemd: %S and %d point
#     into a temp dir, credentials are files there) and checks that stockd starts from the token
#     files, no token is on a command line, stockctl --token-file works, the sidecar copies to
#     its SQLite file, and every file is owner-only.
set -uo pipefail

mode=${1:?verify or run}
unit_dir=${2:?unit dir}
bin_dir=${3:?bin dir}
units=(stockd.service stockd-outbox.service)
tmp=$(mktemp -d /tmp/stockd-units-XXXXXX)  # "stockd" in the path: systemd's messages name it
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

# The unit's lines without comments, continuation lines joined.
unit_lines() {
  awk '/^[[:space:]]*#/ { next } { if (sub(/\\$/, "")) { buf = buf $0; next } print buf $0; buf = "" }' "$1"
}
# Every value of KEY= in a unit, one per line.
unit_values() { unit_lines "$1" | sed -n "s/^$2=//p"; }
# The value of --FLAG in a command line (empty if absent).
flag_value() { sed -n "s/.*--$2[ =]\([^ ]*\).*/\1/p" <<<"$1"; }

verify() {
  if ! command -v systemd-analyze >/dev/null; then
    echo "SKIP: systemd-analyze not found (Debian package systemd); units not verified"
    exit 77
  fi
  local copies=()
  for u in "${units[@]}"; do
    # ExecStart= must name an executable that exists: the binaries of this build.
    sed "s|/usr/local/bin/|$bin_dir/|g" "$unit_dir/$u" >"$tmp/$u"
    copies+=("$tmp/$u")
  done
  local out rc
  out=$(systemd-analyze verify --man=no "${copies[@]}" 2>&1)
  rc=$?
  [[ -n "$out" ]] && echo "$out"
  ((rc == 0)) || fail "systemd-analyze verify exited $rc"
  # Unknown keys and bad values are only warnings for verify: any line naming our units fails.
  grep -q stockd <<<"$out" && fail "systemd-analyze verify complained about the units"

  if systemd-analyze security --help 2>/dev/null | grep -q -- --offline; then
    for c in "${copies[@]}"; do
      # --threshold is the exposure level times 10: at most 2.0 of 10 ("OK").
      out=$(systemd-analyze security --offline=true --threshold=20 --no-pager "$c" 2>&1) ||
        { echo "$out"; fail "$(basename "$c"): exposure above 2.0"; }
      echo "$(basename "$c"): $(tail -n 1 <<<"$out")"
    done
  fi
  if command -v systemd-sysusers >/dev/null && systemd-sysusers --help | grep -q -- --dry-run; then
    mkdir -p "$tmp/root"
    out=$(systemd-sysusers --dry-run --root="$tmp/root" "$unit_dir/stockd.sysusers.conf" 2>&1) ||
      { echo "$out"; fail "systemd-sysusers refused stockd.sysusers.conf"; }
  fi

  for u in "${units[@]}"; do
    local f="$unit_dir/$u" user exec
    user=$(unit_values "$f" User)
    [[ -n "$user" && "$user" != root && "$user" != 0 ]] || fail "$u: no unprivileged User="
    grep -q "^u[[:space:]]\+$user[[:space:]]" "$unit_dir/stockd.sysusers.conf" ||
      fail "$u: User=$user is not in stockd.sysusers.conf"
    for want in StateDirectoryMode=0700 UMask=0077 Restart=on-failure NoNewPrivileges=yes \
      ProtectSystem=strict CapabilityBoundingSet=; do
      unit_lines "$f" | grep -qx "$want" || fail "$u: no $want"
    done
    unit_values "$f" LoadCredential | grep -q . || fail "$u: no LoadCredential="
    unit_values "$f" Environment | grep -q '_TOKEN_FILE=%d/' ||
      fail "$u: no token file from the credentials directory"
    exec=$(unit_values "$f" ExecStart)
    grep -qE -- '--[a-z-]*token([ =]|$)' <<<"$exec" && fail "$u: a token on the command line"
    grep -qE -- '--sql[ =][a-z]+://[^ ]*:[^ ]*@' <<<"$exec" && fail "$u: a password in --sql"
  done

  # LimitNOFILE must fit what stockd needs for its flags (server.cc fit_descriptor_limit).
  local exec nofile conns hello http need
  exec=$(unit_values "$unit_dir/stockd.service" ExecStart)
  nofile=$(unit_values "$unit_dir/stockd.service" LimitNOFILE)
  conns=$(flag_value "$exec" connections-max)
  hello=$(flag_value "$exec" hello-pending-max)
  http=$(flag_value "$exec" http-connections-max)
  need=$((${conns:-10000} + ${hello:-1024} + ${http:-64} + 320))
  [[ "$nofile" =~ ^[0-9]+$ ]] || fail "stockd.service: LimitNOFILE=$nofile is not a number"
  [[ "$nofile" =~ ^[0-9]+$ ]] && ((nofile < need)) &&
    fail "stockd.service: LimitNOFILE=$nofile is below the $need descriptors its flags need"
}

# Mode of a path as octal digits (700, 600).
mode_of() { stat -c %a "$1"; }

# Runs the command line of `unit` (ExecStart + Environment) with extra arguments, in the
# background; its pid in $! .
start_unit() {
  local unit=$1 listen=$2
  shift 2
  local f="$unit_dir/$unit" creds="$tmp/creds/$unit" exec
  local -a env_args=(PATH=/usr/bin:/bin)
  mkdir -p "$creds"
  chmod 0500 "$creds"
  # LoadCredential=NAME:SOURCE: a copy readable by the service's user only.
  while IFS=: read -r name source; do
    cp "$tmp/etc/$(basename "$source")" "$creds/$name"
    chmod 0400 "$creds/$name"
  done < <(unit_values "$f" LoadCredential)
  while read -r kv; do
    env_args+=("${kv//%d/$creds}")
  done < <(unit_values "$f" Environment)
  exec=$(unit_values "$f" ExecStart)
  exec=${exec//%S/$tmp/state}
  exec=${exec//%d/$creds}
  exec=${exec//\/usr\/local\/bin\//$bin_dir/}
  exec=${exec//127.0.0.1:7070/$listen}
  local -a argv
  read -ra argv <<<"$exec"
  (umask 022 && exec env -i "${env_args[@]}" "${argv[@]}" "$@") >>"$tmp/$unit.log" 2>&1 &
}

run() {
  mkdir -p "$tmp/etc" "$tmp/state"
  (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/etc/admin-token")
  (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/etc/outbox-token")
  # StateDirectory=, StateDirectoryMode=0700: systemd makes them before the start.
  mkdir -m 0700 "$tmp/state/stockd" "$tmp/state/stockd-outbox"

  start_unit stockd.service 127.0.0.1:0 --ready-file "$tmp/ready" --log-level info
  local stockd_pid=$!
  pids+=("$stockd_pid")
  local port=""
  for _ in $(seq 1 2000); do
    [[ -s "$tmp/ready" ]] && read -r _ port <"$tmp/ready" && break
    kill -0 "$stockd_pid" 2>/dev/null || break
    sleep 0.01
  done
  if [[ -z "$port" ]]; then
    cat "$tmp/stockd.service.log"
    fail "stockd did not start from stockd.service's command line"
    return
  fi
  local cmdline
  cmdline=$(tr '\0' ' ' </proc/"$stockd_pid"/cmdline)
  for t in admin-token outbox-token; do
    grep -qF "$(cat "$tmp/etc/$t")" <<<"$cmdline" && fail "the $t is on stockd's command line"
  done

  local ctl=("$bin_dir/stockctl" --server "127.0.0.1:$port" --token-file "$tmp/etc/admin-token")
  "${ctl[@]}" sku set units-1 --total 5 >/dev/null || fail "stockctl --token-file sku set"
  "${ctl[@]}" reserve units-1:2 --user u1 --key k1 >/dev/null || fail "stockctl reserve"
  "$bin_dir/stockctl" --server "127.0.0.1:$port" sku set units-2 --total 1 >/dev/null 2>&1 &&
    fail "a buyer could set a SKU"

  start_unit stockd-outbox.service "127.0.0.1:$port" --once
  local sidecar_pid=$!
  pids+=("$sidecar_pid")
  wait "$sidecar_pid"
  local code=$?
  ((code == 0)) || { cat "$tmp/stockd-outbox.service.log"; fail "the sidecar exited $code"; }
  local db="$tmp/state/stockd-outbox/orders.db"
  [[ -f "$db" ]] || fail "no $db"

  kill -TERM "$stockd_pid"
  wait "$stockd_pid"
  code=$?
  ((code == 0)) || { cat "$tmp/stockd.service.log"; fail "stockd exited $code on SIGTERM"; }
  grep -q "visible to every local user" "$tmp"/*.log && fail "a warning about a token flag"

  [[ "$(mode_of "$tmp/state/stockd")" == 700 ]] || fail "data dir mode $(mode_of "$tmp/state/stockd")"
  while read -r f; do
    [[ "$(mode_of "$f")" == 600 ]] || fail "$f has mode $(mode_of "$f"), not 600"
  done < <(find "$tmp/state" -type f)
  while read -r d; do
    [[ "$(mode_of "$d")" == 700 ]] || fail "$d has mode $(mode_of "$d"), not 700"
  done < <(find "$tmp/state" -mindepth 1 -type d)
}

case "$mode" in
  verify) verify ;;
  run) run ;;
  *)
    echo "usage: $0 verify|run UNIT_DIR BIN_DIR" >&2
    exit 2
    ;;
esac
if ((failures > 0)); then
  echo "$failures failure(s)"
  exit 1
fi
echo "OK"
