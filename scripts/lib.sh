# shellcheck shell=bash
# Shared helpers for scripts/bench.sh and scripts/demo.sh. Source it; do not
# run it.
#
# It keeps track of everything a script starts (processes, mounts, temporary
# directories) and undoes it all on exit, also after a failure or Ctrl-C:
# mounts are unmounted (`fusermount3 -u`, then `-uz` when busy), processes
# started by the script are stopped by PID, temporary directories removed.
# Nothing is ever killed by name.
#
# Environment: RF_NO_BUILD=1 skips `cargo build --release` and uses the
# binaries already built; RF_DEBUG=1 timestamps the clean-up steps.

RF_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RF_BIN=${CARGO_TARGET_DIR:-$RF_REPO/target}/release
case $RF_BIN in /*) ;; *) RF_BIN=$RF_REPO/$RF_BIN ;; esac

RF_PIDS=()     # background processes to stop at exit
RF_MOUNTS=()   # mount points to unmount at exit
RF_TMPDIRS=()  # directories to remove at exit
RF_LOGS=()     # server/mount logs, shown when the script fails
# Functions run at exit after the processes are stopped and before the
# temporary directories are removed (e.g. taking down a network namespace
# whose state lives in one of them).
RF_CLEANUP_HOOKS=()
# Where rf_start_server listens, and a command prefix to run rfserve under
# (e.g. `ip netns exec NS`; it must exec rfserve so that the PID is
# rfserve's).
RF_SERVE_HOST=127.0.0.1
RF_SERVE_WRAP=()

rf_say() { printf '%s\n' "$*" >&2; }
rf_die() {
	printf '%s: error: %s\n' "${0##*/}" "$*" >&2
	exit 1
}

# Seconds since the epoch with microseconds, without forking.
rf_now() { printf '%s\n' "${EPOCHREALTIME/,/.}"; }

# rf_elapsed START -> seconds since START, two decimals.
rf_elapsed() { awk -v a="$1" -v b="$(rf_now)" 'BEGIN { printf "%.2f", b - a }'; }

# rf_build: release build of the three binaries (waits for the cargo lock
# when someone else is building). RF_NO_BUILD=1 uses the binaries already in
# target/release as they are.
rf_build() {
	if [[ ${RF_NO_BUILD:-} == 1 ]]; then
		rf_say "RF_NO_BUILD=1: using the binaries in $RF_BIN as they are"
	else
		rf_say "building release binaries (cargo build --release) ..."
		(cd "$RF_REPO" && cargo build --release --bins) || rf_die "cargo build --release failed"
	fi
	local b
	for b in rfserve rf rfmount; do
		[[ -x $RF_BIN/$b ]] || rf_die "$RF_BIN/$b was not built"
	done
}

# rf_mktemp VAR PREFIX: makes a new directory under $TMPDIR (or /tmp),
# stores its canonical path in VAR, and removes it at exit. (Not a command
# substitution: the directory must be recorded in this shell.)
rf_mktemp() {
	local d
	d=$(mktemp -d "${TMPDIR:-/tmp}/$2.XXXXXX") || rf_die "mktemp failed"
	d=$(cd "$d" && pwd -P)
	RF_TMPDIRS+=("$d")
	printf -v "$1" '%s' "$d"
}

