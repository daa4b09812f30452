#!/bin/bash
# shellcheck disable=SC2015 # "A && B || fail" is meant: fail unless both hold
# The checks of tests/systemd/nspawn-test.sh, run INSIDE the booted
# container by maia-sync-checks.service (after maia-sync.service started).
# Each check appends "PASS name: detail" or "FAIL name: reason" to
# /maia-test/results; details go to /maia-test/log. The unit powers the
# container off when this script ends.
set -euo pipefail

T=/maia-test
RESULTS=$T/results
LOG=$T/log
VECTOR=$T/session-trusting.json
UNIT=maia-sync
STATE=/var/lib/private/maia-sync
DB=$STATE/sync.db
DROPIN_DIR=/run/systemd/system/$UNIT.service.d
: > "$RESULTS"
exec >> "$LOG" 2>&1

# --- helpers (a failed expectation ends the current check) ------------------

fail() { echo "FAIL: $*"; echo "$*" > "$T/.reason"; exit 1; }
note() { echo "  $*"; echo "$*" >> "$T/.detail"; }
prop() { systemctl show -p "$1" --value "$UNIT"; }
mainpid() { prop MainPID; }

# wait_for SECONDS DESCRIPTION COMMAND...: polls every 0.2 s.
wait_for() {
    local secs=$1 what=$2
    shift 2
    local end=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $end ] || fail "timed out after ${secs}s waiting for: $what"
        sleep 0.2
    done
}

health() {
    local body
    body="$(curl -sS --max-time 3 http://127.0.0.1:4203/health)" ||
        fail "GET /health: curl failed"
    [ "$body" = '{"status":"ok"}' ] || fail "GET /health answered: $body"
}
health_quiet() { [ "$(curl -s --max-time 2 http://127.0.0.1:4203/health)" = '{"status":"ok"}' ]; }
state_is() { [ "$(prop ActiveState)/$(prop SubState)" = "$1" ]; }
is_running() { state_is active/running; }
# A MainPID other than $1, with the unit active and running.
restarted_from() {
    local pid
    pid="$(mainpid)"
    [ "$pid" != 0 ] && [ "$pid" != "$1" ] && is_running
}
gone() { ! kill -0 "$1" 2>/dev/null; }
# journal_has PID TEXT: the journal holds TEXT from that process of the unit.
journal_has() { journalctl _PID="$1" -o cat --no-pager | grep -qF "$2"; }
# unit_journal_has TEXT: systemd's own lines about the unit.
unit_journal_has() { journalctl -u "$UNIT" -o cat --no-pager | grep -qF "$1"; }

ws() { python3 "$T/wsclient.py" "$VECTOR" "$@"; }

mode_of() { stat -c %a "$1"; }
# No file in the state directory may belong to anyone but the service user
# (a root-owned -wal or -shm left by an admin command stops the service
# from opening its database).
state_owned_by() {
    local uid=$1 bad
    bad="$(find "$STATE" ! -uid "$uid" -printf '%p (uid %U, mode %m)\n')"
    [ -z "$bad" ] || fail "files in $STATE not owned by the service user $uid: $bad"
}

check() {
    local name=$1 fn=$2 start=$SECONDS rc
    rm -f "$T/.reason" "$T/.detail"
    echo "=== $name"
    set +e
    (set -e; "$fn")
    rc=$?
    set -e
    local took=$((SECONDS - start)) detail
    if [ $rc -eq 0 ]; then
        detail="$(awk 'NR > 1 { printf "; " } { printf "%s", $0 }' "$T/.detail" 2>/dev/null)"
        echo "PASS $name (${took}s): $detail" >> "$RESULTS"
    else
        detail="$(cat "$T/.reason" 2>/dev/null || echo "exit status $rc")"
        echo "FAIL $name (${took}s): $detail" >> "$RESULTS"
        echo "--- journal of $UNIT:"
        journalctl -u "$UNIT" --no-pager -o short-monotonic | tail -n 60
    fi
}

# --- the checks ---------------------------------------------------------------

