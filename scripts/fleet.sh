#!/usr/bin/env bash
# make fleet: the standard fleet-scale runs of cmd/fleetsim against Mosquitto on loopback, then
# docs/fleet.md and its storm plots made from their reports (fleetsim render).
#
# Long (about half an hour on 2 cores) and heavy: run it on a quiet machine. Sizes and windows
# can be changed through the environment, e.g. FLEET_LADDER="2000 5000" FLEET_N=2000 for a
# quick look. The reports stay in $FLEET_OUT for later reading or rendering.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
OUT=${FLEET_OUT:-artefacts/fleet}
LADDER=${FLEET_LADDER:-"5000 10000 15000 18000"} # steady-state sizes, one run each
WINDOW=${FLEET_WINDOW:-2m}                   # steady-state window
N=${FLEET_N:-10000}                          # the scenario run's size
BLACKHOLE_N=${FLEET_BLACKHOLE_N:-2000}       # the keepalive-detected partition's size
IDLE_N=${FLEET_IDLE_N:-1000}
IDLE_WINDOW=${FLEET_IDLE_WINDOW:-10m}        # two keepalive intervals at the default 300 s
PAGE=${FLEET_PAGE:-docs/fleet.md}
PLOT=${FLEET_PLOT:-docs/fleet-storm.png}

mkdir -p "$OUT"
rm -f "$OUT"/*.json
"$GO" build -o "$OUT/fleetsim" ./cmd/fleetsim
sim=("$OUT/fleetsim" -mosquitto -every 30s)

# A size the machine does not sustain is a finding for the page, not a failure of the target:
# its report says what broke.
for n in $LADDER; do
	echo "== steady state, $n terminals"
	"${sim[@]}" -n "$n" -scenario steady -duration "$WINDOW" -report "$OUT/steady-$n.json" || true
done

echo "== storm (with and without jitter), partition (reset), config push, OTA rollout: $N terminals"
"${sim[@]}" -n "$N" -scenario storm,partition,config,ota -storm-compare -storm-down 10s \
	-partition-share 0.2 -partition-for 30s -partition-mode reset -partition-events 10 \
	-ota-size 16384 -report "$OUT/scenarios-$N.json"

echo "== partition noticed by keepalive only (blackhole): $BLACKHOLE_N terminals, keepalive 30 s"
"${sim[@]}" -n "$BLACKHOLE_N" -scenario partition -keepalive 30s -partition-share 0.2 -partition-for 90s \
	-partition-mode blackhole -partition-events 10 -report "$OUT/blackhole-$BLACKHOLE_N.json"

echo "== idle traffic: $IDLE_N terminals at the production intervals for $IDLE_WINDOW"
"${sim[@]}" -n "$IDLE_N" -scenario idle -duration "$IDLE_WINDOW" -report "$OUT/idle-$IDLE_N.json"

"$OUT/fleetsim" render -o "$PAGE" -plot "$PLOT" "$OUT"/*.json
echo "fleet: wrote $PAGE and $PLOT (reports in $OUT)"
