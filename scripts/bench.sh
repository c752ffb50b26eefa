#!/usr/bin/env bash
# Benchmark of rfmount against local disk and, with --vs sshfs, against
# sshfs, all in the same run: interleaved passes, medians.
#
#   scripts/bench.sh                  local disk vs rfmount, 3 passes
#   scripts/bench.sh --vs sshfs       local disk vs sshfs vs rfmount (a
#                                     throwaway sshd on loopback)
#   scripts/bench.sh --vs sshfs --rtt 20
#                                     the same, plus the rows measured
#                                     through a 20 ms round trip (a network
#                                     namespace and a delay line); the full
#                                     run of the README table (about 40 min)
#   scripts/bench.sh --quick          small sizes, one pass
#   scripts/bench.sh --selftest       tiny sizes, one pass, every row that
#                                     this machine can run (a smoke test of
#                                     the script, not a measurement)
#   scripts/bench.sh --memory         only the memory check: a 4 GiB file
#                                     copied into and out of the mount; PASS
#                                     when the peak RSS of rfmount and
#                                     rfserve both stay < 64 MiB
#   scripts/bench.sh --tls-compare    only the cold read of the big file,
#                                     from a plain and a TLS rfserve of one
#                                     export in turn, BENCH_ROUNDS times each
#                                     (default 3); PASS when the TLS median
#                                     is within 20 % of the plain median
#
# Options:
#   --vs sshfs      add sshfs (needs root; installs openssh-server and sshfs
#                   with apt-get when missing)
#   --rtt MS        add the RTT rows at a round trip of MS ms (needs root,
#                   iproute2, python3, /dev/net/tun; ../shared/netdelay or
#                   $RF_NETDELAY)
#   --passes N      passes per row (default 3; median reported)
#   --only ROWS     comma-separated row ids (see --list); also "fast", "rtt"
#   --list          print the row ids and exit
#   --size MIB      the big file (dd, cold/warm read, append; default 1024)
#   --rss-size MIB  the file pushed through for peak RSS (default 4096)
#   --files N       small files of 4 KiB (default 1000)
#   --dir-entries N entries of the ls -l directory (default 10000)
#   --out DIR       where the table (.md) and raw numbers (.tsv) go
#                   (default target/bench/)
#   --tls           every rfmount connection over TLS
#
# Environment: BENCH_SIZE_MB (as --size), BENCH_ROUNDS (--tls-compare),
# BENCH_CACHE_SIZE (rfmount --cache-size; default twice the largest file, at
# least 1024M), TMPDIR (where everything is created), CARGO_TARGET_DIR,
# RF_NO_BUILD=1 (skip the cargo build), RF_NETDELAY (the netdelay folder).
#
# Setup: rfserve exports a directory of the temporary area on 127.0.0.1;
# sshfs mounts another one through a throwaway sshd on 127.0.0.1 (temporary
# host and user keys, a free port, sftp-server, default ciphers); "local"
# is a plain directory on the same disk. With --rtt a second rfserve and a
# second sshd run inside a network namespace behind ../shared/netdelay's
# delay line, so both mounts see the same round trip. Each pass runs every
# selected row on every side, rows in order, sides in a rotating order.
# "cold" = the mount is remounted (rfmount with a new, empty cache) and the
# kernel page cache dropped (as root) on every side; "warm" = the same
# command run once untimed just before. Request counts and bytes sent come
# from rfserve's own counters (SIGUSR1 summary before and after), never
# from an estimate; peak RSS from VmHWM in /proc/PID/status. Every result
# is checked (cmp / diff / counts) outside the timing; a wrong result
# aborts the run. Everything started is stopped by PID, every mount
# unmounted and the namespace removed at exit, also after a failure or
# Ctrl-C.
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

MODE=compare
TLS=0
VS=
RTT=
PASSES=
ONLY=
LIST=0
SIZE_MB=${BENCH_SIZE_MB:-}
RSS_MB=
NFILES=
NDIR=
OUT=
SELFTEST=0
need_arg() { [[ $# -ge 2 && -n $2 ]] || rf_die "$1 needs a value (see --help)"; }
while (($#)); do
	case $1 in
	--quick) MODE=quick ;;
	--selftest) SELFTEST=1 MODE=quick ;;
	--memory) MODE=memory ;;
	--tls) TLS=1 ;;
	--tls-compare) MODE=tls-compare ;;
	--vs) need_arg "$@"; VS=$2; shift ;;
	--rtt) need_arg "$@"; RTT=$2; shift ;;
	--passes) need_arg "$@"; PASSES=$2; shift ;;
	--only) need_arg "$@"; ONLY=$2; shift ;;
	--list) LIST=1 ;;
	--size) need_arg "$@"; SIZE_MB=$2; shift ;;
	--rss-size) need_arg "$@"; RSS_MB=$2; shift ;;
	--files) need_arg "$@"; NFILES=$2; shift ;;
	--dir-entries) need_arg "$@"; NDIR=$2; shift ;;
	--out) need_arg "$@"; OUT=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; rf_die "unknown argument: $1" ;;
	esac
	shift
done

