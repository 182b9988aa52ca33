#!/usr/bin/env bash
# The Slurm plugin (spank_rgpu.so) against real Slurm daemons (munged,
# slurmctld, slurmd) started on localhost under E2E_TMP, with a real
# rgpu-scheduler and two rgpu-servers over PoCL (cluster key, leases):
#   - a malformed --rgpu is refused at submission; --help shows the option
#   - `#SBATCH --rgpu=1` runs vector_add on the remote GPU; the lease is gone after
#   - a batch job with two srun steps uses one lease; srun and salloc take
#     --rgpu too, also an srun inside a batch job without it
#   - srun --rgpu=1:api=cuda runs an nvcc-built program on the server that
#     serves CUDA (s2, cuda-emulated), through rgpu's libcudart.so.13 that
#     the plugin puts first on LD_LIBRARY_PATH (where nvcc built examples/cuda)
#   - scancel of a running job releases its lease
#   - more GPUs than exist: job FAILED with the reason in its output, node idle
#   - two --rgpu=1 jobs at once get different GPUs; --rgpu=2 sees two devices
#   - a job ended by its time limit (--time=1: about 1.5 minutes) is released
#   - scheduler down: job FAILED with the reason in its output, node idle
#   - rgpu-scheduler --slurm-reclaim: a lease of a job Slurm does not know is
#     released, a running job's lease stays, nothing goes while squeue fails
# Job state comes from `scontrol show job` (MinJobAge=300), not srun's status.
# Needs root (slurmd runs jobs as their user): skipped (77) otherwise, and
# when Slurm is not installed outside CI.
source "$(dirname "$0")/lib.sh" "$@"

skip() {
    if [ -n "${CI:-}" ]; then
        fail "$* (CI must run this test)"
    fi
    echo "[$E2E_NAME] SKIP: $*"
    trap - EXIT
    kill "${E2E_PIDS[@]}" 2>/dev/null || true
    rm -rf "$E2E_TMP"
    exit 77
}
# The scheduler client's receive timeout (the CLI and the plugin share it):
# a scheduler that accepts and never answers is an error after the timeout.
python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
print(s.getsockname()[1], flush=True)
conns = []
while True:
    conns.append(s.accept()[0])' >"$E2E_TMP/silent.port" &
track_pid $! "silent listener"
until [ -s "$E2E_TMP/silent.port" ]; do sleep 0.05; done
SILENT=127.0.0.1:$(cat "$E2E_TMP/silent.port")
rc=0
"$BUILD/scheduler/rgpu" --scheduler "$SILENT" --timeout 1 leases 2>"$E2E_TMP/silent.err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "rgpu: scheduler $SILENT: no reply within 1 s" "$E2E_TMP/silent.err" ||
    fail "rgpu --timeout 1 against a silent scheduler: status $rc, $(cat "$E2E_TMP/silent.err")"
rc=0
RGPU_SCHED_TIMEOUT=0.5 "$BUILD/scheduler/rgpu" --scheduler "$SILENT" leases 2>"$E2E_TMP/silent.err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "no reply within 0.5 s" "$E2E_TMP/silent.err" ||
    fail "RGPU_SCHED_TIMEOUT=0.5 against a silent scheduler: status $rc, $(cat "$E2E_TMP/silent.err")"
pass "rgpu against a silent scheduler: '$(cat "$E2E_TMP/silent.err")'"

[ "$(id -u)" -eq 0 ] || skip "needs root to run slurmd"
for p in munged slurmctld slurmd sbatch squeue scontrol scancel sinfo; do
    command -v "$p" >/dev/null || skip "$p is not installed (scripts/install-deps.sh)"
done
PLUGIN=$BUILD/slurm/spank_rgpu.so
if [ "$E2E_SANITIZED" = 1 ]; then
    # slurmstepd cannot load ASan code: the plugin is not built here.
    CI= skip "a sanitized build has no spank_rgpu.so"
fi
[ -f "$PLUGIN" ] || skip "no $PLUGIN (libslurm-dev missing at configure time)"

D=$E2E_TMP/slurm
export SLURM_CONF=$D/etc/slurm.conf

