#!/usr/bin/env bash
# `make test-engines`: the tests of tests/engines/ against the real engines, each started here on
# this machine and stopped again by its PID when the tests end, pass or fail:
#   munged + slurmctld + slurmd   a one-node SLURM cluster (Debian's slurm-wlm 22.05; cons_tres,
#                                 no accounting database), its slurm.conf generated below
#   postgres                      a throw-away PostgreSQL cluster (initdb) on a free port
#   mlflow server                 MLflow's tracking server and UI on 127.0.0.1, a free port
# What is missing is installed first: slurm-wlm, munge and postgresql with apt-get, psycopg 3 and
# the full mlflow (the `postgres` and `mlflow` extras) with pip. It needs root (apt-get, slurmd);
# without root it says so in one line and skips, except in CI (CI=true), where it fails, as it
# does when a service does not start.
#   bash scripts/engines.sh [pytest arguments]      (PY=... for another interpreter)
#   bash scripts/engines.sh -- CMD...                CMD instead of the tests (a shell: -- bash)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")

if [ "$(id -u)" != 0 ]; then
    what="make test-engines needs root: it installs slurm-wlm, munge and postgresql (apt-get) and starts munged, slurmctld, slurmd and PostgreSQL"
    if [ "${CI:-}" = true ]; then echo "error: $what" >&2; exit 1; fi
    echo "skipped: $what"
    exit 0
fi

