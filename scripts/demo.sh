#!/usr/bin/env bash
# The one-command tour of rfmount: builds the release binaries, exports a
# small demo directory with rfserve on 127.0.0.1, mounts it with rfmount,
# and shows ordinary shell tools working on it (ls, cat, cp, mkdir, mv, rm)
# and the `rf` command-line client against the same server. Then it
# unmounts, stops the server and removes everything it created (also on
# failure or Ctrl-C). Exit status 0 only if every step worked.
#
#   scripts/demo.sh
#
# Needs FUSE (/dev/fuse and fusermount3; as root the script installs the
# fuse3 package with apt-get when fusermount3 is missing). Everything is
# created under $TMPDIR (default /tmp).
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

say() { printf '\n# %s\n' "$*"; }
# run CMD...: shows the command, then runs it.
run() {
	printf '$ %s\n' "$*"
	"$@"
}
check() {
	if "$@"; then
		printf '  ok: %s\n' "$CHECK_WHAT"
	else
		rf_die "check failed: $CHECK_WHAT"
	fi
}

# --- prerequisites --------------------------------------------------------
if ! command -v fusermount3 >/dev/null; then
	if ((EUID == 0)) && command -v apt-get >/dev/null; then
		rf_say "fusermount3 is missing; installing fuse3 ..."
		apt-get install -y fuse3 >/dev/null ||
			{ apt-get update >/dev/null && apt-get install -y fuse3 >/dev/null; } ||
			rf_die "could not install fuse3"
	else
		rf_die "fusermount3 is missing: install FUSE 3 first, e.g. 'sudo apt-get install fuse3' (Debian/Ubuntu) or 'sudo dnf install fuse3' (Fedora)"
	fi
fi
[[ -e /dev/fuse ]] || rf_die "/dev/fuse is missing: load the fuse module ('sudo modprobe fuse') or run where FUSE is available"
command -v cargo >/dev/null || rf_die "cargo is missing: install Rust from https://rustup.rs"

rf_build
T0=$(rf_now)
rf_install_traps
export PATH="$RF_BIN:$PATH"

rf_mktemp D rfdemo
EXPORT=$D/export
MNT=$D/mnt
mkdir -p "$EXPORT/notes" "$MNT" "$D/cache" "$D/logs" "$D/laptop"
printf 'Hello from rfserve!\nThis file lives in the export directory on the server.\n' >"$EXPORT/hello.txt"
printf -- '- try rfmount\n- tell a friend\n' >"$EXPORT/notes/todo.txt"
head -c 300000 /dev/urandom >"$D/laptop/photo.bin"

say "The server exports $EXPORT:"
run ls -lR "$EXPORT"

say "Start the server (port 0 = any free port; it prints the port it got):"
printf '$ rfserve --root %s --listen 127.0.0.1:0 &\n' "$EXPORT"
rf_start_server "$EXPORT" "$D/logs/rfserve.log"
cat "$D/logs/rfserve.log.stdout"
ADDR=$RF_ADDR

say "Mount it. (Without -f, rfmount goes to the background by itself and returns once mounted.)"
printf '$ rfmount %s %s --cache-dir %s -f &\n' "$ADDR" "$MNT" "$D/cache"
rf_mount "$ADDR" "$MNT" "$D/logs/rfmount.log" --cache-dir "$D/cache"
MOUNT_PID=$RF_MOUNT_PID
run findmnt -n -o TARGET,SOURCE,FSTYPE "$MNT"

say "Ordinary tools work on the mount:"
run ls -l "$MNT"
run cat "$MNT/hello.txt"
CHECK_WHAT="cat through the mount shows the server's file"
check cmp -s "$MNT/hello.txt" "$EXPORT/hello.txt"

say "Copy a file in: it is uploaded when cp closes it."
run cp "$D/laptop/photo.bin" "$MNT/"
say "... and it is on the server:"
run ls -l "$EXPORT"
run sha256sum "$D/laptop/photo.bin" "$EXPORT/photo.bin"
CHECK_WHAT="the server's copy is identical"
check cmp -s "$D/laptop/photo.bin" "$EXPORT/photo.bin"

say "mkdir, mv, rm:"
run mkdir "$MNT/archive"
run mv "$MNT/photo.bin" "$MNT/archive/photo.bin"
run rm "$MNT/notes/todo.txt"
printf '$ echo "written through the mount" > %s\n' "$MNT/notes/new.txt"
echo "written through the mount" >"$MNT/notes/new.txt"
run ls -lR "$MNT"
say "The server side agrees:"
run ls -lR "$EXPORT"
CHECK_WHAT="mkdir, mv, rm and the new file reached the server"
check test -d "$EXPORT/archive" -a -f "$EXPORT/archive/photo.bin" -a ! -e "$EXPORT/photo.bin" \
	-a ! -e "$EXPORT/notes/todo.txt" -a -f "$EXPORT/notes/new.txt"
CHECK_WHAT="new.txt has the right content on the server"
check grep -qx "written through the mount" "$EXPORT/notes/new.txt"

say "The rf command talks to the same server, no mount needed:"
run rf ls "$ADDR" /
run rf ls "$ADDR" archive
run rf get "$ADDR" archive/photo.bin "$D/laptop/downloaded.bin"
run sha256sum "$D/laptop/photo.bin" "$D/laptop/downloaded.bin"
CHECK_WHAT="rf get returned the same bytes"
check cmp -s "$D/laptop/photo.bin" "$D/laptop/downloaded.bin"
printf 'uploaded with rf put\n' >"$D/laptop/put.txt"
run rf put "$ADDR" "$D/laptop/put.txt" notes/put.txt
say "The mount sees it (directory listings are cached for up to 1 s, so wait that long):"
run sleep 1.1
run cat "$MNT/notes/put.txt"
CHECK_WHAT="a file uploaded with rf is visible through the mount"
check grep -qx "uploaded with rf put" "$MNT/notes/put.txt"

say "Unmount (rfmount exits by itself) and stop the server:"
run fusermount3 -u "$MNT"
rf_unmount "$MNT" "$MOUNT_PID" || rf_die "rfmount did not exit cleanly after the unmount (log: $(cat "$D/logs/rfmount.log"))"
CHECK_WHAT="unmounted, rfmount exited with status 0"
check true
printf '$ kill %s   # rfserve (Ctrl-C or SIGTERM stop it cleanly)\n' "$RF_SERVER_PID"
kill -TERM "$RF_SERVER_PID"
rf_wait_pid "$RF_SERVER_PID" 10 || rf_die "rfserve did not stop within 10 s"
rf_forget_pid "$RF_SERVER_PID"
CHECK_WHAT="rfserve stopped with status $RF_WAIT_RC"
check test "$RF_WAIT_RC" -eq 0

printf '\nDemo finished in %s s: every step worked. (Temporary files under %s are removed now.)\n' \
	"$(rf_elapsed "$T0")" "$D"