# rf_is_mounted DIR: true when DIR (an absolute, canonical path without
# spaces) is a mount point. Reads /proc/self/mountinfo rather than stat()ing
# the directory, so a hung FUSE server cannot hang the check.
rf_is_mounted() {
	awk -v m="$1" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# rf_wait_pid PID SECONDS: waits for a child to exit; false on timeout.
# Sets RF_WAIT_RC to its exit status.
rf_wait_pid() {
	local pid=$1 deadline
	deadline=$(($(date +%s) + $2))
	while kill -0 "$pid" 2>/dev/null; do
		(($(date +%s) < deadline)) || return 1
		sleep 0.05
	done
	RF_WAIT_RC=0
	wait "$pid" 2>/dev/null || RF_WAIT_RC=$?
	return 0
}

# rf_stop_pid PID: SIGTERM, a grace period, then SIGKILL.
rf_stop_pid() {
	local pid=$1
	kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
	kill -TERM "$pid" 2>/dev/null || true
	if ! rf_wait_pid "$pid" 10; then
		rf_say "process $pid ignored SIGTERM; killing it"
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
}

rf_forget_pid() {
	local keep=() p
	for p in "${RF_PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	RF_PIDS=("${keep[@]}")
}

rf_forget_mount() {
	local keep=() m
	for m in "${RF_MOUNTS[@]}"; do [[ $m == "$1" ]] || keep+=("$m"); done
	RF_MOUNTS=("${keep[@]}")
}

# rf_start_server ROOT LOG [extra rfserve args...]
# Starts rfserve on $RF_SERVE_HOST (127.0.0.1) with a free port, under
# $RF_SERVE_WRAP if set. Sets RF_SERVER_PID and RF_ADDR (HOST:PORT).
rf_start_server() {
	local root=$1 log=$2 out line deadline
	shift 2
	out=$log.stdout
	${RF_SERVE_WRAP[@]+"${RF_SERVE_WRAP[@]}"} "$RF_BIN/rfserve" --root "$root" \
		--listen "$RF_SERVE_HOST:0" "$@" >"$out" 2>"$log" &
	RF_SERVER_PID=$!
	RF_LOGS+=("$log")
	RF_PIDS+=("$RF_SERVER_PID")
	deadline=$(($(date +%s) + 15))
	line=
	while :; do
		line=$(grep -m1 '^rfserve listening on ' "$out" 2>/dev/null || true)
		[[ -n $line ]] && break
		if ! kill -0 "$RF_SERVER_PID" 2>/dev/null; then
			cat "$log" >&2
			rf_die "rfserve exited before announcing its port"
		fi
		(($(date +%s) < deadline)) || { cat "$log" >&2; rf_die "rfserve did not announce its port within 15 s"; }
		sleep 0.05
	done
	# shellcheck disable=SC2034 # used by the sourcing script
	RF_ADDR=$RF_SERVE_HOST:${line##*:}
}

# rf_mount ADDR MNT LOG [extra rfmount args...]
# Runs `rfmount -f` in the background and waits until MNT is mounted.
# Sets RF_MOUNT_PID.
rf_mount() {
	local addr=$1 mnt=$2 log=$3 deadline
	shift 3
	mnt=$(cd "$mnt" && pwd -P) || rf_die "no mount point $2"
	"$RF_BIN/rfmount" "$addr" "$mnt" -f "$@" 2>"$log" &
	RF_MOUNT_PID=$!
	RF_LOGS+=("$log")
	RF_PIDS+=("$RF_MOUNT_PID")
	RF_MOUNTS+=("$mnt")
	deadline=$(($(date +%s) + 30))
	until rf_is_mounted "$mnt"; do
		if ! kill -0 "$RF_MOUNT_PID" 2>/dev/null; then
			wait "$RF_MOUNT_PID" 2>/dev/null || true
			rf_forget_pid "$RF_MOUNT_PID"
			cat "$log" >&2
			rf_die "rfmount exited before mounting $mnt"
		fi
		(($(date +%s) < deadline)) || { cat "$log" >&2; rf_die "rfmount did not mount $mnt within 30 s"; }
		sleep 0.05
	done
}

# rf_unmount MNT [PID]: unmounts (retrying while busy, lazily as a last
# resort) and waits for the rfmount process PID to exit by itself. Returns
# false if anything had to be forced or rfmount exited with an error.
rf_unmount() {
	local mnt=$1 pid=${2:-} ok=0
	mnt=$(cd "$mnt" 2>/dev/null && pwd -P || printf '%s' "$mnt")
	if rf_is_mounted "$mnt"; then
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			fusermount3 -u "$mnt" 2>/dev/null && break
			sleep 0.3
		done
		if rf_is_mounted "$mnt"; then
			rf_say "warning: $mnt still busy after 10 tries; lazy unmount"
			fusermount3 -uz "$mnt" || true
			ok=1
		fi
	fi
	rf_forget_mount "$mnt"
	if [[ -n $pid ]]; then
		if ! rf_wait_pid "$pid" 30; then
			rf_say "warning: rfmount (pid $pid) still running 30 s after unmount; stopping it"
			rf_stop_pid "$pid"
			ok=1
		elif ((RF_WAIT_RC != 0)); then
			rf_say "warning: rfmount (pid $pid) exited with status $RF_WAIT_RC"
			ok=1
		fi
		rf_forget_pid "$pid"
	fi
	return $ok
}

# rf_vmhwm PID -> peak resident set size in KiB (0 if unknown).
rf_vmhwm() {
	awk '/^VmHWM:/ { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# rf_cleanup: the EXIT trap. Undoes everything, in order: mounts, processes,
# temporary directories (never across a file-system boundary).
rf_cleanup() {
	local rc=$? m p d
	set +e
	trap - INT TERM
	[[ -n ${RF_DEBUG:-} ]] && rf_say "cleanup: start at $(rf_now)"
	if ((rc != 0 && rc != 130 && rc != 143)); then
		for d in "${RF_LOGS[@]}"; do
			[[ -s $d ]] || continue
			rf_say "--- last lines of $d:"
			tail -n 15 "$d" >&2
		done
	fi
	for m in "${RF_MOUNTS[@]}"; do
		if rf_is_mounted "$m"; then
			fusermount3 -u "$m" 2>/dev/null || { sleep 0.5; fusermount3 -u "$m" 2>/dev/null; } ||
				fusermount3 -uz "$m" 2>/dev/null ||
				rf_say "warning: could not unmount $m"
		fi
	done
	for p in "${RF_PIDS[@]}"; do
		rf_stop_pid "$p"
	done
	[[ -n ${RF_DEBUG:-} ]] && rf_say "cleanup: processes stopped at $(rf_now)"
	for d in "${RF_CLEANUP_HOOKS[@]}"; do
		"$d"
	done
	for d in "${RF_TMPDIRS[@]}"; do
		if awk -v d="$d/" 'index($5 "/", d) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
			rf_say "warning: something is still mounted under $d; leaving it"
		else
			rm -rf --one-file-system "$d"
		fi
	done
	[[ -n ${RF_DEBUG:-} ]] && rf_say "cleanup: done at $(rf_now)"
	exit "$rc"
}

rf_install_traps() {
	trap rf_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}