# ------------------------------------------------------------------ rows --
# id | unit | sides | label | target (from issues 7 and 8)
# unit: s (wall time), MiBps (size / wall time), bytes (sent to rfserve),
# rss (peak RSS of rfmount / rfserve). sides: L local, S sshfs, R rfmount;
# the RTT rows run S and R through the delay line. A "-wb" row mounts
# rfmount with -o writeback and is compared with the sshfs value of the row
# without it.
ROW_DEFS='
dd|MiBps|LSR|`dd` SIZE into the mount (close included)|≥ 2 × sshfs, ≥ 0.8 × local
cold-read|MiBps|LSR|cold read SIZE|≥ 4 × sshfs
warm-read|MiBps|LSR|warm read SIZE|≥ 0.9 × local
cp-small|s|LSR|`cp -r` NFILES × 4 KiB|≤ sshfs
cp-small-wb|s|R|`cp -r` NFILES × 4 KiB, `-o writeback`|≤ 1/3 × sshfs
read-small|s|LSR|read back NFILES × 4 KiB cold|≤ 1/3 × sshfs
tar-x|s|LSR|`tar x` (TREE)|≤ sshfs
tar-x-wb|s|R|`tar x` (TREE), `-o writeback`|≤ 1/3 × sshfs
tar-c|s|LSR|`tar c` cold|≤ 1/2 × sshfs
git|s|LSR|`git init; git add -A; git commit` of that tree|≤ sshfs
git-wb|s|R|`git init; git add -A; git commit`, `-o writeback`|≤ 1/2 × sshfs
ls-cold|s|LSR|`ls -l` NDIR files cold|
ls-warm|s|LSR|`ls -l` NDIR files warm|
append|bytes|R|append 1 byte to a SIZE file, close|sends ≤ 1 MiB
rss|rss|R|peak RSS rfmount / rfserve, RSSSIZE through|stays < 64 MiB
rtt-cp-small|s|SR|RTT RTTMS ms: `cp -r` NFILES × 4 KiB|≤ 22 s
rtt-cp-small-wb|s|R|RTT RTTMS ms: `cp -r` NFILES × 4 KiB, `-o writeback`|≤ 5 s
rtt-read-small|s|SR|RTT RTTMS ms: read back NFILES × 4 KiB cold|≤ 5 s
rtt-tar-x|s|SR|RTT RTTMS ms: `tar x`|≤ 12 s
rtt-tar-x-wb|s|R|RTT RTTMS ms: `tar x`, `-o writeback`|≤ 3 s
rtt-tar-c|s|SR|RTT RTTMS ms: `tar c` cold|≤ 5 s
rtt-tar-c-warm|s|SR|RTT RTTMS ms: `tar c` warm|≤ 1 s
rtt-ls-warm|s|LSR|RTT RTTMS ms: `ls -l` NDIR files warm|≤ 1.2 × local
rtt-reopen|s|SR|RTT RTTMS ms: NREOPEN warm re-opens (`cat`)|0 requests
'
declare -A R_UNIT R_SIDES R_LABEL R_TARGET
ALL_ROWS=()
while IFS='|' read -r id unit sides label target; do
	[[ -n $id ]] || continue
	ALL_ROWS+=("$id")
	R_UNIT[$id]=$unit R_SIDES[$id]=$sides R_LABEL[$id]=$label R_TARGET[$id]=$target
done <<<"$ROW_DEFS"

if ((LIST)); then
	for id in "${ALL_ROWS[@]}"; do printf '%-16s %s\n' "$id" "${R_LABEL[$id]}"; done
	exit 0
fi

case $MODE in
compare) : "${SIZE_MB:=1024}" "${RSS_MB:=4096}" "${NFILES:=1000}" "${NDIR:=10000}" "${PASSES:=3}"; TREE=full ;;
quick)
	if ((SELFTEST)); then
		: "${SIZE_MB:=4}" "${RSS_MB:=4}" "${NFILES:=20}" "${NDIR:=50}" "${PASSES:=1}"; TREE=tiny
	else
		: "${SIZE_MB:=64}" "${RSS_MB:=64}" "${NFILES:=200}" "${NDIR:=2000}" "${PASSES:=1}"; TREE=small
	fi
	;;
memory) : "${SIZE_MB:=4096}" ;;
tls-compare) : "${SIZE_MB:=1024}"; ROUNDS=${BENCH_ROUNDS:-3} ;;
esac
num() { [[ $2 =~ ^[1-9][0-9]*$ ]] || rf_die "$1 must be a positive whole number, not '$2'"; }
num --size "$SIZE_MB"
if [[ $MODE == compare || $MODE == quick ]]; then
	num --rss-size "$RSS_MB"
	num --files "$NFILES"
	num --dir-entries "$NDIR"
	num --passes "$PASSES"
	((NFILES >= 100)) || [[ $SELFTEST == 1 ]] || rf_die "--files must be at least 100 (the re-open row opens 100)"
	[[ -z $VS || $VS == sshfs ]] || rf_die "--vs knows only sshfs"
	[[ -z $RTT ]] || num --rtt "$RTT"
fi

# ------------------------------------------------- modes of their own --
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
if [[ $MODE == memory || $MODE == tls-compare ]]; then
	T_START=$(rf_now)
	rf_build
	T_BUILT=$(rf_now)
	rf_install_traps
	rf_mktemp W rfbench
	mkdir -p "$W"/{src,local,export,mnt,logs}
	MNT=$(cd "$W/mnt" && pwd -P)
	CACHE_SIZE=${BENCH_CACHE_SIZE:-$((2 * SIZE_MB < 1024 ? 1024 : 2 * SIZE_MB))M}
	MOUNT_ARGS=(--cache-size "$CACHE_SIZE")
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
	MOUNT_HWM=0
	note_mount_hwm() {
		local h
		h=$(rf_vmhwm "$MOUNT_PID")
		((h > MOUNT_HWM)) && MOUNT_HWM=$h
		return 0
	}
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
	timed() {
		local __var=$1 __t
		shift
		__t=$(rf_now)
		"$@"
		printf -v "$__var" '%s' "$(rf_elapsed "$__t")"
	}
	cat_null() { cat "$@" >/dev/null; }
	mib() { awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }'; }
	make_random() { head -c "$(($2 * 1024 * 1024))" /dev/urandom >"$1"; }
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
	else
		rf_start_server "$W/export" "$W/logs/rfserve.log"
	fi
	rf_say "rfserve on $RF_ADDR (pid $RF_SERVER_PID), workdir $W"
	MOUNT_ADDR=$RF_ADDR
	t_in='' t_out='' m=''
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

fi

