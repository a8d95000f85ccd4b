#!/usr/bin/env bash
# fetch_mnist.sh: download the four MNIST files and verify their MD5 checksums.
#
# Usage: scripts/fetch_mnist.sh [options] [DEST_DIR]
#
#   DEST_DIR             where the files go (created if needed; default: data/mnist)
#   --base-url URL       mirror to download from; the file names are appended to it
#                        (default: $LAMINA_MNIST_MIRROR if set, else the canonical mirror
#                        https://ossci-datasets.s3.amazonaws.com/mnist/ ; the original
#                        yann.lecun.com site no longer serves the files). file:// URLs work
#                        with curl (not with wget).
#   --md5-file F         expected sums in md5sum format ("<md5>  <file name>" per line),
#                        overriding the built-in canonical sums for the files it lists
#   --only SET           fetch only "train" or "t10k" (default: both)
#   --force              download again even when a file is present with a good checksum
#   --print-md5          print the expected sums (md5sum format) and exit
#   -h, --help           this help
#
# Files: train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
#        t10k-images-idx3-ubyte.gz,  t10k-labels-idx1-ubyte.gz
#
# Semantics:
#   * A file already in DEST_DIR with the expected checksum is kept and not downloaded
#     again (unless --force).
#   * Each file is downloaded to a temporary file in DEST_DIR, checked, and only then moved
#     over DEST_DIR/<file> (atomically). A download with a bad checksum is deleted and never
#     replaces anything: a good file already present stays as it was.
#   * A present file with a bad checksum is downloaded again; it is replaced only by a good
#     download.
#   * All files are attempted; the script exits 0 when every file ends up present with the
#     expected sum, 1 when any download or checksum failed (each failure is reported on
#     stderr, a bad checksum with the file name, the expected and the actual sum), 2 on a
#     usage error.
#   * Downloads use curl, or wget when curl is absent.
set -euo pipefail

readonly DEFAULT_MIRROR="https://ossci-datasets.s3.amazonaws.com/mnist/"
readonly FILES=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
# The canonical MD5 sums of the MNIST files.
declare -A MD5=(
    [train-images-idx3-ubyte.gz]=f68b3c2dcbeaaa9fbdd348bbdeb94873
    [train-labels-idx1-ubyte.gz]=d53e105ee54ea40749a09fcbcd1e9432
    [t10k-images-idx3-ubyte.gz]=9fb629c4189551a2d022fa330f9573f3
    [t10k-labels-idx1-ubyte.gz]=ec29112dd5afa0611ce80d1b7f02629c
)

prog=$(basename "$0")
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
die_usage() { echo "$prog: $*" >&2; echo "Try '$prog --help'." >&2; exit 2; }

base_url="${LAMINA_MNIST_MIRROR:-$DEFAULT_MIRROR}"
md5_file=""
dest=""
only=""
force=0
print_md5=0
while [ $# -gt 0 ]; do
    case "$1" in
        --base-url) [ $# -ge 2 ] || die_usage "--base-url needs a URL"; base_url="$2"; shift 2 ;;
        --base-url=*) base_url="${1#*=}"; shift ;;
        --md5-file) [ $# -ge 2 ] || die_usage "--md5-file needs a file"; md5_file="$2"; shift 2 ;;
        --md5-file=*) md5_file="${1#*=}"; shift ;;
        --only) [ $# -ge 2 ] || die_usage "--only needs train or t10k"; only="$2"; shift 2 ;;
        --only=*) only="${1#*=}"; shift ;;
        --force) force=1; shift ;;
        --print-md5) print_md5=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        -*) die_usage "unknown option '$1'" ;;
        *) [ -z "$dest" ] || die_usage "more than one destination ('$dest' and '$1')"; dest="$1"; shift ;;
    esac