# (a) Active only through READY=1: the packaged unit is enabled and came up at
# boot; then a control run without $NOTIFY_SOCKET (the server cannot send
# READY=1) answers /health but systemd keeps it "activating" and fails it
# with a start timeout.
check_readiness() {
    [ "$(systemctl is-enabled "$UNIT")" = enabled ] || fail "$UNIT is not enabled by the package"
    wait_for 30 "$UNIT active at boot" is_running
    [ "$(prop Type)" = notify ] || fail "Type=$(prop Type)"
    [ "$(prop NotifyAccess)" = main ] || fail "NotifyAccess=$(prop NotifyAccess)"
    local status
    status="$(prop StatusText)"
    case "$status" in
        "listening on "*) ;;
        *) fail "StatusText is '$status', not the server's 'listening on ...' (sent with READY=1)" ;;
    esac
    health
    note "active (running) at boot, enabled, Type=notify, StatusText='$status', /health ok"

    mkdir -p "$DROPIN_DIR"
    cat > "$DROPIN_DIR/50-no-notify.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=/usr/bin/env -u NOTIFY_SOCKET /usr/bin/maia-sync
TimeoutStartSec=6
Restart=no
EOF
    systemctl daemon-reload
    local pid0
    pid0="$(mainpid)"
    systemctl restart --no-block "$UNIT"
    wait_for 10 "the control run to start" state_is activating/start
    wait_for 5 "the control run to answer /health" health_quiet
    [ "$(mainpid)" != "$pid0" ] || fail "the old process still answers"
    local state
    state="$(prop ActiveState)/$(prop SubState)"
    [ "$state" = activating/start ] || fail "without READY=1 the unit is $state while serving, not activating/start"
    wait_for 15 "the control run to fail" state_is failed/failed
    [ "$(prop Result)" = timeout ] || fail "control run Result=$(prop Result), not timeout"
    note "without NOTIFY_SOCKET: serving but activating/start, then failed (Result=timeout)"
    rm -f "$DROPIN_DIR/50-no-notify.conf"
    systemctl daemon-reload
    systemctl reset-failed "$UNIT"
    systemctl start "$UNIT" # returns once READY=1 arrived
    is_running || fail "not running after start"
    health
}

# (b) The sandbox: a dynamic non-root user, no privileges, seccomp, and
# writable only in its state directory (probed from inside the service's
# own mount namespace: as root there, only read-only mounts can refuse).
check_sandbox() {
    local pid uid gid name
    pid="$(mainpid)"
    [ "$pid" != 0 ] || fail "no MainPID"
    read -r _ uid ruid suid fsuid < <(grep '^Uid:' "/proc/$pid/status")
    read -r _ gid _ < <(grep '^Gid:' "/proc/$pid/status")
    [ "$uid" = "$ruid" ] && [ "$uid" = "$suid" ] && [ "$uid" = "$fsuid" ] ||
        fail "mixed uids: $uid $ruid $suid $fsuid"
    [ "$uid" -ge 61184 ] && [ "$uid" -le 65519 ] ||
        fail "uid $uid is not in systemd's dynamic range 61184-65519"
    name="$(getent passwd "$uid" | cut -d: -f1)"
    [ "$name" = maia-sync ] || fail "uid $uid resolves to '$name', not maia-sync"
    grep -q '^NoNewPrivs:[[:space:]]*1$' "/proc/$pid/status" || fail "NoNewPrivs is not set"
    grep -q '^CapEff:[[:space:]]*0000000000000000$' "/proc/$pid/status" || fail "capabilities: $(grep ^CapEff "/proc/$pid/status")"
    grep -q '^CapBnd:[[:space:]]*0000000000000000$' "/proc/$pid/status" || fail "bounding set: $(grep ^CapBnd "/proc/$pid/status")"
    grep -q '^Seccomp:[[:space:]]*2$' "/proc/$pid/status" || fail "no seccomp filter"
    note "MainPID $pid runs as $name (uid $uid), no capabilities, NoNewPrivs, seccomp"

    [ -f "$DB" ] || fail "$DB does not exist"
    [ "$(readlink /var/lib/maia-sync)" = private/maia-sync ] || fail "/var/lib/maia-sync is not a link to private/maia-sync"
    [ "$(mode_of /var/lib/private)" = 700 ] || fail "/var/lib/private mode $(mode_of /var/lib/private)"
    [ "$(mode_of "$STATE")" = 700 ] || fail "$STATE mode $(mode_of "$STATE"), not 700"
    [ "$(stat -c %u "$STATE")" = "$uid" ] || fail "$STATE not owned by uid $uid"
    [ "$(stat -c %u "$DB")" = "$uid" ] || fail "$DB not owned by uid $uid"
    [ "$(mode_of "$DB")" = 600 ] || fail "$DB mode $(mode_of "$DB"), not 600 (UMask=0077)"
    note "$DB exists (owner $uid, mode 600), $STATE mode 700"

    # Write probes inside the service's mount namespace. As root, so that
    # only the sandbox's read-only mounts (not file permissions) can refuse.
    in_ns() { nsenter -t "$pid" -m -- sh -c "$1" 2>&1; }
    as_service() { nsenter -t "$pid" -m -S "$uid" -G "$gid" -- sh -c "$1" 2>&1; }
    local out dir n=0
    for dir in / /etc /usr /usr/bin /var /var/lib /var/lib/private /var/log /var/cache \
        /opt /srv /boot /root /home /run /run/lock /run/systemd /dev /dev/shm /dev/mqueue; do
        [ -d "$dir" ] || continue
        if out="$(in_ns "echo x > $dir/.sandbox-probe")"; then
            in_ns "rm -f $dir/.sandbox-probe" || true
            fail "the service's namespace lets root write $dir/"
        fi
        case "$out" in
            *"Read-only file system"* | *"Permission denied"*) ;;
            *) fail "writing $dir/ failed for another reason: $out" ;;
        esac
        n=$((n + 1))
    done
    local probe=/var/lib/maia-sync/.sandbox-probe
    out="$(as_service "echo x > $probe && rm $probe && echo ok")" || true
    [ "$out" = ok ] || fail "the service user cannot write its state directory: $out"
    # /tmp and /var/tmp are writable but the service's own (PrivateTmp).
    out="$(as_service 'echo x > /tmp/.sandbox-probe && echo x > /var/tmp/.sandbox-probe && echo ok')" || true
    [ "$out" = ok ] || fail "cannot write its private /tmp: $out"
    [ ! -e /tmp/.sandbox-probe ] && [ ! -e /var/tmp/.sandbox-probe ] ||
        fail "the service's /tmp is not private"
    [ -n "$(ls -A /root)" ] || fail "/root is empty: nothing to hide"
    [ -z "$(in_ns 'find /root /home -mindepth 1 -maxdepth 1 2>/dev/null')" ] ||
        fail "/root or /home visible to the service"
    note "in its mount namespace even root cannot write $n places (/, /etc, /usr, /var/lib, /root, /home, /run, /dev/shm, ...); the state directory is writable; /tmp, /var/tmp private"
}