# ----------------------------------------------------- row selection --
SEL=()
if [[ -n $ONLY ]]; then
	IFS=, read -ra want <<<"$ONLY"
	for w in "${want[@]}"; do
		case $w in
		fast) for id in "${ALL_ROWS[@]}"; do [[ $id == rtt-* ]] || SEL+=("$id"); done ;;
		rtt) for id in "${ALL_ROWS[@]}"; do [[ $id == rtt-* ]] && SEL+=("$id"); done ;;
		*) [[ -n ${R_UNIT[$w]:-} ]] || rf_die "no row '$w' (see --list)"; SEL+=("$w") ;;
		esac
	done
else
	for id in "${ALL_ROWS[@]}"; do
		[[ $id == rtt-* && -z $RTT ]] && continue
		SEL+=("$id")
	done
fi
NOTES=()
has_rtt_rows=0
for id in "${SEL[@]}"; do [[ $id == rtt-* ]] && has_rtt_rows=1; done
if ((SELFTEST)) && [[ -z $ONLY ]] && (($(id -u) == 0)) && [[ -c /dev/net/tun ]] && command -v ip >/dev/null &&
	{ [[ -n ${RF_NETDELAY:-} ]] || [[ -f $RF_REPO/../shared/netdelay/up.sh ]] || [[ -f /work/shared/netdelay/up.sh ]]; }; then
	: "${RTT:=2}"
	for id in "${ALL_ROWS[@]}"; do [[ $id == rtt-* ]] && SEL+=("$id"); done
	has_rtt_rows=1
fi
if ((has_rtt_rows)) && [[ -z $RTT ]]; then
	if ((SELFTEST)); then RTT=2; else rf_die "the RTT rows need --rtt MS"; fi
fi

T_START=$(rf_now)
rf_build
T_BUILT=$(rf_now)

