#!/usr/bin/env bash
# Makes the screenshots of the operator's window, each on a virtual X
# display (Xvfb) of the size of a station's screen, grabbed with xwd:
#
#   docs/window.png            `zerotouch demo` at 1280x720: 8 slots, every
#                              attestation mode, on the least screen the
#                              window is made for
#   docs/window-1920x1080.png  `zerotouch gui`: a 16-slot x509-keygen
#                              station of virtual boards, two of them
#                              faulty (one failed board's details shown)
#
# The window opens at 1280x720; on the bigger screen xdotool gives it the
# whole screen, as a window manager's maximise would. A documentation
# tool, not a test: the golden-markup test in ui/ holds the layout.
#
# Needs, besides the build's packages:
#   apt-get install xvfb x11-apps netpbm xdotool
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/zerotouch" ./cmd/zerotouch
zt="$tmp/zerotouch"
export LANG=C.UTF-8 HOME="$tmp/home" XDG_CONFIG_HOME=
mkdir -p "$HOME"

# xserver WIDTHxHEIGHT: starts a virtual display and exports DISPLAY.
xserver() {
	rm -f "$tmp/display"
	Xvfb -displayfd 3 -screen 0 "$1x24" -nolisten tcp 3>"$tmp/display" 2>"$tmp/xvfb.log" &
	pids+=($!)
	until [ -s "$tmp/display" ]; do sleep 0.1; done
	export DISPLAY=":$(cat "$tmp/display")"
}

# grab FILE: the whole screen as PNG.
grab() {
	xwd -root -silent | xwdtopnm 2>/dev/null | pnmtopng >"$1"
	echo "$1 written"
}

# waitfor FILE PATTERN PID: until FILE has a line matching PATTERN, or PID
# has ended (an error: the files are shown).
waitfor() {
	until grep -q "$2" "$1"; do
		if ! kill -0 "$3" 2>/dev/null; then
			cat "$tmp"/*.out "$tmp"/*.err >&2 || true
			echo "window.sh: gave up waiting for '$2' in $1" >&2
			exit 1
		fi
		sleep 0.2
	done
}

# 1. The demo at 1280x720.
xserver 1280x720
"$zt" demo --dir "$tmp/demo" --close-after 6s >"$tmp/demo.out" 2>"$tmp/demo.err" &
demo=$!
pids+=($demo)
waitfor "$tmp/demo.out" '^done: closing the window' "$demo"
sleep 2 # the window polls the upload queue every 0.5 s
grab docs/window.png
wait "$demo"

# 2. A 16-slot station at 1920x1080: on slots 1 and 2 boards whose file
# writes the board refuses, on the others 14 good boards.
xserver 1920x1080
printf 'demo CA password\n' >"$tmp/ca-password"
"$zt" ca init --dir "$tmp/ca" --password-file "$tmp/ca-password" >/dev/null 2>"$tmp/ca.err"
"$zt" board --count 2 --tpm none --baud 1000000 --serial-prefix ZTW --fault rc=fs.file:10 >"$tmp/bad.out" 2>"$tmp/bad.err" &
pids+=($!)
"$zt" board --count 14 --first 3 --tpm none --baud 1000000 --serial-prefix ZTW >"$tmp/good.out" 2>"$tmp/good.err" &
pids+=($!)
waitfor "$tmp/bad.out" 'board(s) running' "${pids[-2]}"
waitfor "$tmp/good.out" 'board(s) running' "${pids[-1]}"
{
	cat <<EOF
station: bench-3
line: line-a
attestation: x509-keygen
id_scope: 0ne0001A2B3
baud: 1000000
ca:
  dir: $tmp/ca
  password_file: $tmp/ca-password
records: $tmp/records.db
gui:
  labels: $tmp/labels
slots:
EOF
	i=1
	for port in $(sed -n 's/^board [^ ]* on \([^ ]*\) .*/\1/p' "$tmp/bad.out" "$tmp/good.out"); do
		echo "  - {name: slot-$i, port: $port}"
		i=$((i + 1))
	done
} >"$tmp/station.yaml"
"$zt" gui --config "$tmp/station.yaml" >"$tmp/gui.out" 2>"$tmp/gui.err" &
gui=$!
pids+=($gui)
until win=$(xdotool search --name '^zerotouch: bench-3' 2>/dev/null | head -1) && [ -n "$win" ]; do
	kill -0 "$gui" 2>/dev/null || { cat "$tmp/gui.err" >&2; exit 1; }
	sleep 0.2
done
sleep 1
xdotool windowsize "$win" 1920 1080
xdotool windowfocus --sync "$win"
sleep 0.5
# Sign in and start, as an operator at the keyboard (the window opens with
# the operator field focused): a name and Enter, a work order and Enter,
# Alt+S.
xdotool type --delay 20 --window "$win" 'ana'
xdotool key --window "$win" Return
xdotool type --delay 20 --window "$win" 'WO-1042'
xdotool key --window "$win" Return alt+s
waitfor "$tmp/gui.err" 'board failed.*ZTW000002' "$gui"
# Until the 14 good boards have passed.
until [ "$("$zt" records list --db "$tmp/records.db" --result passed --limit 0 2>/dev/null | grep -c ' ZTW')" -ge 14 ]; do
	kill -0 "$gui" 2>/dev/null || { cat "$tmp/gui.err" >&2; exit 1; }
	sleep 0.5
done
sleep 8 # the window catches up: Xvfb draws in software, 16 boards share the CPU
xdotool key --window "$win" alt+d # the first failed board's details
sleep 1
grab docs/window-1920x1080.png
kill -TERM "$gui" # closes the window
wait "$gui" || true
