#!/bin/sh
# exec switcher `init`: run once when the node starts, as the provider's initialisation (check
# credentials, create what the other scripts need). Its output is ignored; a non-zero exit stops
# the node with the last stderr line as the reason.
set -eu
state_dir="${DHAF_EXAMPLE_STATE_DIR:-/var/lib/dhaf}"
mkdir -p "$state_dir" || { echo "cannot create $state_dir" >&2; exit 1; }
