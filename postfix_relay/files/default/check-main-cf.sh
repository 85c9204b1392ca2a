#!/bin/sh
# Managed by Salt (postfix_relay): used as file.managed's check_cmd for main.cf.
# Usage: postfix_relay-check-main-cf CANDIDATE
# Fails, printing Postfix's words, when Postfix rejects the candidate main.cf
# (syntax) or warns about it (unknown "unused" or duplicate parameters), so
# the working main.cf is never replaced by one Postfix would misread.
set -u
candidate=$1
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
cp "$candidate" "$dir/main.cf" && cp /etc/postfix/master.cf "$dir/master.cf" || exit 1
# Postfix waits until main.cf is about 2 s old before reading it (in case an
# editor is still writing it); these private copies are complete, so age them.
touch -d '-1 minute' "$dir/main.cf" "$dir/master.cf" || exit 1
postconf -c "$dir" -n >/dev/null 2>"$dir/stderr"
rc=$?
if [ "$rc" -ne 0 ] || grep -q 'warning:' "$dir/stderr"; then
    echo "postfix_relay: Postfix does not accept the new main.cf, so the working one stays in place." >&2
    echo "Fix pillar postfix_relay:main_cf, then apply again. Postfix said:" >&2
    sed "s|$dir/main.cf|main.cf|g" "$dir/stderr" | sort -u >&2
    exit 1
fi
exit 0
