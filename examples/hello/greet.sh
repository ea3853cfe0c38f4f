#!/bin/sh
# The program examples/hello builds: prints a greeting from the image's environment.
if [ "$1" = "--selftest" ]; then
  [ "$(GREETING=x NAME=y "$0" | head -n 1)" = "x, y!" ] || { echo "selftest failed" >&2; exit 1; }
  echo "selftest ok"
  exit 0
fi
echo "${GREETING:-Hello}, ${NAME:-world}!"
echo "built at stage: $(cat /etc/hello-build-info 2>/dev/null || echo unknown)"
