#!/usr/bin/env bash
# A single-node Slurm on this machine, to try `experiment_runner.py --submit slurm` and to run the tests marked
# `slurm` (tests/experiments/test_slurm.py). No accounting database: sacct cannot tell finished jobs' states.
#
#   sudo scripts/slurm_single_node.sh [--install]   write /etc/slurm/slurm.conf, start munged, slurmctld, slurmd
#   sudo scripts/slurm_single_node.sh --stop        stop the daemons this script started
#
# --install first runs `apt-get update` and `apt-get install -y slurm-wlm munge` (Debian/Ubuntu); without it
# nothing is installed.
# An /etc/slurm/slurm.conf that this script did not write is never replaced. Runs as root; the daemons run in
# the background and log to /var/log/slurm/ and /var/log/munge/.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by scripts/slurm_single_node.sh"
STARTED=/run/slurm_single_node.pids        # "name pid" of each daemon this script started, for --stop
LOGS=/var/log/slurm
WAIT_S=60

die() { echo "slurm_single_node: $*" >&2; exit 1; }

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

stop() {
    [ -f "$STARTED" ] || { echo "no daemons started by this script are recorded in $STARTED"; return 0; }
    # slurmd and slurmctld first, munged last (they authenticate through it)
    for name in slurmd slurmctld munged; do
        pid=$(awk -v n="$name" '$1 == n {print $2}' "$STARTED")
        [ -n "$pid" ] || continue
        if kill "$pid" 2>/dev/null; then
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            echo "stopped $name (pid $pid)"
        fi
    done
    rm -f "$STARTED"
}

install() {
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y slurm-wlm munge
}

write_conf() {
    local host cpus mem_mb per_cpu
    host=$(hostname -s)
    cpus=$(nproc --all)
    # a little under the total, so that slurmd never finds less memory than configured (the node would drain)
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    per_cpu=$(( mem_mb / cpus ))
    if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script: not replacing it (move it away first)"
    fi
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$LOGS"
    cat > "$CONF" <<EOF
$MARK: one node ($host), no accounting
ClusterName=single
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# no cgroups (containers rarely allow them): processes tracked by parent pid, no CPU binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# a job without --mem gets this per CPU, not the whole node, so that several run at once
DefMemPerCPU=$per_cpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=300
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    echo "wrote $CONF: node $host, $cpus CPU(s), ${mem_mb} MB"
}

start_munge() {
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then mungekey --create --force; else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
        chown munge:munge /etc/munge/munge.key 2>/dev/null || true
        chmod 400 /etc/munge/munge.key
        echo "created /etc/munge/munge.key"
    fi
    if munge -n </dev/null >/dev/null 2>&1; then
        echo "munged already runs"
        return
    fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
    if id munge >/dev/null 2>&1; then runuser -u munge -- munged; else munged --force; fi
    echo "munged $(cat /run/munge/munged.pid)" >> "$STARTED"
}

start_daemon() {         # $1: slurmctld or slurmd; each forks into the background and writes its pid file
    local name=$1
    if [ -f "/run/$name.pid" ] && kill -0 "$(cat "/run/$name.pid")" 2>/dev/null; then
        die "$name already runs (pid $(cat "/run/$name.pid")); stop it first (--stop, if this script started it)"
    fi
    "/usr/sbin/$name" || die "$name did not start: see $LOGS/$name.log"
    for _ in $(seq 50); do [ -s "/run/$name.pid" ] && break; sleep 0.1; done
    echo "$name $(cat "/run/$name.pid")" >> "$STARTED"
}

wait_idle() {
    local host state=""
    host=$(hostname -s)
    for _ in $(seq $(( WAIT_S * 2 ))); do
        state=$(sinfo -h -N -n "$host" -o %t 2>/dev/null | head -1 || true)
        case "$state" in
            idle|mix|alloc) echo "node $host is $state"; return 0 ;;
            drain*|inval|down*) break ;;
        esac
        sleep 0.5
    done
    echo "node $host did not become idle (state: ${state:-no answer}); last lines of the logs:" >&2
    tail -n 5 "$LOGS/slurmctld.log" "$LOGS/slurmd.log" >&2 || true
    exit 1
}

main() {
    local do_install=0
    case "${1:-}" in
        --stop) stop; exit 0 ;;
        --install) do_install=1 ;;
        -h|--help) usage; exit 0 ;;
        "") ;;
        *) usage >&2; exit 2 ;;
    esac
    [ "$(id -u)" = 0 ] || die "run as root (it writes $CONF and starts the daemons)"
    [ "$do_install" = 1 ] && install
    for tool in munged slurmctld slurmd sinfo; do
        command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || \
            die "$tool not found: rerun with --install (apt-get install -y slurm-wlm munge)"
    done
    write_conf
    start_munge
    start_daemon slurmctld
    start_daemon slurmd
    wait_idle
    echo "try: sinfo; srun hostname; experiment_runner.py ... --submit slurm"
    echo "stop: $0 --stop"
}

main "$@"
