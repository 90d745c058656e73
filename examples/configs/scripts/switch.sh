#!/bin/sh
# exec switcher `switch`: point the public entry at entry point $1 (address $2).
# DHAF_FENCING_TOKEN is the leader term that decided the switch; record it with the change.
# Exit non-zero (with the reason on the last stderr line) and the leader retries with backoff.
set -eu
state_dir="${DHAF_EXAMPLE_STATE_DIR:-/var/lib/dhaf}"
state="$state_dir/${DHAF_SERVICE:-service}.current"
tmp="$state.tmp"
printf '%s\n%s\nterm %s\n' "$1" "$2" "${DHAF_FENCING_TOKEN:-?}" > "$tmp" || { echo "cannot write $tmp" >&2; exit 1; }
mv "$tmp" "$state"
