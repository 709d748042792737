#!/bin/sh
# Starts the Swift program on even ranks and the Python one on odd ranks. The Swift binary is
# $MIXED_SWIFT (default: .build/release/mixed in the job directory, shipped with --file).
here=$(dirname "$0")
if [ $((DISTR_NODE_ID % 2)) -eq 0 ]; then
    exec "${MIXED_SWIFT:-.build/release/mixed}"
fi
exec python3 "$here/mixed.py"
