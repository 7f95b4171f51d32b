#!/usr/bin/env bash
# A throwaway single-node SLURM cluster for smoothbench's integration tests: Debian's
# slurmctld, slurmd and slurmdbd (with MariaDB, so `sacct` works as on real clusters),
# authenticated by munge, all on 127.0.0.1. Meant for CI machines and containers run as
# root without systemd; it touches /etc/slurm and /etc/munge, so do not run it on a
# machine whose SLURM you care about.
#
#   .ci/slurm-cluster.sh start     install what is missing, start what is not running,
#                                 wait until the node takes jobs
#   .ci/slurm-cluster.sh stop      cancel our jobs, stop only the daemons this script
#                                 started (by the PIDs it recorded)
#   .ci/slurm-cluster.sh status    what runs, and the node's state
#
# Settings (environment):
#   SMOOTHBENCH_SLURM_STATE  folder for state, logs and PIDs (default /tmp/smoothbench-slurm)
#   SMOOTHBENCH_SLURM_GPUS   fake GPUs the node advertises (GRES backed by /dev/null-like
#                            device files; default 0 = a cluster without GPUs). Changing it
#                            restarts our slurmctld and slurmd.
#   SMOOTHBENCH_SLURM_SHARDS  shards of each fake GPU (the shard GRES, for jobs that share
#                            a GPU: --gres=shard:1; default 0 = no shards). Changing it
#                            restarts them too.
#   SMOOTHBENCH_SLURM_PARTITION  the default partition's name (default "main")
set -euo pipefail

STATE="${SMOOTHBENCH_SLURM_STATE:-/tmp/smoothbench-slurm}"
GPUS="${SMOOTHBENCH_SLURM_GPUS:-0}"
SHARDS="${SMOOTHBENCH_SLURM_SHARDS:-0}"
PARTITION="${SMOOTHBENCH_SLURM_PARTITION:-main}"
NODE="$(hostname -s)"
PIDS="$STATE/pids"
DB_PASSWORD="smoothbench-ci"   # MariaDB bound to 127.0.0.1 only
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
START_TIME=$SECONDS

say() { echo "[slurm-cluster +$((SECONDS - START_TIME))s] $*"; }
die() { echo "slurm-cluster: $*" >&2; exit 1; }

# running NAME COMM: the PID we recorded for NAME is alive and is a COMM process
running() {
    local file="$PIDS/$1.pid"
    [[ -s "$file" ]] || return 1
    local pid
    pid="$(<"$file")"
    [[ -r "/proc/$pid/comm" ]] && [[ "$(<"/proc/$pid/comm")" == "$2" ]]
}

# remember NAME PIDFILE: wait for a daemon's own PID file, then record it as ours
remember() {
    local tries=0
    until [[ -s "$2" ]]; do
        ((tries++ < 300)) || die "$1 wrote no PID file $2 (see $STATE/log/)"
        sleep 0.1
    done
    cp "$2" "$PIDS/$1.pid"
    say "$1 started (pid $(<"$PIDS/$1.pid"))"
}

