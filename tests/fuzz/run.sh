#!/bin/sh
# `make fuzz`: build the seed corpora, replay every regression input, then run each harness for
# SECONDS seconds on build-fuzz/corpus/<harness> plus tests/fuzz/seeds/<harness>. Fails when a
# regression or a fuzz run reports anything (crash, leak, sanitizer error, timeout, RSS limit);
# the reproducer is in build-fuzz/artifacts/<harness>/ and the log in build-fuzz/logs/<harness>.log.
# Usage (from the repository root): tests/fuzz/run.sh SECONDS HARNESS...
set -u
secs=$1
shift
B=build-fuzz
tests/fuzz/mkcorpus.sh || exit 1
mkdir -p "$B/logs"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
status=0
for h in "$@"; do
    bin=$B/fuzz_$h
    # Binary formats need room for a whole tiny model; text formats stay small and fast.
    case $h in
        llama2c|safetensors|gguf) maxlen=65536 ;;
        *) maxlen=16384 ;;
    esac
    regs=$(ls tests/fuzz/regressions/"$h"/* 2>/dev/null)
    if [ -n "$regs" ]; then
        # shellcheck disable=SC2086
        if ! "$bin" -rss_limit_mb=2048 -timeout=30 $regs > "$B/logs/$h-regressions.log" 2>&1; then
            echo "fuzz: $h: a regression input fails again, see $B/logs/$h-regressions.log" >&2
            tail -n 30 "$B/logs/$h-regressions.log" >&2
            status=1
        fi
    fi
    mkdir -p "$B/corpus/$h" "$B/artifacts/$h"
    seeds=tests/fuzz/seeds/$h
    [ -d "$seeds" ] || seeds=
    # shellcheck disable=SC2086
    if "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -max_len=$maxlen -timeout=30 \
            -print_final_stats=1 -artifact_prefix="$B/artifacts/$h/" "$B/corpus/$h" $seeds \
            > "$B/logs/$h.log" 2>&1; then
        stats=$(grep -E '^#[0-9]+.*DONE' "$B/logs/$h.log" | tail -n 1)
        eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$B/logs/$h.log")
        echo "fuzz: $h: ok, $eps exec/s, $stats"
    else
        echo "fuzz: $h: FAILED, see $B/logs/$h.log and $B/artifacts/$h/" >&2
        grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$B/logs/$h.log" | head -n 10 >&2
        status=1
    fi
done
exit $status
