#!/usr/bin/env bash
# Builds Kokkos with the OpenMP (and Serial) execution spaces from the Kokkos sources inside
# Debian's own `trilinos` source package, and installs it into a cache folder outside the
# clone. Debian's binary package (libtrilinos-kokkos-dev) is Serial-only; this gives the
# Kokkos backend a threaded host space to be tested on.
#
#   scripts/build_kokkos.sh            # prints the install prefix on its last line
#   cmake -DKokkos_ROOT="$(scripts/build_kokkos.sh | tail -n1)" ...
#
# Environment: LAMINA_CACHE (default ~/.cache/lamina), LAMINA_KOKKOS_JOBS (default 2).
# Idempotent: does nothing when the install is already present. The apt configuration is
# isolated (own source list and lists/cache folders); the system's apt state is untouched.
# Nothing is written inside the repository.
set -euo pipefail

cache="${LAMINA_CACHE:-$HOME/.cache/lamina}"
jobs="${LAMINA_KOKKOS_JOBS:-2}"
prefix="$cache/kokkos-openmp"
stamp="$prefix/.lamina-installed"

if [[ -f "$stamp" ]]; then
    echo "build_kokkos: Kokkos (OpenMP+Serial) already installed in $prefix" >&2
    echo "$prefix"
    exit 0
fi

for tool in apt-get cmake tar xz; do
    command -v "$tool" >/dev/null || { echo "build_kokkos: '$tool' is required" >&2; exit 1; }
done

apt_dir="$cache/apt"
src_dir="$cache/trilinos-src"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$src_dir"

# An isolated apt configuration: one deb-src line for Debian 12 main, own lists and cache.
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
cat >"$apt_dir/sources.list" <<EOF
deb-src [signed-by=$keyring] http://deb.debian.org/debian bookworm main
EOF
apt_opts=(
    -o "Dir::Etc::SourceList=$apt_dir/sources.list"
    -o "Dir::Etc::SourceParts=/nonexistent-lamina-sourceparts"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::Cache=$apt_dir"
    -o "Dir::Cache::archives=$apt_dir/archives"
    -o "APT::Sandbox::User=root"
    -o "Debug::NoLocking=1"
)
if [[ $(id -u) -ne 0 ]]; then apt_opts=("${apt_opts[@]/APT::Sandbox::User=root/APT::Sandbox::User=$(id -un)}"); fi

orig=$(ls "$src_dir"/trilinos_*.orig.tar.* 2>/dev/null | head -n1 || true)
if [[ -z "$orig" ]]; then
    echo "build_kokkos: downloading Debian's trilinos source package (~166 MB) into $src_dir" >&2
    apt-get -q "${apt_opts[@]}" update >&2
    (cd "$src_dir" && apt-get -q "${apt_opts[@]}" source --download-only trilinos >&2)
    orig=$(ls "$src_dir"/trilinos_*.orig.tar.* | head -n1)
fi

kokkos_src="$src_dir/kokkos"
if [[ ! -f "$kokkos_src/CMakeLists.txt" ]]; then
    echo "build_kokkos: extracting packages/kokkos from $(basename "$orig")" >&2
    rm -rf "$src_dir/extract" && mkdir -p "$src_dir/extract"
    tar -xf "$orig" -C "$src_dir/extract" --wildcards '*/packages/kokkos/*'
    found=$(find "$src_dir/extract" -maxdepth 3 -type d -path '*/packages/kokkos' | head -n1)
    [[ -n "$found" ]] || { echo "build_kokkos: no packages/kokkos in $orig" >&2; exit 1; }
    rm -rf "$kokkos_src" && mv "$found" "$kokkos_src" && rm -rf "$src_dir/extract"
fi

build="$cache/kokkos-openmp-build"
rm -rf "$build"
echo "build_kokkos: configuring and building Kokkos (OpenMP + Serial) with -j$jobs" >&2
cmake -S "$kokkos_src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" \
    -DCMAKE_CXX_STANDARD=17 -DCMAKE_CXX_EXTENSIONS=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
    -DKokkos_ENABLE_OPENMP=ON -DKokkos_ENABLE_SERIAL=ON -DKokkos_ENABLE_TESTS=OFF \
    -DKokkos_ENABLE_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$build" -j "$jobs" >&2
cmake --install "$build" >&2
rm -rf "$build"
touch "$stamp"
echo "$prefix"
