# Shell helpers of the scripts that start throwaway servers (bench/compare.sh, bench/node/run.sh,
# examples/flash-sale-web/run.sh). Source it after defining die(). WAIT_HINT, when set, is added
# to wait_for's failure message (where the logs are).

# as_pg CMD...: CMD as the postgres user when root (initdb refuses root), else as is.
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# free_port: a loopback TCP port nobody listens on (it may be taken before it is used: callers
# that bind it retry or fail clearly).
free_port() {
  local port
  for _ in $(seq 100); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  die "no free port found"
}

# wait_for SECONDS WHAT CMD...: until CMD succeeds, or dies saying WHAT did not come up.
wait_for() {
  local secs=$1 what=$2
  shift 2
  for _ in $(seq $((secs * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "$what did not come up${WAIT_HINT:+ ($WAIT_HINT)}"
}

# bench_start NAME: how the scripts that run their own stockd begin: log and die, naming NAME;
# the binaries in $BIN, built if missing; bench_workdir NAME.
bench_start() {
  BENCH_NAME=$1
  log() { echo "$BENCH_NAME: $*" >&2; }
  die() {
    log "$*"
    exit 1
  }
  [[ -x $BIN/stockbench && -x $BIN/stockd ]] || scripts/build.sh
  bench_workdir "$1"
}

# bench_workdir NAME: WORK, a temp dir removed on exit (and stockd $PID, if set, killed then),
# with TOKEN_FILE in it: a random admin token, mode 600 (a token on a command line shows in ps).
bench_workdir() {
  WORK=$(mktemp -d -t "stockd-$1.XXXXXX")
  PID=""
  trap '[[ -n $PID ]] && kill -9 "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
  TOKEN_FILE=$WORK/admin-token
  (umask 077 && od -An -N12 -tx1 /dev/urandom | tr -d ' \n' >"$TOKEN_FILE")
}

# server_stats PORT: STATS of the stockd on that loopback port, as JSON (admin, $TOKEN_FILE).
server_stats() {
  "$BIN/stockctl" --server "127.0.0.1:$1" --token-file "$TOKEN_FILE" --json stats
}
# stat_of NAME JSON: that counter of server_stats' JSON ("" if absent).
stat_of() { grep -o "\"$1\":[0-9]*" <<<"$2" | cut -d: -f2; }

# thousands N: N with a comma every three digits (1234567 -> 1,234,567), for the tables.
thousands() { echo "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