# halt NAME COMM: stop the daemon we started, if it still runs
halt() {
    if running "$1" "$2"; then
        local pid
        pid="$(<"$PIDS/$1.pid")"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do [[ -d "/proc/$pid" ]] || break; sleep 0.1; done
        if [[ -d "/proc/$pid" ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
        say "stopped $1 (pid $pid)"
    fi
    rm -f "$PIDS/$1.pid"
}

install_packages() {
    local missing=()
    for package in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
    done
    if ((${#missing[@]})); then
        say "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # Without systemd the packages' scripts cannot start the services: we do.
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

write_configuration() {
    local cpus memory gres_line="" gres_types=""
    cpus="$(nproc)"
    memory="$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)"
    mkdir -p "$STATE"/{log,spool,ctld,run,devices} "$PIDS"
    chown slurm:slurm "$STATE/ctld" "$STATE/log"
    chmod 1777 "$STATE/run"   # daemons that drop root (mariadbd, slurmctld) write their PID files here
    : >"$STATE/gres.conf"
    if ((GPUS > 0)); then
        gres_types="GresTypes=gpu"
        gres_line=" Gres=gpu:$GPUS"
        for ((index = 0; index < GPUS; index++)); do
            # slurmd counts a GPU per device file; these behave like /dev/null
            [[ -e "$STATE/devices/gpu$index" ]] || mknod "$STATE/devices/gpu$index" c 1 3
            echo "NodeName=$NODE Name=gpu File=$STATE/devices/gpu$index" >>"$STATE/gres.conf"
            if ((SHARDS > 0)); then
                echo "NodeName=$NODE Name=shard Count=$SHARDS File=$STATE/devices/gpu$index" >>"$STATE/gres.conf"
            fi
        done
        if ((SHARDS > 0)); then
            gres_types="GresTypes=gpu,shard"
            gres_line=" Gres=gpu:$GPUS,shard:$((GPUS * SHARDS))"
            # sacct's AllocTRES then names the shards a job held
            gres_types+=$'\n'"AccountingStorageTRES=gres/gpu,gres/shard"
        fi
    fi
    cat >"$STATE/slurm.conf" <<EOF
# written by smoothbench .ci/slurm-cluster.sh
ClusterName=smoothbench
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
$gres_types
# no cgroups in containers: track processes by their parent, no task affinity
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# a job without --mem must not take the whole node
DefMemPerCPU=500
ReturnToService=2
KillWait=5
MinJobAge=300
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# Preemption as many clusters have it: a job of the higher-tier partition "urgent" that
# needs the node requeues the jobs of the default partition (tests/test_slurm.py).
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory$gres_line State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=urgent Nodes=ALL Default=NO MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF
EOF
    cat >"$STATE/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=smoothbench_accounting
EOF
    mkdir -p /etc/slurm
    for name in slurm.conf gres.conf slurmdbd.conf; do
        install -m 644 "$STATE/$name" "/etc/slurm/$name"
    done
    # Our running slurmctld and slurmd must be restarted when they run another config.
    CONFIGURATION="$(cat /etc/slurm/slurm.conf /etc/slurm/gres.conf | sha256sum | cut -d' ' -f1)"
    CHANGED=0
    [[ "$(cat "$STATE/running-configuration" 2>/dev/null)" == "$CONFIGURATION" ]] || CHANGED=1
    chown slurm:slurm /etc/slurm/slurmdbd.conf
    chmod 600 /etc/slurm/slurmdbd.conf
}

start_munge() {
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge && chown munge:munge /run/munge
    if ! running munged munged; then
        if munge -n >/dev/null 2>&1; then
            say "a munged we did not start answers; using it (stop will leave it)"
        else
            rm -f /run/munge/munged.pid
            runuser -u munge -- /usr/sbin/munged
            remember munged /run/munge/munged.pid
        fi
    fi
    munge -n | unmunge >/dev/null || die "munge does not work"
}

start_database() {
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    if ! running mariadbd mariadbd; then
        if mysqladmin ping >/dev/null 2>&1; then
            say "a MariaDB we did not start answers; using it (stop will leave it)"
        else
            [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql >/dev/null
            rm -f "$STATE/run/mariadbd.pid"
            /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --pid-file="$STATE/run/mariadbd.pid" \
                --socket=/run/mysqld/mysqld.sock >"$STATE/log/mariadb.log" 2>&1 &
            remember mariadbd "$STATE/run/mariadbd.pid"
        fi
    fi
    for _ in $(seq 120); do mysqladmin ping >/dev/null 2>&1 && break; sleep 0.25; done
    mysql <<EOF
CREATE DATABASE IF NOT EXISTS smoothbench_accounting;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL ON smoothbench_accounting.* TO 'slurm'@'localhost';
GRANT ALL ON smoothbench_accounting.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
EOF
    if ! running slurmdbd slurmdbd; then
        rm -f "$STATE/run/slurmdbd.pid"
        /usr/sbin/slurmdbd
        remember slurmdbd "$STATE/run/slurmdbd.pid"
    fi
    for _ in $(seq 120); do sacctmgr -n show cluster >/dev/null 2>&1 && break; sleep 0.25; done
    sacctmgr -nP show cluster format=cluster | grep -qx smoothbench || sacctmgr -i add cluster smoothbench >/dev/null
}

start_slurm() {
    if ((CHANGED)); then
        halt slurmd slurmd
        halt slurmctld slurmctld
    fi
    if ! running slurmctld slurmctld; then
        rm -f "$STATE/run/slurmctld.pid"
        /usr/sbin/slurmctld
        remember slurmctld "$STATE/run/slurmctld.pid"
    fi
    for _ in $(seq 120); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.25; done
    if ! running slurmd slurmd; then
        rm -f "$STATE/run/slurmd.pid"
        /usr/sbin/slurmd
        remember slurmd "$STATE/run/slurmd.pid"
    fi
    local node_state=""
    for _ in $(seq 240); do
        node_state="$(sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n 1 || true)"
        case "$node_state" in
        idle | mixed | allocated | completing) break ;;
        down* | drain*) scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
        esac
        sleep 0.25
    done
    case "$node_state" in
    idle | mixed | allocated | completing) ;;
    *) die "node $NODE is '$node_state', not ready; logs in $STATE/log/" ;;
    esac
    echo "$CONFIGURATION" >"$STATE/running-configuration"
    say "cluster up: node $NODE ($node_state), $(nproc) CPUs, $GPUS GPU(s), partition $PARTITION, accounting by slurmdbd"
}

stop_cluster() {
    if running slurmctld slurmctld; then
        local jobs
        jobs="$(squeue -h -o %i 2>/dev/null || true)"
        if [[ -n "$jobs" ]]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for _ in $(seq 60); do [[ -z "$(squeue -h -o %i 2>/dev/null)" ]] && break; sleep 0.5; done
        fi
    fi
    [[ -d "$PIDS" ]] || { say "nothing of ours runs ($PIDS missing)"; return 0; }
    halt slurmd slurmd
    halt slurmctld slurmctld
    halt slurmdbd slurmdbd
    halt mariadbd mariadbd
    halt munged munged
}

status() {
    for pair in munged:munged mariadbd:mariadbd slurmdbd:slurmdbd slurmctld:slurmctld slurmd:slurmd; do
        if running "${pair%%:*}" "${pair##*:}"; then echo "${pair%%:*}: running (pid $(<"$PIDS/${pair%%:*}.pid"))"; else echo "${pair%%:*}: not ours or not running"; fi
    done
    sinfo 2>/dev/null || true
}

case "${1:-}" in
start)
    [[ "$(id -u)" == 0 ]] || die "start needs root (it installs packages and starts daemons)"
    command -v apt-get >/dev/null || die "start needs Debian or Ubuntu (apt-get)"
    install_packages
    write_configuration
    start_munge
    start_database
    start_slurm
    ;;
stop) stop_cluster ;;
status) status ;;
*) die "usage: $0 start|stop|status" ;;
esac
