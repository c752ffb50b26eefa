#!/usr/bin/env bash
# Benchmark of rfmount against a plain local directory, in the same run.
#
#   scripts/bench.sh            full run: 1 GiB file, 1000 small files,
#                               10,000-entry directory, a source tree
#   scripts/bench.sh --quick    small run: 64 MiB, 200 files, 2000 entries
#   scripts/bench.sh --memory   only the memory check: a 4 GiB file copied
#                               into and out of the mount; PASS when the peak
#                               RSS of rfmount and rfserve both stay < 64 MiB
#   scripts/bench.sh --tls      any of the above with every connection over
#                               TLS (self-signed server, pinned fingerprint)
#   scripts/bench.sh --tls-compare
#                               only the cold read of the 1 GiB file, from a
#                               plain and a TLS rfserve of the same export in
#                               turn, BENCH_ROUNDS times each (default 3);
#                               PASS when the TLS median is within 20 % of
#                               the plain median
#
# Environment: BENCH_SIZE_MB (size of the big file; default 1024, 64 with
# --quick, 4096 with --memory), BENCH_ROUNDS (--tls-compare), BENCH_CACHE_SIZE
# (rfmount --cache-size; default twice the big file, at least 1024M), TMPDIR
# (where everything is created), CARGO_TARGET_DIR, RF_NO_BUILD=1 (skip the
# cargo build).
#
# Everything runs on this machine: rfserve on 127.0.0.1 exporting a directory
# of the temporary area, rfmount -f mounting it, and the "local" reference is
# a plain directory on the same disk. Each workload runs once on each side;
# the machine is shared and noisy, so treat small differences as noise.
#
# What is measured (wall-clock time of the command):
#   cp 1 GiB file in     `cp SRC DEST`. On the mount this includes the upload
#                        done when cp closes the file (the server also
#                        fsyncs it). Locally it is plain cp: the data only
#                        reaches the page cache, no sync.
#   cold read            `cat FILE >/dev/null`. The mount is remounted with a
#                        new, empty cache directory first, so the whole file
#                        is downloaded. When running as root the kernel page
#                        cache is dropped (echo 3 >/proc/sys/vm/drop_caches)
#                        before both the local and the mount read, so both
#                        start from disk; otherwise the local read is warm
#                        (noted in the output).
#   warm read            the same `cat` again: local = page cache, mount =
#                        rfmount's on-disk cache (open checks the version
#                        with the server: one round trip).
#   write N x 4 KiB      `cp -r DIR DEST` of N random 4 KiB files.
#   read back cold       remount with an empty cache (and drop caches), then
#                        `find DIR -type f -exec cat {} + >/dev/null`.
#   ls -l dir cold/warm  the directory is created directly in the server's
#                        export (and locally); after a fresh remount (and
#                        drop caches) `ls -l DIR >/dev/null`, then again.
#                        "warm" is only warm within rfmount's attr/dir
#                        timeouts (default 1 s).
#   tar x                `tar xf` of a tarball of a real source tree (this
#                        repository's crates/ and some crates from
#                        ~/.cargo/registry/src) into the mount / local dir.
#   peak RSS             VmHWM from /proc/PID/status: the largest of all
#                        rfmount processes of the run (read just before each
#                        unmount), and of rfserve at the end.
# Every workload's result is checked (cmp / diff / counts) outside the timing;
# a wrong result aborts the benchmark.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

MODE=full
TLS=0
for a in "$@"; do
	case $a in
	--quick) MODE=quick ;;
	--memory) MODE=memory ;;
	--tls) TLS=1 ;;
	--tls-compare) MODE=tls-compare ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done

case $MODE in
full) SIZE_MB=${BENCH_SIZE_MB:-1024} NFILES=1000 NDIR=10000 TREE=full ;;
quick) SIZE_MB=${BENCH_SIZE_MB:-64} NFILES=200 NDIR=2000 TREE=small ;;
memory) SIZE_MB=${BENCH_SIZE_MB:-4096} ;;
tls-compare) SIZE_MB=${BENCH_SIZE_MB:-1024} ROUNDS=${BENCH_ROUNDS:-3} ;;
esac
[[ $SIZE_MB =~ ^[1-9][0-9]*$ ]] || rf_die "BENCH_SIZE_MB must be a positive number of MiB"

