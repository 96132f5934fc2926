# The guard quill-pgtest (and tests/python/postgres_cluster.py) starts each postmaster under, as
# `sh -c "$(cat guard.sh)" guard CLUSTER_DIR POSTGRES ARGS...`, with its stdin a pipe that only
# the test process holds. The test process may die without cleaning up (SIGKILL, a static that
# is never dropped): the pipe then reaches end-of-file, and a postmaster still running is shut
# down (immediate mode) and its directory removed. Once the postmaster has exited for any other
# reason the test process owns the directory, and the guard leaves it. Exits with the
# postmaster's status.
set -u
dir=$1
shift
exec 3<&0
"$@" </dev/null 3<&- &
postmaster=$!
{
    while read -r _; do :; done
    if kill -QUIT "$postmaster" 2>/dev/null; then
        while kill -0 "$postmaster" 2>/dev/null; do sleep 0.05; done
        rm -rf "$dir"
    fi
} <&3 &
exec 3<&-
wait "$postmaster"
