# Shared by run.sh and test.sh: Debian packages and the Release build.
# Sourced, not run.

RECSYS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RECSYS_BUILD="${RECSYS_BUILD:-$RECSYS_ROOT/build/release}"

# Everything the build, the tests and the dataset downloader need.
RECSYS_PACKAGES=(
  g++ cmake ninja-build pkg-config
  libabsl-dev libeigen3-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev
  curl ca-certificates unzip python3
  openssl python3-yaml
)

# Installs missing packages when root; otherwise prints the exact command and
# fails, so nothing half-works.
recsys_ensure_packages() {
  local missing=()
  local p
  for p in "${RECSYS_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
      missing+=("$p")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "recsys: missing Debian packages. Install them with:" >&2
    echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    return 1
  fi
  echo "recsys: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" ||
    { apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; }
}

# The -march the Release tree is built for (CMake's RECSYS_MARCH). These
# scripts build on the machine that runs the result, so "native" by default;
# set RECSYS_MARCH= (empty) for portable binaries, or e.g. x86-64-v3 for a
# known fleet (deploy/Dockerfile does: its image may run elsewhere).
RECSYS_MARCH="${RECSYS_MARCH-native}"

# Configures (once, and again when RECSYS_MARCH changes) and builds the
# Release tree.
recsys_build() {
  local cached=""
  if [ -f "$RECSYS_BUILD/CMakeCache.txt" ]; then
    cached="$(sed -n 's/^RECSYS_MARCH:STRING=//p' "$RECSYS_BUILD/CMakeCache.txt")"
  fi
  if [ ! -f "$RECSYS_BUILD/build.ninja" ] || [ "$cached" != "$RECSYS_MARCH" ]; then
    cmake -S "$RECSYS_ROOT" -B "$RECSYS_BUILD" -G Ninja \
      -DCMAKE_BUILD_TYPE=Release "-DRECSYS_MARCH=$RECSYS_MARCH" || return 1
  fi
  cmake --build "$RECSYS_BUILD" -j "$(nproc)" "$@"
}