if [[ $MODE == memory ]]; then
	need_kb=$((SIZE_MB * 1024 * 4 + 1024 * 1024))
	avail_kb=$(df -Pk "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $4 }')
	if ((avail_kb < need_kb)); then
		rf_say "Sorry: the memory check needs about $((need_kb / 1024 / 1024)) GiB free under ${TMPDIR:-/tmp}"
		rf_say "(the ${SIZE_MB} MiB source file, its copy in the export, rfmount's cache copy and"
		rf_say "the copy read back out), and only $((avail_kb / 1024 / 1024)) GiB are free there. Point"
		rf_say "TMPDIR to a roomier disk, or set BENCH_SIZE_MB lower."
		exit 1
	fi
fi

T_START=$(rf_now)
rf_build
T_BUILT=$(rf_now)
rf_install_traps

rf_mktemp W rfbench
mkdir -p "$W"/{src,local,export,mnt,logs}
MNT=$(cd "$W/mnt" && pwd -P)
# The data cache must hold the big file whole (rfmount fetches whole files);
# at least rfmount's default of 1 GiB.
CACHE_SIZE=${BENCH_CACHE_SIZE:-$((2 * SIZE_MB < 1024 ? 1024 : 2 * SIZE_MB))M}
MOUNT_ARGS=(--cache-size "$CACHE_SIZE")

# Can we make reads cold by dropping the page cache?
if [[ -w /proc/sys/vm/drop_caches ]] && { sync; echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
	CAN_DROP=1
else
	CAN_DROP=0
fi
drop_caches() {
	if ((CAN_DROP)); then
		sync
		echo 3 >/proc/sys/vm/drop_caches
	fi
}

MOUNT_N=0
MOUNT_PID=
MOUNT_HWM=0 # KiB, max over all rfmount processes
note_mount_hwm() {
	local h
	h=$(rf_vmhwm "$MOUNT_PID")
	((h > MOUNT_HWM)) && MOUNT_HWM=$h
	return 0
}
# remount: unmount the current mount (if any) and mount again with a new,
# empty cache directory, to MOUNT_ADDR with MOUNT_ARGS and MOUNT_TLS_ARGS.
MOUNT_TLS_ARGS=()
remount() {
	if [[ -n $MOUNT_PID ]]; then
		note_mount_hwm
		rf_unmount "$MNT" "$MOUNT_PID" || rf_die "unmount of $MNT was not clean (see $W/logs/rfmount.$MOUNT_N.log)"
		MOUNT_PID=
	fi
	MOUNT_N=$((MOUNT_N + 1))
	rm -rf "$W/cache"
	mkdir "$W/cache"
	rf_mount "$MOUNT_ADDR" "$MNT" "$W/logs/rfmount.$MOUNT_N.log" --cache-dir "$W/cache" \
		"${MOUNT_ARGS[@]}" ${MOUNT_TLS_ARGS[@]+"${MOUNT_TLS_ARGS[@]}"}
	MOUNT_PID=$RF_MOUNT_PID
}

# timed VAR CMD...: runs CMD, stores its wall time in seconds in VAR.
l='' m='' lw='' mw='' t_in='' t_out=''
timed() {
	local __var=$1 __t
	shift
	__t=$(rf_now)
	"$@"
	printf -v "$__var" '%s' "$(rf_elapsed "$__t")"
}

cat_null() { cat "$@" >/dev/null; }
cat_tree() { find "$1" -type f -exec cat {} + >/dev/null; }
ls_null() { ls -l "$1" >/dev/null; }

mib() { awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }'; }

# make_random FILE MIB
make_random() {
	head -c "$(($2 * 1024 * 1024))" /dev/urandom >"$1"
}

# start_tls_server LOG: an rfserve --tls of the export with a self-signed
# certificate; sets TLS_ADDR, TLS_PID and TLS_ARGS (what rfmount needs).
start_tls_server() {
	local fp
	rf_start_server "$W/export" "$1" --tls --state-dir "$W/state"
	fp=$(awk '/^rfserve certificate sha256 / { print $4; exit }' "$1.stdout")
	[[ -n $fp ]] || rf_die "rfserve --tls printed no certificate fingerprint"
	TLS_ADDR=$RF_ADDR TLS_PID=$RF_SERVER_PID
	TLS_ARGS=(--tls-fingerprint "$fp")
}

if ((TLS)) && [[ $MODE != tls-compare ]]; then
	start_tls_server "$W/logs/rfserve.log"
	MOUNT_TLS_ARGS=("${TLS_ARGS[@]}")
	rf_say "rfserve --tls on $RF_ADDR (pid $RF_SERVER_PID), workdir $W"
else
	rf_start_server "$W/export" "$W/logs/rfserve.log"
	rf_say "rfserve on $RF_ADDR (pid $RF_SERVER_PID), workdir $W"
fi
MOUNT_ADDR=$RF_ADDR

# ----------------------------------------------------------- tls-compare --
if [[ $MODE == tls-compare ]]; then
	PLAIN_ADDR=$RF_ADDR
	start_tls_server "$W/logs/rfserve-tls.log"
	rf_say "rfserve --tls on $TLS_ADDR (pid $TLS_PID)"
	rf_say "creating a ${SIZE_MB} MiB random file in the export ..."
	make_random "$W/export/big" "$SIZE_MB"
	plain_times=() tls_times=()
	for ((r = 1; r <= ROUNDS; r++)); do
		for side in plain tls; do
			if [[ $side == plain ]]; then
				MOUNT_ADDR=$PLAIN_ADDR MOUNT_TLS_ARGS=()
			else
				MOUNT_ADDR=$TLS_ADDR MOUNT_TLS_ARGS=("${TLS_ARGS[@]}")
			fi
			remount
			drop_caches
			timed m cat_null "$MNT/big"
			cmp "$W/export/big" "$MNT/big" || rf_die "big read over $side differs from the export"
			rf_say "  round $r: cold read over $side: $m s"
			if [[ $side == plain ]]; then plain_times+=("$m"); else tls_times+=("$m"); fi
		done
	done
	note_mount_hwm
	rf_unmount "$MNT" "$MOUNT_PID" || rf_die "the final unmount was not clean"
	MOUNT_PID=
	median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
	pm=$(median "${plain_times[@]}")
	tm=$(median "${tls_times[@]}")
	verdict=$(awk -v p="$pm" -v t="$tm" 'BEGIN { print (t <= 1.2 * p) ? "PASS" : "FAIL" }')
	echo
	printf '%-34s %s\n' "cold read of" "$SIZE_MB MiB, fresh cache$( ((CAN_DROP)) && echo ', page cache dropped')"
	printf '%-34s %s\n' "plain runs (s)" "${plain_times[*]}"
	printf '%-34s %s\n' "TLS runs (s)" "${tls_times[*]}"
	printf '%-34s %s s (%s MiB/s)\n' "plain median" "$pm" "$(awk -v s="$SIZE_MB" -v t="$pm" 'BEGIN { printf "%.0f", s / t }')"
	printf '%-34s %s s (%s MiB/s)\n' "TLS median" "$tm" "$(awk -v s="$SIZE_MB" -v t="$tm" 'BEGIN { printf "%.0f", s / t }')"
	printf '%-34s %s\n' "TLS / plain" "$(awk -v p="$pm" -v t="$tm" 'BEGIN { printf "%.2f", t / p }')"
	printf '%-34s %s\n' "TLS within 20 % of plain" "$verdict"
	[[ $verdict == PASS ]]
	exit
fi

# ---------------------------------------------------------------- memory --
if [[ $MODE == memory ]]; then
	rf_say "creating a ${SIZE_MB} MiB random file ..."
	make_random "$W/src/big" "$SIZE_MB"
	mkdir "$W/out"
	remount
	rf_say "copying it into the mount ..."
	timed t_in cp "$W/src/big" "$MNT/big"
	cmp "$W/src/big" "$W/export/big" || rf_die "the server's copy differs from the source"
	remount # fresh cache: the copy out downloads the whole file
	rf_say "copying it out of the mount ..."
	timed t_out cp "$MNT/big" "$W/out/big"
	cmp "$W/src/big" "$W/out/big" || rf_die "the copy read back differs from the source"
	note_mount_hwm
	srv_hwm=$(rf_vmhwm "$RF_SERVER_PID")
	limit=$((64 * 1024))
	verdict=PASS
	((MOUNT_HWM < limit && srv_hwm < limit)) || verdict=FAIL
	echo
	printf '%-34s %s\n' "file size" "$SIZE_MB MiB (rfmount --cache-size $CACHE_SIZE)"
	printf '%-34s %s s (%s MiB/s)\n' "cp into the mount" "$t_in" "$(awk -v s="$SIZE_MB" -v t="$t_in" 'BEGIN { printf "%.0f", s / t }')"
	printf '%-34s %s s (%s MiB/s)\n' "cp out of the mount (cold cache)" "$t_out" "$(awk -v s="$SIZE_MB" -v t="$t_out" 'BEGIN { printf "%.0f", s / t }')"
	printf '%-34s %s\n' "peak RSS rfmount (VmHWM)" "$(mib "$MOUNT_HWM")"
	printf '%-34s %s\n' "peak RSS rfserve (VmHWM)" "$(mib "$srv_hwm")"
	printf '%-34s %s\n' "memory bound (both < 64 MiB)" "$verdict"
	printf '%-34s %s s (+ %s s build)\n' "elapsed" "$(rf_elapsed "$T_BUILT")" \
		"$(awk -v a="$T_START" -v b="$T_BUILT" 'BEGIN { printf "%.0f", b - a }')"
	[[ $verdict == PASS ]]
	exit
fi

# ------------------------------------------------------------ workloads --
ROWS=()
# row LABEL LOCAL_SECONDS MOUNT_SECONDS
row() {
	local ratio
	ratio=$(awk -v l="$2" -v m="$3" 'BEGIN { if (l > 0) printf "%.1fx", m / l; else print "n/a" }')
	ROWS+=("$(printf '%-38s %-10s %-10s %s' "$1" "$2 s" "$3 s" "$ratio")")
	rf_say "  ${ROWS[-1]}"
}
if ((SIZE_MB % 1024 == 0)); then SIZE_LABEL="$((SIZE_MB / 1024)) GiB"; else SIZE_LABEL="$SIZE_MB MiB"; fi
NDIR_LABEL=$NDIR
((NDIR >= 10000)) && NDIR_LABEL=$((NDIR / 1000)),$(printf '%03d' $((NDIR % 1000)))

rf_say "preparing inputs ..."
make_random "$W/src/big" "$SIZE_MB"
mkdir "$W/src/small"
head -c $((NFILES * 4096)) /dev/urandom | (cd "$W/src/small" && split -b 4096 -a 5 -d - f)
for d in "$W/export/many" "$W/local/many"; do
	mkdir "$d"
	(cd "$d" && seq -f 'f%05g' 1 "$NDIR" | xargs touch)
done
# A real source tree: this repository's crates/ plus some registry crates.
shopt -s nullglob
REG=("$HOME"/.cargo/registry/src/*/)
TREE_PARTS=("$RF_REPO/crates")
if ((${#REG[@]})); then
	if [[ $TREE == full ]]; then
		globs=('libc-0*' 'linux-raw-sys-*' 'rustix-*' 'zerocopy-0*' 'futures-util-*' 'clap-4*'
			'clap_builder-*' 'nix-*' 'proptest-*' 'syn-2*' 'regex-automata-*' 'regex-syntax-*'
			'serde-1*' 'serde_core-*' 'serde_derive-*' 'fuser-*' 'blake3-*' 'bincode-2*'
			'thiserror-2*' 'anyhow-*' 'env_logger-*' 'log-0*')
	else
		globs=('libc-0*' 'serde-1*' 'serde_derive-*')
	fi
	for g in "${globs[@]}"; do
		for d in "${REG[0]}"$g; do TREE_PARTS+=("$d"); done
	done
fi
shopt -u nullglob
tar -chf "$W/src/tree.tar" --exclude=target --exclude=.git "${TREE_PARTS[@]}" 2>/dev/null
TREE_FILES=$(tar -tf "$W/src/tree.tar" | grep -vc '/$')

rf_say "running the workloads ..."
remount

# 1. cp the big file in.
timed l cp "$W/src/big" "$W/local/big"
timed m cp "$W/src/big" "$MNT/big"
cmp "$W/src/big" "$W/export/big" || rf_die "server copy of big differs from the source"
row "cp $SIZE_LABEL file in" "$l" "$m"

# 2. and 3. cold read, then warm read (each side: drop caches, read, read).
remount
drop_caches
timed l cat_null "$W/local/big"
timed lw cat_null "$W/local/big"
drop_caches
timed m cat_null "$MNT/big"
timed mw cat_null "$MNT/big"
if ((CAN_DROP)); then
	row "cold read $SIZE_LABEL (fresh cache)" "$l" "$m"
else
	row "cold read $SIZE_LABEL (local one warm)" "$l" "$m"
fi
row "warm read $SIZE_LABEL (cached)" "$lw" "$mw"
cmp "$W/src/big" "$MNT/big" || rf_die "big read through the mount differs from the source"

# 4. many small files in.
timed l cp -r "$W/src/small" "$W/local/small"
timed m cp -r "$W/src/small" "$MNT/small"
diff -r "$W/src/small" "$W/export/small" >/dev/null || rf_die "server copy of small/ differs from the source"
row "write $NFILES x 4 KiB files (cp -r)" "$l" "$m"

# 5. read them back cold.
remount
drop_caches
timed l cat_tree "$W/local/small"
drop_caches
timed m cat_tree "$MNT/small"
row "read back $NFILES x 4 KiB cold" "$l" "$m"
diff -r "$W/src/small" "$MNT/small" >/dev/null || rf_die "small/ read through the mount differs from the source"

# 6. ls -l of a big directory, cold then warm.
remount
drop_caches
timed l ls_null "$W/local/many"
timed lw ls_null "$W/local/many"
drop_caches
timed m ls_null "$MNT/many"
timed mw ls_null "$MNT/many"
row "ls -l $NDIR_LABEL-file dir cold" "$l" "$m"
row "ls -l $NDIR_LABEL-file dir warm" "$lw" "$mw"
n=$(find "$MNT/many" -mindepth 1 | wc -l)
((n == NDIR)) || rf_die "the mount lists $n entries in many/, expected $NDIR"

# 7. tar x of a source tree.
mkdir "$W/local/tree" "$MNT/tree"
timed l tar -xf "$W/src/tree.tar" -C "$W/local/tree"
timed m tar -xf "$W/src/tree.tar" -C "$MNT/tree"
row "tar x of a source tree ($TREE_FILES files)" "$l" "$m"
diff -r "$W/local/tree" "$W/export/tree" >/dev/null || rf_die "the tree extracted into the mount differs on the server"

note_mount_hwm
SRV_HWM=$(rf_vmhwm "$RF_SERVER_PID")
rf_unmount "$MNT" "$MOUNT_PID" || rf_die "the final unmount was not clean"
MOUNT_PID=

echo
printf '%-38s %-10s %-10s %s\n' workload local rfmount ratio
printf '%s\n' "${ROWS[@]}"
printf '%-38s %s / %s\n' "peak RSS rfmount / rfserve" "$(mib "$MOUNT_HWM")" "$(mib "$SRV_HWM")"
echo
((CAN_DROP)) || echo "note: not root, page cache not dropped: the local cold reads were warm"
printf 'elapsed %s s (+ %s s build); %d mounts; ratio = rfmount time / local time\n' \
	"$(rf_elapsed "$T_BUILT")" "$(awk -v a="$T_START" -v b="$T_BUILT" 'BEGIN { printf "%.0f", b - a }')" "$MOUNT_N"
