#!/usr/bin/env bash
# The local stack behind `make run`: Postgres and Redis (its own under .dev/
# when nothing answers and the servers are installed), the database created
# and migrated, then the services with their logs prefixed. Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."

export STRIPE_WEBHOOK_SECRET="${STRIPE_WEBHOOK_SECRET:-whsec_local_development_only}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/stripe_webhooks?sslmode=disable}"
export REDIS_HOST="${REDIS_HOST:-127.0.0.1}"
export REDIS_PORT="${REDIS_PORT:-6379}"
export PORT="${PORT:-8080}"
export WORKER_HTTP_PORT="${WORKER_HTTP_PORT:-8081}"
export WEBUI_ADDR="${WEBUI_ADDR:-127.0.0.1:5040}"
DEV="$PWD/.dev"
started=()   # what this script started and must stop: "pid" or "pg:<datadir>"

say() { printf '\033[1mrun:\033[0m %s\n' "$*"; }

answers() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

is_local() { [[ "$1" == 127.0.0.1 || "$1" == localhost || "$1" == ::1 ]]; }

as_postgres() {
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cleanup() {
  trap - EXIT INT TERM
  say "stopping"
  for item in "${started[@]}"; do
    case "$item" in
      pg:*) as_postgres "$PG_BIN/pg_ctl" -D "${item#pg:}" -m fast -w stop >/dev/null 2>&1 || true ;;
      *) kill "$item" 2>/dev/null || true ;;
    esac
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- Postgres -------------------------------------------------------------
pg_rest="${DATABASE_URL#*://}"; pg_rest="${pg_rest#*@}"; pg_hostport="${pg_rest%%/*}"
PG_HOST="${pg_hostport%%:*}"; PG_PORT=5432
[[ "$pg_hostport" == *:* ]] && PG_PORT="${pg_hostport##*:}"
if answers "$PG_HOST" "$PG_PORT"; then
  say "Postgres answers at $PG_HOST:$PG_PORT"
else
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
  if ! is_local "$PG_HOST" || [[ -z "$PG_BIN" || ! -x "$PG_BIN/pg_ctl" ]]; then
    say "nothing answers at $PG_HOST:$PG_PORT (DATABASE_URL) and no Postgres server is installed here."
    say "Start Postgres there, point DATABASE_URL at one, or install it: apt-get install postgresql"
    exit 1
  fi
  mkdir -p "$DEV/postgres"
  [[ $(id -u) == 0 ]] && chown postgres "$DEV/postgres" && chmod 0777 "$DEV"
  if [[ ! -f "$DEV/postgres/PG_VERSION" ]]; then
    say "initialising a private Postgres in .dev/postgres"
    as_postgres "$PG_BIN/initdb" -D "$DEV/postgres" -U postgres -A trust -E UTF8 >/dev/null
  fi
  say "starting a private Postgres on $PG_HOST:$PG_PORT"
  as_postgres "$PG_BIN/pg_ctl" -D "$DEV/postgres" -l "$DEV/postgres.log" -w \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k /tmp" start >/dev/null
  started+=("pg:$DEV/postgres")
fi

# --- Redis ----------------------------------------------------------------
if answers "$REDIS_HOST" "$REDIS_PORT"; then
  say "Redis answers at $REDIS_HOST:$REDIS_PORT"
else
  if ! is_local "$REDIS_HOST" || ! command -v redis-server >/dev/null; then
    say "nothing answers at $REDIS_HOST:$REDIS_PORT (REDIS_HOST/REDIS_PORT) and no redis-server is installed here."
    say "Start Redis there, or install it: apt-get install redis-server"
    exit 1
  fi
  mkdir -p "$DEV/redis"
  say "starting a private Redis on $REDIS_HOST:$REDIS_PORT"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DEV/redis" --save "" --appendonly no \
    --maxmemory-policy noeviction --logfile "$DEV/redis.log" &
  started+=("$!")
  for _ in $(seq 50); do answers 127.0.0.1 "$REDIS_PORT" && break; sleep 0.1; done
fi

# --- Build, migrate, serve ------------------------------------------------
say "building"
make --no-print-directory build >/dev/null
bin/worker migrate --create-database

serve() {
  local name="$1"; shift
  "$@" > >(sed -u "s/^/[$name] /") 2>&1 &
  started+=("$!")
}
serve ingest bin/ingest
serve worker bin/worker
serve webui bin/worker webui

for _ in $(seq 100); do answers 127.0.0.1 "$PORT" && break; sleep 0.1; done
cat <<MSG

  ingest   http://127.0.0.1:$PORT/api/billing/webhooks/stripe   (health: /health, metrics: /metrics)
  worker   http://127.0.0.1:$WORKER_HTTP_PORT/metrics               (probes: /healthz, /readyz)
  web UI   http://$WEBUI_ADDR/                                  (queues, retries, dead jobs)
  console  http://$WEBUI_ADDR/events                            (events, accounts, payloads)
  signing secret (dev only): $STRIPE_WEBHOOK_SECRET

  In another terminal:  make trigger EVENT=account.updated
  then see the account:  make account
  Ctrl-C stops everything started here.

MSG
wait -n || true
say "a service exited"
