#!/bin/sh
# exec switcher `current`: print the name of the entry point the public entry points at now.
# This example keeps it in a file that switch.sh rewrites; a real script would ask the load
# balancer or the router. An empty line means "none of the configured entry points". The leader
# runs it after every switch and periodically, and repairs drift it reports.
state="${DHAF_EXAMPLE_STATE_DIR:-/var/lib/dhaf}/${DHAF_SERVICE:-service}.current"
[ -f "$state" ] && head -n 1 "$state" || echo
