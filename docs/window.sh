#!/usr/bin/env bash
# Makes docs/window.png: the operator's window during `zerotouch demo`,
# shown on a virtual X display (Xvfb) and grabbed from it with xwd.
#
# Needs, besides the build's packages: apt-get install xvfb x11-apps netpbm
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"' EXIT

go build -o "$tmp/zerotouch" ./cmd/zerotouch
Xvfb -displayfd 3 -screen 0 1600x1000x24 -nolisten tcp 3>"$tmp/display" 2>"$tmp/xvfb.log" &
pids+=($!)
until [ -s "$tmp/display" ]; do sleep 0.1; done
export DISPLAY=":$(cat "$tmp/display")" LANG=C.UTF-8

"$tmp/zerotouch" demo --dir "$tmp/demo" --close-after 4s >"$tmp/out" 2>"$tmp/err" &
demo=$!
pids+=($demo)
until grep -q '^done: closing the window' "$tmp/out"; do
	if ! kill -0 "$demo" 2>/dev/null; then
		cat "$tmp/out" "$tmp/err" >&2
		exit 1
	fi
	sleep 0.2
done
sleep 2 # the window polls the upload queue every 0.5 s
xwd -root -silent | xwdtopnm 2>/dev/null | pnmcut -left 0 -top 0 -width 1560 -height 980 | pnmtopng >docs/window.png
wait "$demo"
echo "docs/window.png written"
