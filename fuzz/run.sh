#!/usr/bin/env bash
# AFL++ fuzzing of the template and catalog code (see fuzz/README.md).
#
#   fuzz/run.sh [SECONDS]   build, run both targets in parallel for SECONDS
#                           (default $FUZZ_SECONDS, else 600); exit 1 if any
#                           crash or hang was found (listed at the end)
#   fuzz/run.sh cmin        merge each target's last queue into its corpus,
#                           minimized with `cargo afl cmin`
#
# Output (queues, crashes, hangs, stats) is in fuzz/target/afl/<target>/.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
targets=(render config)

# cargo-afl builds AFL++ from the source it ships; nothing else is downloaded.
if ! cargo afl --version >/dev/null 2>&1; then
  cargo install cargo-afl --locked
fi
# AFL++ itself is built once per rustc version (into ~/.local/share/afl.rs).
if ! compgen -G "${XDG_DATA_HOME:-$HOME/.local/share}/afl.rs/rustc-$(rustc --version | awk '{print $2}')-*/afl.rs-*/afl/bin/afl-fuzz" >/dev/null; then
  cargo afl config --build
fi

# Not --locked: gitfaas' own dependencies may have moved since Cargo.lock here.
cargo afl build --release

# The machine is shared: no CPU binding, no frequency check, no UI.
export AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1
export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1

if [ "${1:-}" = cmin ]; then
  for t in "${targets[@]}"; do
    merged=$(mktemp -d)
    cp corpus/"$t"/* "$merged"/
    if [ -d target/afl/"$t"/default/queue ]; then
      find target/afl/"$t"/default/queue -maxdepth 1 -type f -name 'id:*' \
        -exec cp {} "$merged"/ \;
    fi
    rm -rf target/afl/cmin-"$t"
    # -e: edges only, not hit counts: a corpus a tenth the size.
    cargo afl cmin -e -i "$merged" -o target/afl/cmin-"$t" -- target/release/"$t"
    rm -rf "$merged"
    # Hand-written seeds and crash reproducers keep their names; what AFL++
    # found is named by content, so re-runs give stable names.
    find corpus/"$t" -type f -regextype posix-extended \
      -regex '.*/[0-9a-f]{16}' -delete
    declare -A kept=()
    for f in corpus/"$t"/*; do kept[$(sha1sum "$f" | cut -c1-16)]=1; done
    for f in target/afl/cmin-"$t"/*; do
      h=$(sha1sum "$f" | cut -c1-16)
      [ -n "${kept[$h]:-}" ] || cp "$f" corpus/"$t"/"$h"
    done
    unset kept
    echo "corpus/$t: $(find corpus/"$t" -type f | wc -l) files, $(cat corpus/"$t"/* | wc -c) bytes"
  done
  exit 0
fi

seconds=${1:-${FUZZ_SECONDS:-600}}
pids=()
for t in "${targets[@]}"; do
  rm -rf target/afl/"$t"
  mkdir -p target/afl/"$t"
  # -V: stop after that many seconds; -t: 2 s per input counts as a hang.
  nice cargo afl fuzz -V "$seconds" -t 2000 -x yaml.dict \
    -i corpus/"$t" -o target/afl/"$t" target/release/"$t" \
    >target/afl/"$t".log 2>&1 &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done

found=0
for t in "${targets[@]}"; do
  stats=target/afl/$t/default/fuzzer_stats
  if [ ! -f "$stats" ]; then
    echo "$t: AFL++ did not start; see fuzz/target/afl/$t.log" >&2
    tail -20 target/afl/"$t".log >&2
    status=1
    continue
  fi
  get() { awk -F': *' -v k="$1" '$1 ~ "^"k" *$" {print $2}' "$stats"; }
  echo "$t: $(get execs_done) execs in $(get run_time) s, corpus $(get corpus_count), crashes $(get saved_crashes), hangs $(get saved_hangs)"
  for f in target/afl/"$t"/default/crashes/id:* target/afl/"$t"/default/hangs/id:*; do
    [ -e "$f" ] || continue
    echo "  fuzz/$f"
    found=1
  done
done
if [ "$found" = 1 ]; then
  echo "replay one with: fuzz/target/release/<target> < FILE" >&2
  exit 1
fi
exit "$status"
