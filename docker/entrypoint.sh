#!/bin/sh
# The command picks the service: gateway | moderation | retrieval | feedback | feedback-worker | openchatkit ARGS...
# Anything else runs as given (e.g. `sh`). Each service is configured by its env prefix.
set -eu
service="${1:-gateway}"
[ "$#" -gt 0 ] && shift
case "$service" in
  gateway) exec python -m gateway "$@" ;;
  moderation) exec python -m moderation_server "$@" ;;
  retrieval) exec python -m retrieval_server "$@" ;;
  feedback) exec python -m feedback_server "$@" ;;
  feedback-worker) exec python -m feedback_server.worker "$@" ;;
  openchatkit) exec python -m openchatkit.cli "$@" ;;
  *) exec "$service" "$@" ;;
esac
