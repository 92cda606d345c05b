#!/usr/bin/env bash
# diag-idle.sh — the idle cost of the diagnostics port (docs/benchmarks.md, "Diagnostics port").
#
# Starts the same stripped agent binary several ways at the same time, each with its own data
# directory, all connected to one local Mosquitto, lets them sit idle, then reads from /proc:
# resident memory (VmRSS), threads, CPU time used during the idle window, and the live heap
# after the last garbage collection (GODEBUG=gctrace=1; the idle window is over two minutes so
# that the runtime's periodic forced collection has run). Variants:
#
#   off       [diag] listen = "off" (the history sampler, audit log and auth store still run)
#   loopback  the default, plain HTTP on a loopback port
#   tls       a non-loopback address: HTTPS with the self-signed ECDSA certificate
#   base      (only with BASE_BIN) another binary, e.g. one built before the port existed;
#             its configuration has no [diag] section
#
# Running them side by side gives every variant the same machine load; ROUNDS repeats it.
# Usage: scripts/diag-idle.sh            (IDLE=130 ROUNDS=3 BASE_BIN= by default)
# Needs: go, mosquitto.
set -euo pipefail

IDLE=${IDLE:-130}
ROUNDS=${ROUNDS:-3}
BASE_BIN=${BASE_BIN:-}
GO=${GO:-go}
MOSQUITTO=${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "building the stripped agent" >&2
(cd "$root" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags '-s -w' -o "$work/posagent" ./cmd/posagent)

bport=$(freeport)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n' "$bport" >"$work/mosquitto.conf"
"$MOSQUITTO" -c "$work/mosquitto.conf" &
pids+=($!)
sleep 0.5

variants=(off loopback tls)
[[ -n $BASE_BIN ]] && variants+=(base)

# config VARIANT DIR: the agent's configuration file for one variant.
config() {
	local v=$1 dir=$2 diag
	case $v in
	off) diag=$'[diag]\nlisten = "off"' ;;
	loopback) diag=$'[diag]\nlisten = "127.0.0.1:'"$(freeport)"'"' ;;
	tls) diag=$'[diag]\nlisten = "0.0.0.0:'"$(freeport)"'"' ;;
	base) diag="" ;;
	esac
	cat >"$dir/posagent.toml" <<EOF
device_id = "IDLE-$v"
data_dir = "$dir/data"
board = "sim"

[tms]
broker = "tcp://127.0.0.1:$bport"
keepalive = "300s"

[log]
file = "$dir/agent.log"

$diag
EOF
}

# ticks PID: user + system CPU time of a process, in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

hz=$(getconf CLK_TCK)
printf '%-9s %5s %9s %9s %7s %8s %9s %7s\n' variant round rss_KiB hwm_KiB threads cpu_ms heap_MB online
for round in $(seq 1 "$ROUNDS"); do
	declare -A apid=() t0=()
	for v in "${variants[@]}"; do
		dir="$work/$v-$round"
		mkdir -p "$dir"
		config "$v" "$dir"
		bin="$work/posagent"
		[[ $v == base ]] && bin=$BASE_BIN
		GODEBUG=gctrace=1 "$bin" run --config "$dir/posagent.toml" 2>"$dir/stderr" &
		apid[$v]=$!
		pids+=($!)
	done
	# Start-up (database, TLS certificate, connection) is not idle: the window starts after it.
	sleep 10
	for v in "${variants[@]}"; do t0[$v]=$(ticks "${apid[$v]}"); done
	sleep "$IDLE"
	for v in "${variants[@]}"; do
		p=${apid[$v]}
		rss=$(awk '/^VmRSS/{print $2}' "/proc/$p/status")
		hwm=$(awk '/^VmHWM/{print $2}' "/proc/$p/status")
		thr=$(awk '/^Threads/{print $2}' "/proc/$p/status")
		cpu=$((($(ticks "$p") - t0[$v]) * 1000 / hz))
		# gctrace: "gc N @t s P%: … A->B->C MB, …": C is the heap live after that collection.
		heap=$(grep -o '[0-9]*->[0-9]*->[0-9]* MB' "$work/$v-$round/stderr" | tail -1 | sed 's/.*->//; s/ MB//' || true)
		online=no
		grep -q 'TMS link up' "$work/$v-$round/agent.log" && online=yes
		printf '%-9s %5d %9d %9d %7d %8d %9s %7s\n' "$v" "$round" "$rss" "$hwm" "$thr" "$cpu" "${heap:-?}" "$online"
		kill "$p"
		wait "$p" 2>/dev/null || true
	done
	unset apid t0
done