# Write-back lands from another branch: run its rows only where rfmount has it.
if ! "$RF_BIN/rfmount" --help 2>&1 | grep -qw writeback; then
	keep=()
	for id in "${SEL[@]}"; do [[ $id == *-wb ]] || keep+=("$id"); done
	if ((${#keep[@]} != ${#SEL[@]})); then
		NOTES+=("the \`-o writeback\` rows were skipped: this rfmount has no writeback option")
	fi
	SEL=("${keep[@]}")
fi
if ((SELFTEST)); then
	# Every row this machine can run, without installing anything.
	if [[ -z $VS ]] && (($(id -u) == 0)) && command -v sshfs >/dev/null && [[ -x /usr/sbin/sshd ]]; then
		VS=sshfs
	fi
	[[ -n $VS ]] || NOTES+=("selftest without sshfs: not root, or sshfs/openssh-server not installed")
fi
((${#SEL[@]})) || rf_die "no row left to run"

IS_ROOT=0
(($(id -u) == 0)) && IS_ROOT=1
if [[ -n $VS ]] && ((!IS_ROOT)); then rf_die "--vs sshfs runs a throwaway sshd and needs root"; fi
if ((has_rtt_rows)); then
	((IS_ROOT)) || rf_die "--rtt makes a network namespace and needs root"
	NETDELAY=${RF_NETDELAY:-}
	if [[ -z $NETDELAY ]]; then
		for d in "$RF_REPO/../shared/netdelay" /work/shared/netdelay; do
			[[ -x $d/up.sh || -f $d/up.sh ]] && { NETDELAY=$(cd "$d" && pwd); break; }
		done
	fi
	[[ -n $NETDELAY && -f $NETDELAY/up.sh && -f $NETDELAY/down.sh ]] ||
		rf_die "--rtt needs shared/netdelay (up.sh, down.sh) beside the repository, or RF_NETDELAY=DIR"
	command -v ip >/dev/null || rf_die "--rtt needs iproute2 (ip)"
	command -v python3 >/dev/null || rf_die "--rtt needs python3 (netdelay's delay line)"
	[[ -c /dev/net/tun ]] || rf_die "--rtt needs /dev/net/tun"
fi
if [[ -n $VS ]] && { ! command -v sshfs >/dev/null || [[ ! -x /usr/sbin/sshd ]]; }; then
	rf_say "installing openssh-server and sshfs (apt-get) ..."
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	apt-get install -y -q --no-install-recommends openssh-server sshfs >/dev/null ||
		rf_die "apt-get install openssh-server sshfs failed"
fi
need_git=0
for id in "${SEL[@]}"; do [[ $id == git* ]] && need_git=1; done
((need_git == 0)) || command -v git >/dev/null || rf_die "the git rows need git"

rf_install_traps
rf_mktemp W rfbench
mkdir -p "$W"/{src,logs,cache}
[[ -n $OUT ]] || OUT=${CARGO_TARGET_DIR:-$RF_REPO/target}/bench
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STAMP=$(date -u +%Y%m%d-%H%M%S)
RAW=$OUT/bench-$STAMP.tsv
MD=$OUT/bench-$STAMP.md
printf 'pass\trow\tside\tvalue\tunit\trequests\tbytes_in\textra\n' >"$RAW"

CAN_DROP=0
if [[ -w /proc/sys/vm/drop_caches ]] && { sync; echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
	CAN_DROP=1
else
	NOTES+=("not root: the page cache was not dropped, so local \"cold\" reads were warm")
fi
drop_caches() {
	if ((CAN_DROP)); then
		sync
		echo 3 >/proc/sys/vm/drop_caches
	fi
}

max_mb=$((SIZE_MB > RSS_MB ? SIZE_MB : RSS_MB))
CACHE_SIZE=${BENCH_CACHE_SIZE:-$((2 * max_mb < 1024 ? 1024 : 2 * max_mb))M}

# ----------------------------------------------------------- sides --
# A side is where a workload runs: DIR[s] is what the workload uses (a
# mount point, or the local directory), SRV[s] the directory behind it on
# the "server" (seeded and checked directly, outside the timing).
declare -A KIND DIR SRV MPID MOPTS MADDR SPID SLOG SSH_HOST SSH_PORT
MOUNT_N=0
RF_HWM=0 # KiB, max over the rfmount processes of the rss row

side_add() { # side kind
	KIND[$1]=$2
	mkdir -p "$W/srv-$1" "$W/mnt-$1"
	SRV[$1]=$W/srv-$1
	if [[ $2 == local ]]; then DIR[$1]=$W/srv-$1; else DIR[$1]=$(cd "$W/mnt-$1" && pwd -P); fi
	MPID[$1]= MOPTS[$1]=
}

# start_rfserve SIDE: an rfserve of SRV[SIDE] (under RF_SERVE_WRAP, on
# RF_SERVE_HOST), plain or --tls.
TLS_MOUNT_ARGS=()
start_rfserve() {
	local s=$1 log=$W/logs/rfserve-$1.log fp
	if ((TLS)); then
		rf_start_server "${SRV[$s]}" "$log" --tls --state-dir "$W/state"
		fp=$(awk '/^rfserve certificate sha256 / { print $4; exit }' "$log.stdout")
		[[ -n $fp ]] || rf_die "rfserve --tls printed no certificate fingerprint"
		TLS_MOUNT_ARGS=(--tls-fingerprint "$fp")
	else
		rf_start_server "${SRV[$s]}" "$log"
	fi
	MADDR[$s]=$RF_ADDR SPID[$s]=$RF_SERVER_PID SLOG[$s]=$log
	rf_say "rfserve for $s on $RF_ADDR (pid $RF_SERVER_PID)"
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_sshd NAME LISTEN_ADDR PORT [wrapper...]: a throwaway sshd -D on
# LISTEN_ADDR:PORT, key login only, for this user, with its own keys.
SSH_DIR=
start_sshd() {
	local name=$1 addr=$2 port=$3 cfg log pid deadline
	shift 3
	if [[ -z $SSH_DIR ]]; then
		SSH_DIR=$W/ssh
		mkdir -m 700 "$SSH_DIR"
		ssh-keygen -q -t ed25519 -N '' -C rfbench-host -f "$SSH_DIR/host_key"
		ssh-keygen -q -t ed25519 -N '' -C rfbench-user -f "$SSH_DIR/id"
		cp "$SSH_DIR/id.pub" "$SSH_DIR/authorized_keys"
		# sshd refuses to start without its privilege separation directory,
		# which the service unit normally creates.
		mkdir -p /run/sshd
	fi
	cfg=$SSH_DIR/sshd_config-$name
	log=$W/logs/sshd-$name.log
	cat >"$cfg" <<-CFG
		Port $port
		ListenAddress $addr
		HostKey $SSH_DIR/host_key
		PidFile none
		AuthorizedKeysFile $SSH_DIR/authorized_keys
		AllowUsers $(id -un)
		PermitRootLogin prohibit-password
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		PubkeyAuthentication yes
		StrictModes no
		UsePAM no
		UseDNS no
		Subsystem sftp /usr/lib/openssh/sftp-server
	CFG
	"$@" /usr/sbin/sshd -D -e -f "$cfg" 2>"$log" &
	pid=$!
	RF_PIDS+=("$pid")
	RF_LOGS+=("$log")
	deadline=$(($(date +%s) + 15))
	until grep -q 'Server listening on' "$log"; do
		kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; rf_die "sshd ($name) exited at start"; }
		(($(date +%s) < deadline)) || { cat "$log" >&2; rf_die "sshd ($name) did not listen within 15 s"; }
		sleep 0.05
	done
	rf_say "sshd for $name on $addr:$port (pid $pid)"
}

mount_sshfs() { # side log
	local s=$1 log=$2 deadline
	sshfs "$(id -un)@${SSH_HOST[$s]}:${SRV[$s]}" "${DIR[$s]}" -f \
		-o "port=${SSH_PORT[$s]},IdentityFile=$SSH_DIR/id,IdentitiesOnly=yes,BatchMode=yes" \
		-o StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,LogLevel=ERROR 2>"$log" &
	MPID[$s]=$!
	RF_PIDS+=("${MPID[$s]}")
	RF_MOUNTS+=("${DIR[$s]}")
	RF_LOGS+=("$log")
	deadline=$(($(date +%s) + 30))
	until rf_is_mounted "${DIR[$s]}"; do
		kill -0 "${MPID[$s]}" 2>/dev/null || { cat "$log" >&2; rf_die "sshfs exited before mounting ${DIR[$s]}"; }
		(($(date +%s) < deadline)) || { cat "$log" >&2; rf_die "sshfs did not mount within 30 s"; }
		sleep 0.05
	done
	# The mount appears before the SSH session is ready: wait for that
	# here (statfs goes to the server and caches no entry), not in the
	# first timed command.
	stat -f "${DIR[$s]}" >/dev/null || rf_die "sshfs mount ${DIR[$s]} does not answer"
}

unmount_side() {
	local s=$1
	[[ -n ${MPID[$s]} ]] || return 0
	rf_unmount "${DIR[$s]}" "${MPID[$s]}" || rf_die "unmount of ${DIR[$s]} was not clean (see $W/logs)"
	MPID[$s]=
}

# mount_side SIDE FRESH OPTS: makes sure SIDE is mounted with OPTS
# (rfmount -o); FRESH=1 remounts (rfmount: new, empty cache) even if it is.
mount_side() {
	local s=$1 fresh=$2 opts=$3 log o=()
	[[ ${KIND[$s]} == local ]] && return 0
	if [[ -n ${MPID[$s]} ]]; then
		((fresh == 0)) && [[ ${MOPTS[$s]} == "$opts" ]] && return 0
		unmount_side "$s"
	fi
	MOUNT_N=$((MOUNT_N + 1))
	log=$W/logs/mount.$MOUNT_N.$s.log
	if [[ ${KIND[$s]} == sshfs ]]; then
		mount_sshfs "$s" "$log"
	else
		rm -rf "$W/cache/$s"
		mkdir -p "$W/cache/$s"
		[[ -n $opts ]] && o=(-o "$opts")
		rf_mount "${MADDR[$s]}" "${DIR[$s]}" "$log" --cache-dir "$W/cache/$s" --cache-size "$CACHE_SIZE" \
			${o[@]+"${o[@]}"} ${TLS_MOUNT_ARGS[@]+"${TLS_MOUNT_ARGS[@]}"}
		MPID[$s]=$RF_MOUNT_PID
	fi
	MOPTS[$s]=$opts
}

# srv_counts SIDE: rfserve's own counters of its live sessions (SIGUSR1
# summary), summed: sets C_REQ and C_IN (frame bytes received).
srv_counts() {
	local s=$1 log=${SLOG[$1]} before deadline res
	before=$(grep -c ' live session(s)$' "$log" || true)
	kill -USR1 "${SPID[$s]}"
	deadline=$(($(date +%s) + 10))
	while :; do
		res=$(awk -v want=$((before + 1)) '
			/ live session\(s\)$/ { h++; if (h == want) { n = $(NF - 2) + 0; on = 1 } else on = 0; next }
			on && / session from / && / s old, / && got < n {
				got++
				for (i = 2; i <= NF; i++) {
					if ($i ~ /^requests?,$/) req += $(i - 1)
					if ($i == "in," && $(i - 1) == "bytes") bin += $(i - 2)
				}
			}
			END { printf "%d %d %d\n", (h >= want && got == n) ? 1 : 0, req, bin }' "$log")
		[[ $res == 1\ * ]] && break
		(($(date +%s) < deadline)) || rf_die "rfserve ($s) did not report its sessions on SIGUSR1 within 10 s"
		sleep 0.02
	done
	read -r _ C_REQ C_IN <<<"$res"
}

# measure SIDE CMD...: runs CMD and sets T (seconds); on an rfmount side
# also REQ and BIN, the requests and bytes rfserve received meanwhile.
measure() {
	local s=$1 t0 r0=0 b0=0
	shift
	REQ= BIN=
	if [[ ${KIND[$s]} == rfmount ]]; then srv_counts "$s"; r0=$C_REQ b0=$C_IN; fi
	t0=$(rf_now)
	"$@" || rf_die "on $s: $* failed"
	T=$(awk -v a="$t0" -v b="$(rf_now)" 'BEGIN { printf "%.4f", b - a }')
	if [[ ${KIND[$s]} == rfmount ]]; then srv_counts "$s"; REQ=$((C_REQ - r0)) BIN=$((C_IN - b0)); fi
	return 0
}

# ---------------------------------------------------------- workloads --
cat_null() { cat "$@" >/dev/null; }
cat_tree() { find "$1" -type f -exec cat {} + >/dev/null; }
ls_null() { ls -l "$1" >/dev/null; }
tar_c() { tar -cf - -C "$1" . | wc -c >"$W/tar-c.bytes"; }
reopen() { local f; for f in "${REOPEN[@]}"; do cat "$1/$f" >/dev/null; done; }
git_commit() {
	(cd "$1" && git init -q && git add -A &&
		git -c user.name=bench -c user.email=bench@localhost -c commit.gpgsign=false commit -q -m bench)
}
dd_in() { dd if="$W/src/big" of="$1" bs=1M status=none; }
append_byte() { printf x >>"$1"; }
# Writes made with -o writeback may still be uploading when close returns:
# wait for them before checking the server's copy. `rfmount sync` waits;
# sync/syncfs(2) do not (the kernel does not pass them to a FUSE daemon),
# which made the RTT write-back rows check a copy still arriving.
settle() {
	[[ ${KIND[$1]} == rfmount && ${MOPTS[$1]} == *writeback* ]] || return 0
	"$RF_BIN/rfmount" sync "${DIR[$1]}" >/dev/null || rf_die "rfmount sync ${DIR[$1]} failed"
}
check() { "${@:2}" || rf_die "wrong result: $1"; }

VAL= EXTRA=
# run_row ROW SIDE PASS: one measurement; sets VAL (in the row's unit),
# REQ, BIN and EXTRA.
run_row() {
	local row=$1 s=$2 p=$3 base opts='' d srv n
	base=${row#rtt-}
	base=${base%-wb}
	[[ $row == *-wb ]] && opts=writeback
	d=${DIR[$s]} srv=${SRV[$s]}
	local out=p$p-$row
	EXTRA=
	case $base in
	dd)
		mount_side "$s" 0 "$opts"
		measure "$s" dd_in "$d/$out"
		settle "$s"
		check "dd: the server's copy differs" cmp -s "$W/src/big" "$srv/$out"
		rm -f "$d/$out"
		VAL=$(awk -v m="$SIZE_MB" -v t="$T" 'BEGIN { printf "%.1f", m / t }')
		;;
	cold-read)
		mount_side "$s" 1 "$opts"
		drop_caches
		measure "$s" cat_null "$d/seed/big"
		check "cold read differs" cmp -s "$W/src/big" "$d/seed/big"
		VAL=$(awk -v m="$SIZE_MB" -v t="$T" 'BEGIN { printf "%.1f", m / t }')
		;;
	warm-read)
		mount_side "$s" 0 "$opts"
		cat_null "$d/seed/big"
		measure "$s" cat_null "$d/seed/big"
		check "warm read differs" cmp -s "$W/src/big" "$d/seed/big"
		VAL=$(awk -v m="$SIZE_MB" -v t="$T" 'BEGIN { printf "%.1f", m / t }')
		;;
	cp-small)
		mount_side "$s" 0 "$opts"
		measure "$s" cp -r "$W/src/small" "$d/$out"
		settle "$s"
		check "cp -r: the server's copy differs" diff -rq "$W/src/small" "$srv/$out"
		rm -rf "${srv:?}/$out"
		VAL=$T
		;;
	read-small)
		mount_side "$s" 1 "$opts"
		drop_caches
		measure "$s" cat_tree "$d/seed/small"
		check "small files read back differ" diff -rq "$W/src/small" "$d/seed/small"
		VAL=$T
		;;
	tar-x)
		mount_side "$s" 0 "$opts"
		mkdir "$d/$out"
		measure "$s" tar -xf "$W/src/tree.tar" -C "$d/$out"
		settle "$s"
		check "tar x: the server's tree differs" diff -rq "$W/src/tree" "$srv/$out"
		rm -rf "${srv:?}/$out"
		VAL=$T
		;;
	tar-c | tar-c-warm)
		if [[ $base == tar-c ]]; then
			mount_side "$s" 1 "$opts"
			drop_caches
		else
			mount_side "$s" 0 "$opts"
			tar_c "$d/seed/tree"
		fi
		measure "$s" tar_c "$d/seed/tree"
		n=$(cat "$W/tar-c.bytes")
		check "tar c wrote $n bytes, the same tree locally $TREE_TAR_BYTES" test "$n" -eq "$TREE_TAR_BYTES"
		VAL=$T
		;;
	git)
		mount_side "$s" 0 "$opts"
		mkdir "$d/$out"
		tar -xf "$W/src/tree.tar" -C "$d/$out"
		# The tree is this row's input: with -o writeback its uploads
		# would otherwise run during (and be charged to) the timed git.
		settle "$s"
		measure "$s" git_commit "$d/$out"
		settle "$s"
		n=$(git -c safe.directory='*' -C "$srv/$out" ls-tree -r HEAD | wc -l)
		check "git: the server's repository holds $n files, not $TREE_GIT_FILES" test "$n" -eq "$TREE_GIT_FILES"
		rm -rf "${srv:?}/$out"
		VAL=$T
		;;
	ls-cold | ls-warm)
		if [[ $base == ls-cold ]]; then
			mount_side "$s" 1 "$opts"
			drop_caches
		else
			mount_side "$s" 0 "$opts"
			ls_null "$d/seed/many"
		fi
		measure "$s" ls_null "$d/seed/many"
		n=$(find "$d/seed/many" -mindepth 1 | wc -l)
		check "ls: $n entries, not $NDIR" test "$n" -eq "$NDIR"
		VAL=$T
		;;
	reopen)
		mount_side "$s" 0 "$opts"
		reopen "$d/seed/small"
		measure "$s" reopen "$d/seed/small"
		VAL=$T
		;;
	append)
		mount_side "$s" 0 "$opts"
		cp "$W/src/big" "$srv/$out"
		measure "$s" append_byte "$d/$out"
		settle "$s"
		n=$(stat -c %s "$srv/$out")
		check "append: the server's file has $n bytes" test "$n" -eq $((SIZE_MB * 1048576 + 1))
		check "append: the server's last byte is not the one appended" test "$(tail -c 1 "$srv/$out")" = x
		rm -f "$d/$out"
		VAL=$BIN EXTRA="seconds=$T"
		;;
	rss)
		mount_side "$s" 1 "$opts"
		cp "$W/src/rss" "$d/$out"
		RF_HWM=$(rf_vmhwm "${MPID[$s]}")
		check "rss: the server's copy differs" cmp -s "$W/src/rss" "$srv/$out"
		mount_side "$s" 1 "$opts"
		check "rss: the copy read back differs" cmp -s "$W/src/rss" "$d/$out"
		n=$(rf_vmhwm "${MPID[$s]}")
		((n > RF_HWM)) && RF_HWM=$n
		n=$(rf_vmhwm "${SPID[$s]}")
		rm -f "$d/$out"
		VAL="$RF_HWM/$n" EXTRA="KiB rfmount/rfserve"
		REQ= BIN=
		;;
	*) rf_die "row $row has no workload" ;;
	esac
}