# ---- rgpu: scheduler (reclaiming every second) and two servers ----
start_scheduler --slurm-reclaim 1
# The CLI signs with the cluster key (alloc --job needs it).
export RGPU_KEY=$KEY
start_server s1 --key "$KEY" --scheduler "$SCHED"
# s2 serves CUDA too (the emulation): --rgpu=1:api=cuda gets its GPU.
start_server s2 --key "$KEY" --scheduler "$SCHED" --backends opencl,cuda-emulated
deadline=$((SECONDS + 20))
until [ "$(rgpu_cli servers | awk 'NR > 1 && $2 == "up"' | wc -l)" -ge 2 ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "two servers not up within 20 s"
    sleep 0.2
done
NGPUS=$(rgpu_cli --json gpus | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
e2e_log "$NGPUS GPUs on two servers"

# leases_of JOB: the ids of the scheduler's leases for the job.
# reclaim_runs PATTERN N: waits (20 s at most) until the scheduler's log has
# N more lines matching PATTERN, one per --slurm-reclaim run: "squeue
# failed", or "squeue: .* live jobs" (at --log-level debug) once it works.
# What a run must not do is checked after runs, not after a sleep.
reclaim_runs() {
    local n0 deadline=$((SECONDS + 20))
    n0=$(grep -c -- "$1" "$SCHED_LOG" || true)
    until [ "$(grep -c -- "$1" "$SCHED_LOG" || true)" -ge $((n0 + $2)) ]; do
        [ "$SECONDS" -lt "$deadline" ] || fail "no $2 more reclaim runs ('$1') within 20 s"
        sleep 0.2
    done
}

leases_of() {
    rgpu_cli --json leases | python3 -c '
import json, sys
print(" ".join(str(l["id"]) for l in json.load(sys.stdin) if l["job"] == sys.argv[1]))' "$1"
}

# wait_no_lease JOB: until the scheduler holds no lease of the job (30 s).
wait_no_lease() {
    local deadline=$((SECONDS + 30))
    until [ -z "$(leases_of "$1")" ]; do
        [ "$SECONDS" -lt "$deadline" ] || fail "job $1 still holds lease $(leases_of "$1") after 30 s"
        sleep 0.2
    done
}

# --slurm-reclaim: while squeue fails (no Slurm yet) nothing is reclaimed.
rgpu_cli alloc -n 1 --job 999999 --ttl 600 >/dev/null
stale=$(leases_of 999999)
[ -n "$stale" ] || fail "no lease for job 999999"
deadline=$((SECONDS + 20))
until grep -q "squeue failed" "$SCHED_LOG"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the scheduler did not run squeue within 20 s"
    sleep 0.2
done
# Two more failed runs: the second started after the lease existed (a run
# judges only leases older than itself).
reclaim_runs "squeue failed" 2
[ "$(leases_of 999999)" = "$stale" ] || fail "lease $stale reclaimed although squeue failed"
pass "--slurm-reclaim: squeue failing (no Slurm) reclaims nothing"

# ---- Slurm on localhost (../shared/notes/slurm-in-ci.md) ----
H=$(hostname -s)
# Ports of our own, so that no other Slurm on this machine is in the way.
read -r CTLD_PORT SLURMD_PORT < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
mkdir -p "$D"/{etc,run,log,spool/ctld,munge-sock,munge-etc,out} "$D/spool/d/$H"
chmod 755 "$D" "$D/munge-sock" "$D/out"
chmod 700 "$D/munge-etc"
dd if=/dev/urandom bs=1024 count=1 of="$D/munge-etc/munge.key" status=none
chmod 400 "$D/munge-etc/munge.key"
cat >"$D/etc/slurm.conf" <<CONF
ClusterName=ci
SlurmctldHost=$H(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge-sock/munge.sock
StateSaveLocation=$D/spool/ctld
SlurmdSpoolDir=$D/spool/d/%n
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SlurmdDebug=debug
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
PlugStackConfig=$D/etc/plugstack.conf
InactiveLimit=0
KillWait=5
Waittime=0
MinJobAge=300
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
NodeName=$H NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP
CONF
echo "required $PLUGIN scheduler=$SCHED icd_vendors=$ICD_DIR cuda_libdir=$BUILD/client/cuda" \
    "timeout=5 state_dir=$D/state key=$KEY" >"$D/etc/plugstack.conf"

munged --force --socket="$D/munge-sock/munge.sock" --key-file="$D/munge-etc/munge.key" \
    --pid-file="$D/run/munged.pid" --log-file="$D/log/munged.log" --seed-file="$D/run/munge.seed"
track_pid "$(cat "$D/run/munged.pid")" munged "$D/log/munged.log"
# start_daemon NAME CMD...: the daemon forks; its pid file names it.
start_daemon() {
    local name=$1 deadline=$((SECONDS + 10))
    shift
    "$@" || { tail -n 20 "$D/log/$name.log" >&2; fail "$name did not start"; }
    until [ -s "$D/run/$name.pid" ]; do
        [ "$SECONDS" -lt "$deadline" ] || fail "$name wrote no pid file within 10 s"
        sleep 0.1
    done
    track_pid "$(cat "$D/run/$name.pid")" "$name" "$D/log/$name.log"
}
start_daemon slurmctld slurmctld -i -f "$SLURM_CONF"
start_daemon slurmd slurmd -f "$SLURM_CONF"

node_state() {
    sinfo -h -N -o %t | head -n1
}
deadline=$((SECONDS + 30))
until [ "$(node_state)" = idle ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "node not idle within 30 s: $(node_state)"
    sleep 0.2
done
pass "Slurm up (node $H idle), plugin $PLUGIN"

# --slurm-reclaim: job 999999 is unknown to Slurm: its lease goes.
wait_no_lease 999999
grep -q "lease $stale: job 999999 is gone from Slurm; released" "$SCHED_LOG" ||
    fail "no reclaim line in the scheduler's log"
pass "--slurm-reclaim: the lease of job 999999 (unknown to Slurm) reclaimed"

# submit SCRIPT_BODY [SBATCH ARGS...]: prints the job id.
NJOB=0
submit() {
    local body=$1 script
    shift
    NJOB=$((NJOB + 1))
    script=$D/job$NJOB.sh
    printf '#!/bin/bash\n%s\n' "$body" >"$script"
    sbatch --parsable -o "$D/out/%j.out" "$@" "$script" | cut -d';' -f1
}

job_state() {
    scontrol show job "$1" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'
}

# wait_state JOB STATE...: until the job is in one of the states (60 s).
wait_state() {
    local job=$1 s deadline=$((SECONDS + 60))
    shift
    while :; do
        s=$(job_state "$job")
        for want in "$@"; do
            [ "$s" = "$want" ] && return 0
        done
        case "$s" in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL)
            cat "$D/out/$job.out" >&2 2>/dev/null || true
            fail "job $job ended $s, waiting for $*" ;;
        esac
        [ "$SECONDS" -lt "$deadline" ] || fail "job $job is $s after 60 s, waiting for $*"
        sleep 0.2
    done
}

# epilog_released JOB: the job epilog (not --slurm-reclaim) released the
# lease: the plugin's line in slurmd's log.
epilog_released() {
    local deadline=$((SECONDS + 10))
    until grep -q "rgpu: job $1: lease released" "$D/log/slurmd.log"; do
        [ "$SECONDS" -lt "$deadline" ] || fail "job $1: no 'lease released' from the epilog in slurmd.log"
        sleep 0.2
    done
}

expect_node_idle() {
    local deadline=$((SECONDS + 20))
    until [ "$(node_state)" = idle ]; do
        [ "$SECONDS" -lt "$deadline" ] || fail "node is '$(node_state)' after $1, expected idle"
        sleep 0.2
    done
}

# ---- submission-time checks ----
sbatch --help >"$E2E_TMP/help.out" 2>&1 || true
grep -q -- "--rgpu=N\[:mem=SIZE\]" "$E2E_TMP/help.out" || fail "sbatch --help does not show --rgpu"
for bad in abc 0 "1:mem=lots" "1:api=vulkan" "1:bogus"; do
    rc=0
    sbatch -o /dev/null --rgpu="$bad" --wrap true >"$E2E_TMP/bad.out" 2>&1 || rc=$?
    [ "$rc" -ne 0 ] || fail "sbatch --rgpu=$bad was accepted"
    grep -q "rgpu: --rgpu=$bad" "$E2E_TMP/bad.out" || fail "--rgpu=$bad: no clear message: $(cat "$E2E_TMP/bad.out")"
done
[ -z "$(squeue -h -o %A)" ] || fail "a malformed --rgpu submitted a job: $(squeue -h)"
pass "malformed --rgpu values refused at submission ($(head -n1 "$E2E_TMP/bad.out"))"

# ---- #SBATCH --rgpu=1 runs vector_add on a remote GPU ----
job=$(submit "#SBATCH --rgpu=1
echo \"lease=\$RGPU_LEASE servers=\$RGPU_SERVERS scheduler=\$RGPU_SCHEDULER\"
exec $EXAMPLES/vector_add 100000")
wait_state "$job" COMPLETED
out=$D/out/$job.out
cat "$out"
grep -q "vector_add: 100000 elements on .*results checked, PASS" "$out" || fail "job $job: no PASS from vector_add"
grep -q "platform: rgpu" "$out" || fail "job $job: vector_add did not run on the rgpu platform"
grep -q "scheduler=$SCHED" "$out" || fail "job $job: RGPU_SCHEDULER not set"
wait_no_lease "$job"
epilog_released "$job"
pass "sbatch --rgpu=1: vector_add on remote GPU (lease $(sed -n 's/^lease=\([0-9]*\).*/\1/p' "$out")), COMPLETED, lease released"

# ---- two srun steps, one lease ----
job=$(submit "#SBATCH --rgpu=1
echo \"batch lease=\$RGPU_LEASE\"
srun -n1 sh -c 'echo \"step lease=\$RGPU_LEASE\"; exec $EXAMPLES/vector_add 1000'
srun -n1 sh -c 'echo \"step lease=\$RGPU_LEASE\"; exec $EXAMPLES/vector_add 1000'
$RGPU_BIN --scheduler $SCHED --json leases >$D/out/leases.\$SLURM_JOB_ID.json")
wait_state "$job" COMPLETED
out=$D/out/$job.out
cat "$out"
[ "$(grep -c "results checked, PASS" "$out")" -eq 2 ] || fail "job $job: two steps did not both PASS"
ids=$(sed -n 's/.*lease=\([0-9]*\)$/\1/p' "$out" | sort -u)
[ "$(grep -c 'lease=' "$out")" -eq 3 ] && [ "$(echo "$ids" | wc -l)" -eq 1 ] && [ -n "$ids" ] ||
    fail "job $job: batch and steps saw leases '$ids', expected one"
n=$(python3 -c '
import json, sys
print(sum(1 for l in json.load(open(sys.argv[1])) if l["job"] == sys.argv[2]))' "$D/out/leases.$job.json" "$job")
[ "$n" -eq 1 ] || fail "job $job held $n leases while running, expected 1"
wait_no_lease "$job"
epilog_released "$job"
pass "batch job with two srun steps: one lease ($ids), released at the end"

# ---- srun and salloc take the option too ----
out=$D/out/srun.out
srun --rgpu=1 -o "$out" sh -c 'echo "job=$SLURM_JOB_ID lease=$RGPU_LEASE"; exec "$0" 1000' \
    "$EXAMPLES/vector_add" || true
cat "$out"
job=$(sed -n 's/^job=\([0-9]*\) lease=[0-9][0-9]*$/\1/p' "$out")
[ -n "$job" ] || fail "srun --rgpu=1: no job id and RGPU_LEASE in the task's output"
wait_state "$job" COMPLETED
grep -q "results checked, PASS" "$out" || fail "srun --rgpu=1: no PASS from vector_add"
wait_no_lease "$job"
epilog_released "$job"
out=$D/out/salloc.out
salloc --rgpu=1 srun sh -c 'echo "job=$SLURM_JOB_ID lease=$RGPU_LEASE"; exec "$0" 1000' \
    "$EXAMPLES/vector_add" >"$out" 2>&1 || true
cat "$out"
grep -q "results checked, PASS" "$out" || fail "salloc --rgpu=1 srun: no PASS from vector_add"
job=$(sed -n 's/^job=\([0-9]*\) lease=[0-9][0-9]*$/\1/p' "$out")
[ -n "$job" ] || fail "salloc --rgpu=1 srun: no RGPU_LEASE in the step"
wait_state "$job" COMPLETED
wait_no_lease "$job"
epilog_released "$job"
pass "srun --rgpu=1 and salloc --rgpu=1 srun run vector_add on a remote GPU; leases released"

# ---- --rgpu=1:api=cuda: s2's GPU, and rgpu's runtime first on the tasks' LD_LIBRARY_PATH ----
CUDA_VADD=$BUILD/examples/cuda/vector_add
if [ -x "$CUDA_VADD" ] && [ -e "$BUILD/client/cuda/libcudart.so.13" ]; then
    out=$D/out/srun-cuda.out
    env -u LD_LIBRARY_PATH srun --rgpu=1:api=cuda -o "$out" sh -c \
        'echo "job=$SLURM_JOB_ID lease=$RGPU_LEASE servers=$RGPU_SERVERS ldpath=$LD_LIBRARY_PATH"; exec "$0" 1000' \
        "$CUDA_VADD" || true
    cat "$out"
    job=$(sed -n 's/^job=\([0-9]*\) lease=[0-9][0-9]* .*/\1/p' "$out")
    [ -n "$job" ] || fail "srun --rgpu=1:api=cuda: no job id and RGPU_LEASE in the task's output"
    wait_state "$job" COMPLETED
    grep -q " servers=$s2_ADDR " "$out" || fail "srun --rgpu=1:api=cuda: the lease is not on s2"
    grep -q " ldpath=$BUILD/client/cuda$" "$out" ||
        fail "srun --rgpu=1:api=cuda: LD_LIBRARY_PATH does not start with cuda_libdir"
    [ "$(tail -n1 "$out")" = PASS ] || fail "srun --rgpu=1:api=cuda: no PASS from CUDA vector_add"
    wait_no_lease "$job"
    epilog_released "$job"
    pass "srun --rgpu=1:api=cuda: CUDA vector_add (nvcc) PASSes on s2 through rgpu's runtime; lease released"
else
    e2e_log "NOT RUN: --rgpu=1:api=cuda (this build has no nvcc-built examples/cuda or client/cuda)"
fi

# --rgpu only on an srun inside a batch job without it: the epilog still
# releases (the node's marker), before any --slurm-reclaim round could.
job=$(submit "srun --rgpu=1 sh -c 'echo lease=\$RGPU_LEASE'")
wait_state "$job" COMPLETED
cat "$D/out/$job.out"
grep -q "^lease=[0-9][0-9]*$" "$D/out/$job.out" || fail "job $job: the inner srun --rgpu=1 got no lease"
wait_no_lease "$job"
epilog_released "$job"
[ ! -e "$D/state/job.$job" ] || fail "job $job: marker $D/state/job.$job left behind"
pass "srun --rgpu=1 inside a batch job without it: lease released by the epilog"

# ---- scancel releases ----
job=$(submit "#SBATCH --rgpu=1
echo started; sleep 300")
wait_state "$job" RUNNING
deadline=$((SECONDS + 20))
until [ -n "$(leases_of "$job")" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "running job $job has no lease"
    sleep 0.2
done
lease=$(leases_of "$job")
reclaim_runs "squeue: .* live jobs" 3
[ "$(leases_of "$job")" = "$lease" ] || fail "running job $job lost lease $lease (--slurm-reclaim?)"
pass "--slurm-reclaim: running job $job keeps lease $lease over 3 squeue runs"
scancel "$job"
wait_state "$job" CANCELLED
wait_no_lease "$job"
epilog_released "$job"
expect_node_idle "scancel"
pass "scancel of running job $job released lease $lease"

# ---- more GPUs than exist ----
job=$(submit "#SBATCH --rgpu=$((NGPUS + 1))
echo ran-without-gpus")
wait_state "$job" FAILED
out=$D/out/$job.out
cat "$out"
grep -q "rgpu: job $job: the scheduler at $SCHED refused $((NGPUS + 1)) GPUs" "$out" ||
    fail "job $job: no clear message in its output"
! grep -q ran-without-gpus "$out" || fail "job $job ran its script without GPUs"
expect_node_idle "a job asking for too many GPUs"
[ -z "$(rgpu_cli --json leases | python3 -c 'import json,sys; print(json.load(sys.stdin) or "")')" ] ||
    fail "leases left after the refused job"
pass "--rgpu=$((NGPUS + 1)) (> $NGPUS GPUs): job FAILED with the reason, node idle"

# ---- two jobs, different GPUs; --rgpu=2 sees two devices ----
j1=$(submit "#SBATCH --rgpu=1
sleep 300")
j2=$(submit "#SBATCH --rgpu=1
sleep 300")
wait_state "$j1" RUNNING
wait_state "$j2" RUNNING
deadline=$((SECONDS + 20))
until [ -n "$(leases_of "$j1")" ] && [ -n "$(leases_of "$j2")" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "jobs $j1 $j2 have no leases"
    sleep 0.2
done
gpus=$(rgpu_cli --json leases | python3 -c '
import json, sys
for l in json.load(sys.stdin):
    if l["job"] in sys.argv[1:]:
        for g in l["gpus"]:
            print("%s/%s" % (g["server"], g["index"]))' "$j1" "$j2")
[ "$(echo "$gpus" | wc -l)" -eq 2 ] && [ "$(echo "$gpus" | sort -u | wc -l)" -eq 2 ] ||
    fail "jobs $j1 and $j2 got GPUs: $gpus"
scancel "$j1" "$j2"
wait_state "$j1" CANCELLED
wait_state "$j2" CANCELLED
wait_no_lease "$j1"
wait_no_lease "$j2"
pass "two --rgpu=1 jobs got different GPUs: $(echo $gpus)"

job=$(submit "#SBATCH --rgpu=2
echo \"servers=\$RGPU_SERVERS\"
exec $EXAMPLES/multi_device 10000 2")
wait_state "$job" COMPLETED
out=$D/out/$job.out
cat "$out"
grep -q "multi_device: 2 devices checked, PASS" "$out" || fail "job $job: --rgpu=2 did not see two devices"
wait_no_lease "$job"
pass "--rgpu=2: multi_device saw and checked two devices"

# ---- time limit: Slurm ends the job (TIMEOUT) and the epilog releases ----
job=$(submit "#SBATCH --rgpu=1
#SBATCH --time=1
sleep 600")
wait_state "$job" RUNNING
deadline=$((SECONDS + 180))
until [ "$(job_state "$job")" = TIMEOUT ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "job $job with --time=1 is $(job_state "$job") after 3 minutes"
    sleep 1
done
wait_no_lease "$job"
epilog_released "$job"
expect_node_idle "a job's time limit"
pass "time limit: job $job TIMEOUT, its lease released by the epilog"

# ---- scheduler down ----
kill -TERM "$SCHED_PID"
wait "$SCHED_PID" || true
job=$(submit "#SBATCH --rgpu=1
echo ran-without-gpus")
wait_state "$job" FAILED
out=$D/out/$job.out
cat "$out"
grep -q "rgpu: job $job: cannot get 1 remote GPUs: scheduler $SCHED: " "$out" ||
    fail "job $job: no clear message with the scheduler down"
! grep -q ran-without-gpus "$out" || fail "job $job ran its script without GPUs"
expect_node_idle "a job with the scheduler down"
pass "scheduler down: job FAILED ($(head -n1 "$out")), node idle"

# ---- stop Slurm: empty queue, then the daemons together ----
[ -z "$(squeue -h -o %A)" ] || { scancel $(squeue -h -o %A); sleep 1; }
pids=()
for f in slurmctld slurmd munged; do
    pids+=("$(cat "$D/run/$f.pid")")
done
kill -TERM "${pids[@]}" 2>/dev/null || true
for i in $(seq 50); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
done