# (f, part 1) A real write through the sync protocol: the first signed
# transaction of a CoMap, acknowledged by the server.
check_write() {
    ws write 0 1 || fail "write of transaction 1 was not acknowledged"
    ws expect 1 || fail "reading it back failed"
    note "1 signed transaction written over WebSocket, acknowledged, read back"
}

# (g) The unit comment's backup command, as root, while the service runs.
check_backup() {
    local pid uid backup=/root/sync-backup.db
    pid="$(mainpid)"
    uid="$(stat -c %u "$STATE")"
    rm -f "$backup"
    maia-sync backup "$backup" --db /var/lib/private/maia-sync/sync.db ||
        fail "maia-sync backup failed"
    [ "$(head -c 16 "$backup" | tr -d '\0')" = "SQLite format 3" ] || fail "$backup is not an SQLite database"
    local rows
    rows="$(python3 - "$backup" <<'PY'
import sqlite3, sys
c = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok", "integrity_check"
print(c.execute("SELECT count(*) FROM transactions").fetchone()[0])
PY
)" || fail "$backup: SQLite integrity check failed"
    [ "$rows" = 1 ] || fail "$backup holds $rows transactions, expected 1"
    maia-sync check --db "$backup" || fail "maia-sync check --db $backup failed"
    [ "$(mode_of "$STATE")" = 700 ] || fail "$STATE is mode $(mode_of "$STATE") after the backup, not 700"
    state_owned_by "$uid"
    [ "$(mainpid)" = "$pid" ] && is_running || fail "the service did not keep running"
    health
    note "backup is a valid SQLite DB (integrity ok, 1 transaction), check passes; $STATE still 700, owned by the service"
}