missing=()
for tool in munged mungekey slurmctld slurmd sbatch scontrol; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(initdb)
if [ ${#missing[@]} -gt 0 ]; then
    echo "engines: installing slurm-wlm munge postgresql (missing: ${missing[*]})"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge postgresql >/dev/null
fi
# the full mlflow distribution (mlflow-skinny, in the dev extra, ships no server's dependencies)
if ! "$PY" -c "import psycopg; from importlib.metadata import version; version('mlflow')" 2>/dev/null; then
    echo "engines: installing the postgres and mlflow extras"
    "$PY" -m pip install --quiet -e '.[postgres,mlflow]'
fi
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

ROOT=$(mktemp -d /tmp/resnet-exp-engines.XXXXXX)
chmod 755 "$ROOT"  # postgres runs as its own user and must reach its folder
PIDS=()
NAMES=()

stop_all() {
    local status=$?
    set +e
    # jobs still queued or running (a failed test's) end before the daemons that run them
    if [ -n "${SLURM_CONF:-}" ] && [ -f "$SLURM_CONF" ]; then
        scancel --quiet --user=root 2>/dev/null
        for _ in $(seq 60); do
            [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
            sleep 1
        done
    fi
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        local pid=${PIDS[i]}
        # the process group: a service's own children (postgres' backends, the server's
        # workers) go with it
        kill -TERM -- "-$pid" 2>/dev/null || continue
        for _ in $(seq 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "engines: ${NAMES[i]} (pid $pid) ignored SIGTERM for 30 s: SIGKILL" >&2
            kill -KILL -- "-$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
    done
    if [ $status -ne 0 ] && [ -z "${ENGINES_KEEP_LOGS:-}" ]; then
        for log in "$ROOT"/munge/munged.log "$ROOT"/slurm/*.log "$ROOT"/slurm/*.out "$ROOT"/pg/postgres.log \
                   "$ROOT"/mlflow/server.log; do
            [ -s "$log" ] && { echo "--- $log (last 15 lines)"; tail -n 15 "$log"; }
        done
    fi
    rm -rf "$ROOT"
    exit $status
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME LOG CMD...: CMD in the background, its output in LOG, in a process group of its own
# (setsid execs it, so $! is the service's own PID), its PID kept for stop_all
start() {
    local name=$1 log=$2
    shift 2
    setsid "$@" >"$log" 2>&1 </dev/null &
    PIDS+=($!)
    NAMES+=("$name")
}

# ready NAME CMD...: wait until CMD succeeds, at most 60 tries a second apart
ready() {
    local name=$1
    shift
    for _ in $(seq 60); do
        "$@" >/dev/null 2>&1 && return 0
        kill -0 "${PIDS[-1]}" 2>/dev/null || break
        sleep 1
    done
    echo "error: $name did not start" >&2
    return 1
}

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# MUNGE: its own key and socket, so that a munged already on the machine is left alone
mkdir -m 700 "$ROOT/munge"
mungekey --create --keyfile="$ROOT/munge/munge.key"
start munged "$ROOT/munge/stderr.log" munged --foreground --force --key-file="$ROOT/munge/munge.key" \
    --socket="$ROOT/munge/munge.socket" --pid-file="$ROOT/munge/munged.pid" \
    --seed-file="$ROOT/munge/munged.seed" --log-file="$ROOT/munge/munged.log"
ready munged munge --socket="$ROOT/munge/munge.socket" --no-input

# SLURM: one node, this machine, with its real cores and 8 GB of its memory
mkdir -p "$ROOT/slurm/state" "$ROOT/slurm/spool"
NODE=$(hostname -s)
export SLURM_CONF=$ROOT/slurm/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=engines
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job waits this long before it may start again (120 s by default)
AuthInfo=socket=$ROOT/munge/munge.socket,cred_expire=10
StateSaveLocation=$ROOT/slurm/state
SlurmdSpoolDir=$ROOT/slurm/spool
SlurmctldPidFile=$ROOT/slurm/slurmctld.pid
SlurmdPidFile=$ROOT/slurm/slurmd.pid
SlurmctldLogFile=$ROOT/slurm/slurmctld.log
SlurmdLogFile=$ROOT/slurm/slurmd.log
# no cgroups inside a container; no accounting database (the common small-cluster case)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
# a finished job stays visible to scontrol for 10 minutes (there is no sacct to ask)
MinJobAge=600
KillWait=10
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
start slurmctld "$ROOT/slurm/slurmctld.out" slurmctld -D -i
ready slurmctld scontrol ping
start slurmd "$ROOT/slurm/slurmd.out" slurmd -D
ready slurmd bash -c '[ "$(sinfo -h -o %t)" = idle ]'

# PostgreSQL: a cluster of its own, trust authentication on loopback only
mkdir "$ROOT/pg"
chown postgres: "$ROOT/pg"
PG_PORT=$(free_port)
setpriv --reuid=postgres --regid=postgres --init-groups "$PG_BIN/initdb" -D "$ROOT/pg/data" \
    -A trust -U postgres --no-sync >/dev/null
start postgres "$ROOT/pg/postgres.log" setpriv --reuid=postgres --regid=postgres --init-groups "$PG_BIN/postgres" \
    -D "$ROOT/pg/data" -p "$PG_PORT" -k "$ROOT/pg" -c listen_addresses=127.0.0.1 -c fsync=off \
    -c logging_collector=off
ready postgres "$PG_BIN/pg_isready" -h 127.0.0.1 -p "$PG_PORT" -U postgres

# MLflow's tracking server, its store and artifacts in this folder
mkdir "$ROOT/mlflow"
ML_PORT=$(free_port)
# its job runners (7 huey consumers, each importing MLflow) serve GenAI features, not tracking
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
    start "mlflow server" "$ROOT/mlflow/server.log" "$BIN/mlflow" server --host 127.0.0.1 --port "$ML_PORT" --workers 1 \
    --backend-store-uri "sqlite:///$ROOT/mlflow/mlflow.db" \
    --artifacts-destination "$ROOT/mlflow/artifacts"
ready "mlflow server" "$PY" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$ML_PORT/health', timeout=5)"

echo "engines: started in ${SECONDS} s: $(sinfo -V), node $NODE; PostgreSQL $("$PG_BIN/postgres" -V | awk '{print $3}') on :$PG_PORT; MLflow $("$PY" -c 'import mlflow; print(mlflow.__version__)') on :$ML_PORT"
export ENGINES_POSTGRES="postgresql+psycopg://postgres@127.0.0.1:$PG_PORT"
export ENGINES_MLFLOW="http://127.0.0.1:$ML_PORT"
export ENGINES_RUN=1
if [ "${1:-}" = "--" ]; then  # `scripts/engines.sh -- CMD...`: CMD beside the engines, not the tests
    shift
    "$@"
else
    "$PY" -m pytest tests/engines -m engines -p no:cacheprovider "$@"
fi