# ------------------------------------------------------------- setup --
sides_of() { # row -> side names
	local row=$1 c out=()
	for c in $(grep -o . <<<"${R_SIDES[$row]}"); do
		case $c in
		L) out+=(local) ;;
		S) [[ -n $VS ]] && { [[ $row == rtt-* ]] && out+=(sshfs_rtt) || out+=(sshfs); } ;;
		R) [[ $row == rtt-* ]] && out+=(rf_rtt) || out+=(rf) ;;
		esac
	done
	printf '%s\n' "${out[@]}"
}
declare -A USED NEED
for id in "${SEL[@]}"; do
	for s in $(sides_of "$id"); do USED[$s]=1; done
	b=${id#rtt-}
	b=${b%-wb}
	case $b in
	dd | cold-read | warm-read | append) NEED[big]=1 ;;
	cp-small | read-small | reopen) NEED[small]=1 ;;
	tar-x | tar-c | tar-c-warm | git) NEED[tree]=1 ;;
	ls-cold | ls-warm) NEED[many]=1 ;;
	rss) NEED[rss]=1 ;;
	esac
done
SIDES=()
for s in local sshfs rf sshfs_rtt rf_rtt; do
	[[ -n ${USED[$s]:-} ]] || continue
	SIDES+=("$s")
	case $s in local) side_add "$s" local ;; sshfs*) side_add "$s" sshfs ;; rf*) side_add "$s" rfmount ;; esac