# (c) The watchdog: with WatchdogSec=4, a stopped (SIGSTOP) process is
# killed by systemd and restarted; the data is still there.
check_watchdog() {
    mkdir -p "$DROPIN_DIR"
    printf '[Service]\nWatchdogSec=4\nLimitCORE=0\n' > "$DROPIN_DIR/50-watchdog.conf"
    systemctl daemon-reload
    systemctl restart "$UNIT"
    local pid restarts
    pid="$(mainpid)"
    tr '\0' '\n' < "/proc/$pid/environ" | grep -qx 'WATCHDOG_USEC=4000000' ||
        fail "the drop-in's WatchdogSec=4 did not reach the process"
    sleep 6 # past one whole watchdog period: the pings keep it alive
    [ "$(mainpid)" = "$pid" ] && is_running || fail "restarted although it was pinging"
    restarts="$(prop NRestarts)"
    local t0=$SECONDS
    kill -STOP "$pid"
    wait_for 45 "a new MainPID after SIGSTOP" restarted_from "$pid"
    local took=$((SECONDS - t0)) newpid
    newpid="$(mainpid)"
    gone "$pid" || fail "the stopped process $pid still exists"
    wait_for 10 "the watchdog timeout in the journal" unit_journal_has "Watchdog timeout"
    [ "$(prop NRestarts)" -gt "$restarts" ] || fail "NRestarts did not grow"
    health
    ws expect 1 || fail "the data did not survive the watchdog restart"
    note "SIGSTOP of $pid: 'Watchdog timeout', restarted as $newpid after ${took}s, /health ok, data intact"
    rm -f "$DROPIN_DIR/50-watchdog.conf"
    systemctl daemon-reload
    systemctl restart "$UNIT"
    is_running || fail "not running after removing the drop-in"
}

# (d) kill -9 of the main process right after an acknowledged write:
# Restart=on-failure brings it back, with the write.
check_kill9() {
    local pid newpid t0
    ws write 1 3 || fail "write of transactions 2-3 was not acknowledged"
    pid="$(mainpid)"
    t0=$SECONDS
    kill -9 "$pid"
    wait_for 20 "a new MainPID after kill -9" restarted_from "$pid"
    newpid="$(mainpid)"
    wait_for 10 "systemd's line about the kill" unit_journal_has "status=9/KILL"
    health
    ws expect 3 || fail "acknowledged transactions lost by kill -9"
    note "2 more transactions acknowledged, kill -9 $pid, restarted as $newpid after $((SECONDS - t0))s, /health ok, all 3 transactions there"
}

# (e) systemctl stop: the server's clean shutdown lines, exit status 0, and
# the WAL checkpointed away.
check_stop() {
    local pid
    pid="$(mainpid)"
    systemctl stop "$UNIT"
    [ "$(prop ActiveState)" = inactive ] || fail "ActiveState=$(prop ActiveState) after stop"
    [ "$(prop Result)" = success ] || fail "Result=$(prop Result)"
    [ "$(prop ExecMainCode)" = 1 ] || fail "ExecMainCode=$(prop ExecMainCode) (1 = exited)"
    [ "$(prop ExecMainStatus)" = 0 ] || fail "ExecMainStatus=$(prop ExecMainStatus)"
    for line in "SIGTERM received: shutting down" "all connections closed" "storage closed; exiting"; do
        wait_for 5 "'$line' in the journal of $pid" journal_has "$pid" "$line"
    done
    [ ! -e "$DB-wal" ] || fail "$DB-wal left behind"
    [ ! -e "$DB-shm" ] || fail "$DB-shm left behind"
    note "stopped: journal has 'SIGTERM received', 'all connections closed', 'storage closed; exiting'; ExecMainStatus=0; no sync.db-wal/-shm"
}

# (f, part 2) After the stop: the database is there and passes
# `maia-sync check` as root, which leaves nothing behind that would keep the
# service from starting again with all its data.
check_persist() {
    local uid
    uid="$(stat -c %u "$STATE")"
    [ -f "$DB" ] || fail "$DB is gone after the stop"
    maia-sync check --db "$DB" || fail "maia-sync check --db $DB failed"
    state_owned_by "$uid"
    local rows
    rows="$(python3 - "$DB" <<'PY'
import sqlite3, sys
# immutable=1: read without creating -wal/-shm (the service is stopped)
c = sqlite3.connect(f"file:{sys.argv[1]}?immutable=1", uri=True)
print(c.execute("SELECT count(*) FROM transactions").fetchone()[0])
PY
)"
    [ "$rows" = 3 ] || fail "$DB holds $rows transactions, expected 3"
    note "$DB: check passes as root, 3 transactions, nothing root-owned left"
    systemctl start "$UNIT"
    is_running || fail "does not start again after the check"
    health
    ws expect 3 || fail "the data is not served after the restart"
    note "started again: /health ok, all 3 transactions served"
    systemctl stop "$UNIT"
    [ "$(prop ExecMainStatus)" = 0 ] || fail "second stop: ExecMainStatus=$(prop ExecMainStatus)"
}

echo "== checks start"
check a-readiness check_readiness
check b-sandbox check_sandbox
check f-write check_write
check g-backup check_backup
check c-watchdog check_watchdog
check d-kill-9 check_kill9
check e-clean-stop check_stop
check f-data-persists check_persist
echo "DONE" >> "$RESULTS"
