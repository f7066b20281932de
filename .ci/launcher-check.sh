#!/usr/bin/env bash
# The `ee` launcher on JDK 25+ (its AOT cache): the first run of a build records the cache (on `ee aot-training`)
# without adding anything of the JVM's or the training run's to the command's stdout (`ee ... > file` must hold the command's output only), writes the cache, and the
# next run starts from it with the same output. Usage: .ci/launcher-check.sh JDK_HOME (after a build).
set -euo pipefail
cd "$(dirname "$0")/.."
jdk=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "launcher-check: FAIL: $*" >&2; exit 1; }
rm -rf ee-cli/target/aot
run() { # a tiny pretraining on the README: deterministic stdout, a few seconds
  rm -rf "$tmp/model"
  JAVA_HOME=$jdk ./ee pretrain --byte-level --corpus README.md --dim 32 --layers 2 --attention-heads 2 --seq-len 32 --batch 2 \
    --steps 3 --threads 1 --quiet --out "$tmp/model" > "$tmp/$1.out" 2> "$tmp/$1.err" || { cat "$tmp/$1.err" >&2; fail "ee pretrain ($1 run) failed"; }
}
run first
grep -q "recording the JVM's AOT cache" "$tmp/first.err" || fail "the first run did not record an AOT cache: $(cat "$tmp/first.err")"
if grep -q AOTConfiguration "$tmp/first.out"; then fail "the JVM's AOT message is on stdout: $(grep AOTConfiguration "$tmp/first.out")"; fi
ls ee-cli/target/aot/ee-*.aot >/dev/null 2>&1 || fail "no AOT cache written under ee-cli/target/aot"
run second
grep -q "recording" "$tmp/second.err" && fail "the second run recorded again instead of using the cache"
sed 's/[0-9]* tokens\/s//' "$tmp/first.out" > "$tmp/first.cmp"
sed 's/[0-9]* tokens\/s//' "$tmp/second.out" > "$tmp/second.cmp"
diff "$tmp/first.cmp" "$tmp/second.cmp" >&2 || fail "the run from the AOT cache printed something else than the first run"
# the first run's own stderr and exit status come through after the recording (once lost to a redirection of the launcher's)
rm -rf ee-cli/target/aot
if JAVA_HOME=$jdk ./ee inspect --model "$tmp/missing.bin" > "$tmp/third.out" 2> "$tmp/third.err"; then fail "ee inspect of a missing file succeeded on the recording run"; fi
grep -q "recording the JVM's AOT cache" "$tmp/third.err" || fail "the third run did not record an AOT cache: $(cat "$tmp/third.err")"
grep -q "missing.bin" "$tmp/third.err" || fail "the recording run's own error message was lost: $(cat "$tmp/third.err")"
echo "launcher-check: PASS (first run recorded the AOT cache, stdout clean; second run used it, same output; a recording run's errors come through)"