done

# Disk: the source files, a seed copy per side, rfmount's cache copies,
# the files written by dd/append/rss while they are checked.
need_mb=512
if [[ -n ${NEED[big]:-} ]]; then need_mb=$((need_mb + SIZE_MB * (2 * ${#SIDES[@]} + 2))); fi
if [[ -n ${NEED[rss]:-} ]]; then need_mb=$((need_mb + RSS_MB * 3)); fi
avail_mb=$(($(df -Pk "$W" | awk 'NR == 2 { print $4 }') / 1024))
((avail_mb >= need_mb)) ||
	rf_die "this run needs about $need_mb MiB free under ${TMPDIR:-/tmp}, and $avail_mb MiB are free: point TMPDIR to a roomier disk, or use --size/--rss-size/--only"

if [[ -n ${USED[sshfs_rtt]:-} || -n ${USED[rf_rtt]:-} ]]; then
	# A namespace and a /30 of our own, so that parallel runs do not meet.
	NS=rfb$$
	net=
	for x in $(seq 100 250); do
		ip -4 -o addr | grep -q "10\.99\.$x\." || { net=$x; break; }
	done
	[[ -n $net ]] || rf_die "no free 10.99.X.0/30 for the delay line"
	NEAR=10.99.$net.1 FAR=10.99.$net.2
	netdelay_down() { NS=$NS STATE_DIR=$W/netdelay bash "$NETDELAY/down.sh" 2>/dev/null || true; }
	RF_CLEANUP_HOOKS+=(netdelay_down)
	half=$(awk -v r="$RTT" 'BEGIN { print r / 2 }')
	NS=$NS NEAR_ADDR=$NEAR FAR_ADDR=$FAR DELAY_MS=$half STATE_DIR=$W/netdelay bash "$NETDELAY/up.sh" ||
		rf_die "netdelay up.sh failed"
fi

for s in "${SIDES[@]}"; do
	case ${KIND[$s]} in
	rfmount)
		if [[ $s == *_rtt ]]; then
			RF_SERVE_HOST=$FAR RF_SERVE_WRAP=(ip netns exec "$NS")
		else
			RF_SERVE_HOST=127.0.0.1 RF_SERVE_WRAP=()
		fi
		start_rfserve "$s"
		;;
	sshfs)
		if [[ $s == *_rtt ]]; then
			SSH_HOST[$s]=$FAR SSH_PORT[$s]=2222
			start_sshd "$s" "$FAR" 2222 ip netns exec "$NS"
		else
			SSH_HOST[$s]=127.0.0.1 SSH_PORT[$s]=$(free_port)
			start_sshd "$s" 127.0.0.1 "${SSH_PORT[$s]}"
		fi
		;;
	esac
done
RF_SERVE_HOST=127.0.0.1 RF_SERVE_WRAP=()

rf_say "preparing inputs in $W ..."
if [[ -n ${NEED[big]:-} ]]; then head -c $((SIZE_MB * 1048576)) /dev/urandom >"$W/src/big"; fi
if [[ -n ${NEED[rss]:-} ]]; then head -c $((RSS_MB * 1048576)) /dev/urandom >"$W/src/rss"; fi
mkdir "$W/src/small"
head -c $((NFILES * 4096)) /dev/urandom | (cd "$W/src/small" && split -b 4096 -a 5 -d - f)
mapfile -t REOPEN < <(cd "$W/src/small" && ls | head -n 100)
# A real source tree: this repository's crates/ and some registry crates
# (the newest of each name), about 700 entries and 7 MB in a full run.
shopt -s nullglob
REG=("$HOME"/.cargo/registry/src/*/)
TREE_PARTS=("$RF_REPO/crates")
case $TREE in
full) globs=('serde-1*' 'serde_derive-*' 'thiserror-2*' 'anyhow-*' 'log-0*' 'bincode-2*' 'fuser-*' 'blake3-*') ;;
small) globs=('serde-1*' 'anyhow-*') ;;
tiny) globs=() TREE_PARTS=("$RF_REPO/crates/proto") ;;
esac
if ((${#REG[@]})); then
	for g in ${globs[@]+"${globs[@]}"}; do
		m=("${REG[0]}"$g)
		((${#m[@]})) && TREE_PARTS+=("${m[-1]}")
	done
fi
shopt -u nullglob
tar -chf "$W/src/tree.tar" --exclude=target --exclude=.git "${TREE_PARTS[@]}" 2>/dev/null
mkdir "$W/src/tree"
tar -xf "$W/src/tree.tar" -C "$W/src/tree"
TREE_FILES=$(tar -tf "$W/src/tree.tar" | grep -vc '/$')
TREE_ENTRIES=$(tar -tf "$W/src/tree.tar" | wc -l)
TREE_MB=$(du -sk --apparent-size "$W/src/tree" | awk '{ printf "%.1f", $1 / 1024 }')
TREE_TAR_BYTES=$(tar -cf - -C "$W/src/tree" . | wc -c)
# What the git row must commit: the tree minus what its own .gitignore
# files exclude (crates ship some), counted by git on a local copy.
TREE_GIT_FILES=0
if ((need_git)); then
	mkdir "$W/src/git-count"
	tar -xf "$W/src/tree.tar" -C "$W/src/git-count"
	TREE_GIT_FILES=$(cd "$W/src/git-count" && git init -q && git add -A && git ls-files | wc -l)
	rm -rf "$W/src/git-count"
fi

for s in "${SIDES[@]}"; do
	seed=${SRV[$s]}/seed
	mkdir -p "$seed"
	[[ -n ${NEED[big]:-} ]] && cp "$W/src/big" "$seed/big"
	[[ -n ${NEED[small]:-} ]] && cp -r "$W/src/small" "$seed/small"
	[[ -n ${NEED[tree]:-} ]] && cp -a "$W/src/tree" "$seed/tree"
	if [[ -n ${NEED[many]:-} ]]; then
		mkdir "$seed/many"
		(cd "$seed/many" && seq -f 'f%05g' 1 "$NDIR" | xargs touch)
	fi
done
sync

# ------------------------------------------------------------- passes --
declare -A VALS REQS
rf_say "running ${#SEL[@]} rows x $PASSES passes on: ${SIDES[*]} ..."
for ((p = 1; p <= PASSES; p++)); do
	for row in "${SEL[@]}"; do
		mapfile -t rs < <(sides_of "$row")
		# Rotate the order of the sides from pass to pass.
		k=$(((p - 1) % ${#rs[@]}))
		rs=("${rs[@]:k}" "${rs[@]:0:k}")
		for s in "${rs[@]}"; do
			run_row "$row" "$s" "$p"
			VALS[$row,$s]+="$VAL "
			[[ -n $REQ ]] && REQS[$row,$s]+="$REQ "
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$p" "$row" "${s%_rtt}" "$VAL" "${R_UNIT[$row]}" \
				"${REQ:--}" "${BIN:--}" "${EXTRA:--}" >>"$RAW"
			rf_say "  pass $p  $(printf '%-16s %-9s %-12s' "$row" "${s%_rtt}" "$VAL") ${REQ:+$REQ requests}"
		done
	done
done
for s in "${SIDES[@]}"; do unmount_side "$s"; done

# -------------------------------------------------------------- table --
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
human_bytes() {
	awk -v b="$1" 'BEGIN { split("B KiB MiB GiB", u); i = 1; while (b >= 1024 && i < 4) { b /= 1024; i++ }
		printf (i == 1 ? "%d %s" : "%.1f %s"), b, u[i] }'
}
fmt() { # unit value
	case $1 in
	s) awk -v v="$2" 'BEGIN { printf (v >= 100 ? "%.0f s" : "%.3g s"), v }' ;;
	MiBps) awk -v v="$2" 'BEGIN { printf "%.0f MiB/s", v }' ;;
	bytes) printf 'sends %s' "$(human_bytes "$2")" ;;
	esac
}
# med ROW SIDE [COLUMN of a/b values]
med() { # shellcheck disable=SC2086
	[[ -n ${VALS[$1,$2]:-} ]] || return 0
	median ${VALS[$1,$2]}
}
cell() { # row side
	local row=$1 s=$2 v a b
	if [[ ${R_UNIT[$row]} == rss ]]; then
		[[ -n ${VALS[$row,$s]:-} ]] || { echo '–'; return; }
		# shellcheck disable=SC2086
		a=$(median $(tr ' ' '\n' <<<"${VALS[$row,$s]}" | cut -d/ -f1))
		# shellcheck disable=SC2086
		b=$(median $(tr ' ' '\n' <<<"${VALS[$row,$s]}" | cut -d/ -f2))
		awk -v a="$a" -v b="$b" 'BEGIN { printf "%.0f / %.0f MiB", a / 1024, b / 1024 }'
		return
	fi
	v=$(med "$row" "$s")
	if [[ -n $v ]]; then fmt "${R_UNIT[$row]}" "$v"; else echo '–'; fi
}
label() {
	local l=${R_LABEL[$1]} sz
	if ((SIZE_MB % 1024 == 0)); then sz="$((SIZE_MB / 1024)) GiB"; else sz="$SIZE_MB MiB"; fi
	l=${l//RSSSIZE/$( ((RSS_MB % 1024 == 0)) && echo "$((RSS_MB / 1024)) GiB" || echo "$RSS_MB MiB")}
	l=${l//SIZE/$sz}
	l=${l//NFILES/$(printf "%'d" "$NFILES" 2>/dev/null || echo "$NFILES")}
	l=${l//NDIR/$(printf "%'d" "$NDIR" 2>/dev/null || echo "$NDIR")}
	l=${l//TREE/$TREE_ENTRIES entries, $TREE_MB MB}
	l=${l//RTTMS/$RTT}
	l=${l//NREOPEN/${#REOPEN[@]}}
	printf '%s' "$l"
}
{
	echo "rfmount benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, kernel $(uname -r);" \
		"median of $PASSES pass(es)$( ((TLS)) && echo ', rfmount over TLS')"
	echo
	if [[ -n $VS ]]; then
		echo '| workload | local | sshfs | rfmount | rfmount ÷ sshfs | rfmount requests | target |'
		echo '|---|---|---|---|---|---|---|'
	else
		echo '| workload | local | rfmount | rfmount ÷ local | rfmount requests | target |'
		echo '|---|---|---|---|---|---|'
	fi
	for row in "${SEL[@]}"; do
		sfx=
		[[ $row == rtt-* ]] && sfx=_rtt
		lc=$(cell "$row" local)
		sc=$(cell "$row" "sshfs$sfx")
		rc=$(cell "$row" "rf$sfx")
		# The reference: sshfs (or local) on this row, or on the row
		# without -o writeback.
		ref_row=${row%-wb}
		if [[ -n $VS ]]; then ref=$(med "$ref_row" "sshfs$sfx"); else ref=$(med "$ref_row" local); fi
		rv=$(med "$row" "rf$sfx")
		ratio='–'
		if [[ -n $ref && -n $rv ]] && [[ ${R_UNIT[$row]} == s || ${R_UNIT[$row]} == MiBps ]]; then
			ratio=$(awk -v a="$rv" -v b="$ref" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "–" }')
		fi
		rq='–'
		if [[ -n ${REQS[$row,rf$sfx]:-} ]]; then
			# shellcheck disable=SC2086
			rq=$(median ${REQS[$row,rf$sfx]})
		fi
		if [[ $row == *-wb ]]; then
			lc='(as above)' sc='(as above)'
		fi
		if [[ -n $VS ]]; then
			printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$(label "$row")" "$lc" "$sc" "$rc" "$ratio" "$rq" "${R_TARGET[$row]}"
		else
			printf '| %s | %s | %s | %s | %s | %s |\n' "$(label "$row")" "$lc" "$rc" "$ratio" "$rq" "${R_TARGET[$row]}"
		fi
	done
	echo
	echo "Times are wall-clock seconds, lower is better; MiB/s higher is better. The ratio divides" \
		"rfmount's number by $([[ -n $VS ]] && echo sshfs\'s || echo local disk\'s) on the same row" \
		"(a \`-o writeback\` row by that of the row above it). Requests: counted by rfserve."
	for n in ${NOTES[@]+"${NOTES[@]}"}; do echo "Note: $n."; done
	printf 'Elapsed %s s (+ %s s build). Raw per-pass numbers: %s\n' "$(rf_elapsed "$T_BUILT")" \
		"$(awk -v a="$T_START" -v b="$T_BUILT" 'BEGIN { printf "%.0f", b - a }')" "$RAW"
} >"$MD"
echo
cat "$MD"
