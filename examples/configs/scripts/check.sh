#!/bin/sh
# exec checker `check`: called as `check.sh <entry point name> <entry point ip>`.
# Exit 0 = healthy; otherwise the last stderr line is the reason the nodes report.
url="http://$2:${DHAF_EXAMPLE_PORT:-80}/health"
curl -fsS --max-time 3 -o /dev/null "$url" 2>/dev/null || { echo "$1: GET $url failed" >&2; exit 1; }
