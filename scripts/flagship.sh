#!/usr/bin/env bash
# The README's first command: installs what is needed, builds the flagship example (LeNet-5)
# and trains it on real MNIST.
#
#   scripts/flagship.sh [DATA_DIR] [-- EXAMPLE_OPTIONS...]     e.g. scripts/flagship.sh -- --seed 2
#
# Data: DATA_DIR, else $LAMINA_DATA_DIR, else ../shared/data/mnist beside the checkout, else
# data/mnist in the checkout; when none holds the MNIST files, scripts/fetch_mnist.sh downloads
# the four files from the canonical mirror into data/mnist and verifies their MD5 checksums.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

data_dir=""
example_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --) shift; example_args=("$@"); break ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) data_dir="$1" ;;
  esac
  shift
done

has_mnist() { [[ -n "$1" ]] && { [[ -f "$1/t10k-images-idx3-ubyte.gz" ]] || [[ -f "$1/t10k-images-idx3-ubyte" ]]; }; }

bash "$ROOT/scripts/setup.sh"

if [[ -z "$data_dir" ]]; then
  for candidate in "${LAMINA_DATA_DIR:-}" "$ROOT/../shared/data/mnist" "$ROOT/data/mnist"; do
    if has_mnist "$candidate"; then data_dir="$candidate"; break; fi
  done
fi
if [[ -z "$data_dir" ]]; then
  echo "flagship.sh: no MNIST files found; downloading them into data/mnist"
  bash "$ROOT/scripts/fetch_mnist.sh" "$ROOT/data/mnist"
  data_dir="$ROOT/data/mnist"
fi
has_mnist "$data_dir" || { echo "flagship.sh: '$data_dir' holds no MNIST files (t10k-images-idx3-ubyte[.gz])" >&2; exit 1; }

cmake -S "$ROOT" -B "$ROOT/build/release" -DCMAKE_BUILD_TYPE=Release -DLAMINA_BUILD_TESTS=OFF -DLAMINA_BUILD_BENCH=OFF
start=$SECONDS
cmake --build "$ROOT/build/release" --target mnist_lenet -j 2
echo "flagship.sh: mnist_lenet compiled in $((SECONDS - start)) s"
exec "$ROOT/build/release/examples/mnist_lenet" "$data_dir" "${example_args[@]}"