done
if [ $# -gt 0 ]; then
    [ -z "$dest" ] && [ $# -eq 1 ] || die_usage "unexpected arguments: $*"
    dest="$1"
fi
dest="${dest:-data/mnist}"
case "$only" in ""|train|t10k) ;; *) die_usage "--only takes 'train' or 't10k', not '$only'" ;; esac
[ -n "$base_url" ] || die_usage "empty base URL"
case "$base_url" in */) ;; *) base_url="$base_url/" ;; esac

if [ -n "$md5_file" ]; then
    [ -r "$md5_file" ] || { echo "$prog: cannot read the md5 file '$md5_file'" >&2; exit 2; }
    while read -r sum name rest || [ -n "${sum:-}" ]; do
        [ -n "${sum:-}" ] || continue
        case "$sum" in \#*) continue ;; esac
        name="${name#\*}"  # md5sum's binary-mode marker
        if [ -z "${name:-}" ] || [ -n "${rest:-}" ] || ! [[ "$sum" =~ ^[0-9a-fA-F]{32}$ ]]; then
            echo "$prog: malformed line in '$md5_file': '$sum $name${rest:+ $rest}' (expected '<32 hex digits>  <file name>')" >&2
            exit 2
        fi
        [ -n "${MD5[$name]+x}" ] || { echo "$prog: '$md5_file' lists '$name', which is not an MNIST file" >&2; exit 2; }
        MD5[$name]=$(printf '%s' "$sum" | tr 'A-F' 'a-f')
    done < "$md5_file"
fi

selected=()
for f in "${FILES[@]}"; do
    case "$only" in "") selected+=("$f") ;; *) [ "${f%%-*}" = "$only" ] && selected+=("$f") ;; esac
done

if [ "$print_md5" = 1 ]; then
    for f in "${selected[@]}"; do printf '%s  %s\n' "${MD5[$f]}" "$f"; done
    exit 0
fi

md5_of() {
    if command -v md5sum >/dev/null 2>&1; then
        md5sum < "$1" | cut -d' ' -f1
    elif command -v md5 >/dev/null 2>&1; then
        md5 -q "$1"
    else
        openssl md5 -r < "$1" | cut -d' ' -f1
    fi
}

if command -v curl >/dev/null 2>&1; then
    download() { curl --fail --silent --show-error --location --retry 3 --output "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
    download() { wget --quiet --tries=3 --output-document="$2" "$1"; }
else
    echo "$prog: neither curl nor wget is installed" >&2
    exit 1
fi

mkdir -p "$dest"
tmp=""
cleanup() { if [ -n "$tmp" ]; then rm -f "$tmp"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

failed=0
for f in "${selected[@]}"; do
    want="${MD5[$f]}"
    target="$dest/$f"
    if [ -f "$target" ] && [ "$force" = 0 ]; then
        have=$(md5_of "$target")
        if [ "$have" = "$want" ]; then
            echo "$f: present, checksum OK, skipped"
            continue
        fi
        echo "$f: present but its checksum is $have, expected $want: downloading again"
    fi
    url="$base_url$f"
    tmp=$(mktemp "$dest/.$f.part.XXXXXX")
    echo "$f: downloading $url"
    if ! download "$url" "$tmp"; then
        echo "$prog: error: download of '$url' failed" >&2
        rm -f "$tmp"; tmp=""
        failed=1
        continue
    fi
    have=$(md5_of "$tmp")
    if [ "$have" != "$want" ]; then
        if [ -e "$target" ]; then kept="'$target' was left as it was"; else kept="nothing was saved"; fi
        echo "$prog: error: bad checksum for '$f' downloaded from '$url': expected md5 $want, got $have; the download was deleted and $kept" >&2
        rm -f "$tmp"; tmp=""
        failed=1
        continue
    fi
    chmod "$(printf '%04o' $((0666 & ~0$(umask))))" "$tmp"  # mktemp makes it 0600
    mv -f "$tmp" "$target"; tmp=""
    echo "$f: checksum OK, saved to $target"
done

if [ "$failed" != 0 ]; then
    echo "$prog: some MNIST files could not be fetched into '$dest' (see above)" >&2
    exit 1
fi
echo "MNIST files ready in '$dest'"
