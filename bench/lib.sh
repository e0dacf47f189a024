# Shared by the benchmarks: a system of their own (run-bench, its own ports),
# started fresh and stopped on exit, and small measuring helpers.
# shellcheck shell=bash
export PAYSTREAM_RUN_DIR=$ROOT/run-bench PAYSTREAM_HTTP_PORT=28080 PAYSTREAM_ADMIN_PORT=28081 PAYSTREAM_PG_PORT=25434
export PAYSTREAM_KAFKA_PORT=19492 PAYSTREAM_SMTP_PORT=25027

bench_up() { # bench_up KAFKA_MODE
  "$ROOT/scripts/dev" _purge
  "$ROOT/scripts/dev" up --kafka "$1" >/dev/null
  trap '"$ROOT/scripts/dev" down >/dev/null 2>&1' EXIT
  # shellcheck disable=SC1091
  . "$PAYSTREAM_RUN_DIR/env"
  sql_open
}

# One psql session for the whole run. Starting psql costs this machine about
# 50 ms of CPU each time (Debian's psql is a Perl wrapper, and each session
# is a new server process): polling several times a second that way took
# about 10 us of CPU per event of a burst from the system being measured.
# Bash closes a coprocess's own descriptors in the subshells of pipelines;
# copies of them stay open.
sql_open() {
  coproc SQL { /usr/lib/postgresql/15/bin/psql "$PAYSTREAM_PG_DSN" -qtAX; }
  exec {sql_in}>&"${SQL[1]}" {sql_out}<&"${SQL[0]}"
}
sql() { # sql STATEMENT: its rows, one per line, fields separated by |
  printf '%s;\n\\echo __end__\n' "$1" >&"$sql_in"
  local line
  while IFS= read -r line <&"$sql_out"; do
    [ "$line" = __end__ ] && return 0
    printf '%s\n' "$line"
  done
  echo "bench: the psql session ended" >&2
  return 1
}
now() { local t=$EPOCHREALTIME; echo "${t/,/.}"; }  # "," in some locales
accepted() { grep -o '"ok":[0-9]*' <<<"$1" | cut -d: -f2; }
rss_mb() { # the largest of the processes of these pid files
  cat "$@" | xargs ps -o rss= -p | awk '$1 > m {m = $1} END {printf "%.1f", m/1024}'; }
peak_rss_mb() { # the largest peak (VmHWM: since each process started) of these pid files
  for f in "$@"; do cat "/proc/$(cat "$f")/status"; done |
    awk '/^VmHWM:/ && $2 > m {m = $2} END {printf "%.1f", m/1024}'; }
kafka_pid_file() { # kafka_pid_file KAFKA_MODE
  if [ "$1" = devbroker ]; then echo "$PAYSTREAM_RUN_DIR/devbroker.pid"
  else echo "$PAYSTREAM_RUN_DIR/kafka/node1/pid"; fi
}
