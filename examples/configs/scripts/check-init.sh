#!/bin/sh
# exec checker `init`: runs once when the node starts; a non-zero exit stops the node.
# Verify here that what check.sh needs is present.
command -v curl >/dev/null 2>&1 || { echo "curl is not installed" >&2; exit 1; }
