#!/usr/bin/env bash
# Test of scripts/fetch_mnist.sh against a local fixture mirror (file:// URLs, tiny fake
# .gz files and an md5 file for them). Usage: test_fetch_mnist.sh <the fetch_mnist.sh to test>
# Exits 0 on success, 77 (skipped) when curl or md5sum is missing, 1 on a failure.
set -euo pipefail

script="${1:?usage: test_fetch_mnist.sh path/to/fetch_mnist.sh}"
for tool in curl md5sum gzip; do
    command -v "$tool" >/dev/null 2>&1 || { echo "SKIPPED: $tool not installed"; exit 77; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/lamina_fetch_test.XXXXXX")
trap 'rm -rf "$work"' EXIT
mirror="$work/mirror"
dest="$work/dest"
md5s="$work/fixture.md5"
files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
check() { local what="$1"; shift; if "$@"; then echo "ok: $what"; else fail "$what"; fi; }
run() {  # run fetch_mnist.sh, keep its status and output
    set +e
    out=$(bash "$script" "$@" 2>&1)
    status=$?
    set -e
    printf '%s\n' "$out" | sed 's/^/    | /'
}
contains() { printf '%s' "$out" | grep -qF -- "$1"; }
md5() { md5sum < "$1" | cut -d' ' -f1; }

# --- The fixture mirror: four tiny gzip files, and their md5 file.
mkdir -p "$mirror"
for f in "${files[@]}"; do printf 'fake %s\n' "$f" | gzip -n > "$mirror/$f"; done
(cd "$mirror" && md5sum "${files[@]}") > "$md5s"

# --- The built-in defaults are the canonical sums and the canonical mirror.
for sum in f68b3c2dcbeaaa9fbdd348bbdeb94873 d53e105ee54ea40749a09fcbcd1e9432 \
           9fb629c4189551a2d022fa330f9573f3 ec29112dd5afa0611ce80d1b7f02629c; do
    check "script hardcodes $sum" grep -q "$sum" "$script"
done
check "script names the canonical mirror" grep -qF 'https://ossci-datasets.s3.amazonaws.com/mnist/' "$script"
run --print-md5
expected_defaults="f68b3c2dcbeaaa9fbdd348bbdeb94873  train-images-idx3-ubyte.gz
d53e105ee54ea40749a09fcbcd1e9432  train-labels-idx1-ubyte.gz
9fb629c4189551a2d022fa330f9573f3  t10k-images-idx3-ubyte.gz
ec29112dd5afa0611ce80d1b7f02629c  t10k-labels-idx1-ubyte.gz"
check "--print-md5 prints the canonical sums" test "$out" = "$expected_defaults"
run --md5-file "$md5s" --print-md5
check "--md5-file overrides the sums" test "$out" = "$(cat "$md5s")"

# --- A good fetch.
run --base-url "file://$mirror/" --md5-file "$md5s" "$dest"
check "good fetch exits 0" test "$status" = 0
for f in "${files[@]}"; do
    check "good fetch: $f identical to the mirror" cmp -s "$mirror/$f" "$dest/$f"
done
check "good fetch: no temporary files left" test -z "$(find "$dest" -name '.*part*')"

# --- A re-run skips every file: it works even with the mirror gone.
mv "$mirror" "$mirror.away"
run --base-url "file://$mirror/" --md5-file "$md5s" "$dest"
check "re-run exits 0" test "$status" = 0
check "re-run skips all four files" test "$(printf '%s\n' "$out" | grep -c 'skipped')" = 4
check "re-run downloads nothing" bash -c '! grep -q downloading <<<"$1"' _ "$out"
mv "$mirror.away" "$mirror"

# --- The base URL from LAMINA_MNIST_MIRROR, without the trailing slash; --only.
LAMINA_MNIST_MIRROR="file://$mirror" run --md5-file "$md5s" --only t10k "$work/env"
check "LAMINA_MNIST_MIRROR is used" test "$status" = 0
check "--only t10k fetches the t10k pair" test -f "$work/env/t10k-images-idx3-ubyte.gz" -a -f "$work/env/t10k-labels-idx1-ubyte.gz"
check "--only t10k fetches no training file" test ! -e "$work/env/train-images-idx3-ubyte.gz"

# --- A bad checksum: corrupt one fixture file.
good_sum=$(md5 "$mirror/t10k-labels-idx1-ubyte.gz")
printf 'corrupted\n' | gzip -n > "$mirror/t10k-labels-idx1-ubyte.gz"
bad_sum=$(md5 "$mirror/t10k-labels-idx1-ubyte.gz")

# Into a fresh folder: fails, names the file and both sums, keeps no bad file.
run --base-url "file://$mirror/" --md5-file "$md5s" "$work/fresh"
check "bad checksum exits non-zero" test "$status" != 0
check "bad checksum message names the file" contains "t10k-labels-idx1-ubyte.gz"
check "bad checksum message shows the expected sum" contains "$good_sum"
check "bad checksum message shows the actual sum" contains "$bad_sum"
check "bad download deleted" test ! -e "$work/fresh/t10k-labels-idx1-ubyte.gz"
check "no temporary files left after a bad checksum" test -z "$(find "$work/fresh" -name '.*part*')"
check "the good files were still fetched" test -f "$work/fresh/t10k-images-idx3-ubyte.gz"

# With --force over a good copy: fails, and the good file is not replaced by the bad one.
cp "$dest/t10k-labels-idx1-ubyte.gz" "$work/good-copy"
run --force --base-url "file://$mirror/" --md5-file "$md5s" "$dest"
check "forced re-fetch with a bad checksum exits non-zero" test "$status" != 0
check "the old good file is kept" cmp -s "$work/good-copy" "$dest/t10k-labels-idx1-ubyte.gz"
check "the message says the old file was left" contains "left as it was"

# A present file with a bad checksum is downloaded again (here: from the bad mirror, so it fails
# and the local file is untouched); once the mirror is fixed it is replaced by a good download.
printf 'local damage' > "$dest/t10k-labels-idx1-ubyte.gz"
run --base-url "file://$mirror/" --md5-file "$md5s" "$dest"
check "a damaged local file with a bad mirror: non-zero" test "$status" != 0
check "a damaged local file is re-downloaded" contains "downloading again"
cp "$work/good-copy" "$mirror/t10k-labels-idx1-ubyte.gz"
run --base-url "file://$mirror/" --md5-file "$md5s" "$dest"
check "a damaged local file with a good mirror: exit 0" test "$status" = 0
check "a damaged local file is replaced by the good download" cmp -s "$work/good-copy" "$dest/t10k-labels-idx1-ubyte.gz"

# --- A file missing from the mirror; usage errors.
rm "$mirror/train-labels-idx1-ubyte.gz"
run --base-url "file://$mirror/" --md5-file "$md5s" "$work/missing"
check "missing file on the mirror: non-zero" test "$status" != 0
check "missing file on the mirror: named" contains "train-labels-idx1-ubyte.gz"
run --no-such-option
check "unknown option: exit 2" test "$status" = 2
printf 'nothex  t10k-images-idx3-ubyte.gz\n' > "$work/bad.md5"
run --md5-file "$work/bad.md5" --print-md5
check "malformed md5 file: exit 2" test "$status" = 2
check "malformed md5 file: named" contains "$work/bad.md5"

if [ "$failures" != 0 ]; then
    echo "$failures check(s) failed" >&2
    exit 1
fi
echo "all fetch_mnist.sh checks passed"
