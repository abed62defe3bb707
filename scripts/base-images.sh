#!/usr/bin/env bash
# Makes the local base images that sample components and tests build FROM.
# No container image can be pulled on the machines we target, so each image is
# made from Debian packages and `docker import`ed. An image that already exists
# is left alone, so this is cheap to call before every test run.
#
#   choreo/busybox:1   a static busybox (sh, httpd, nc, wget): ~2 MB, instant
#   choreo/python:3.11 a minimal Debian bookworm with python3 (debootstrap, ~30 s)
#   choreo/python-build:3.11  the same with venv and pip: the build stage of Python source builds
#   choreo/node:20     Debian bookworm (minbase) with this host's Node.js and npm (package nodejs)
#   choreo/go:1.26     Debian bookworm (minbase) with this host's Go toolchain (GO_ROOT, /usr/local/go)
# Node.js and Go come from the host because Debian's are older than the projects we build
# ask for, and no image can be pulled; their versions are the host's.
set -euo pipefail

CACHE_DIR=${BASE_IMAGE_CACHE:-${DATA_DIR:-./data}/base-images}
MIRROR=${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
want=${*:-busybox python python_build node go}

have() { docker image inspect "$1" >/dev/null 2>&1; }

make_busybox() {
  have choreo/busybox:1 && return 0
  [ -x /bin/busybox ] || { echo "base-images: /bin/busybox is missing: apt-get install busybox-static" >&2; exit 1; }
  local root; root=$(mktemp -d)
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,var/www,root,proc,sys,dev}
  cp /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
  chmod 1777 "$root/tmp"
  # Fixed mtimes and owners: the same busybox gives the same base image.
  find "$root" -exec touch -h -d @0 {} +
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$root" -cf - . \
    | docker import --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin' - choreo/busybox:1 >/dev/null
  rm -rf "$root"
  echo "base-images: made choreo/busybox:1"
}

# debootstrap_image NAME TARBALL PACKAGES: a minimal Debian bookworm with PACKAGES, cached as a tarball.
debootstrap_image() {
  local name=$1 tarball="$CACHE_DIR/$2" packages=$3
  have "$name" && return 0
  command -v debootstrap >/dev/null || { echo "base-images: debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
  mkdir -p "$CACHE_DIR"
  if [ ! -s "$tarball" ]; then
    local root; root=$(mktemp -d)
    debootstrap --variant=minbase --include="$packages" bookworm "$root" "$MIRROR" >"$CACHE_DIR/debootstrap.log" 2>&1 \
      || { echo "base-images: debootstrap failed, see $CACHE_DIR/debootstrap.log" >&2; rm -rf "$root"; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/tmp/*
    tar --sort=name --numeric-owner -C "$root" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
    rm -rf "$root"
  fi
  docker import --change 'CMD ["python3"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV PYTHONDONTWRITEBYTECODE=1' "$tarball" "$name" >/dev/null
  echo "base-images: made $name"
}

# overlay_image NAME VERSION_FILE: the cached minbase with the host's files listed on stdin.
overlay_image() {
  local name=$1 base="$CACHE_DIR/bookworm-minbase.tar"
  mkdir -p "$CACHE_DIR"
  if [ ! -s "$base" ]; then
    local root; root=$(mktemp -d)
    debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$MIRROR" >"$CACHE_DIR/debootstrap.log" 2>&1 \
      || { echo "base-images: debootstrap failed, see $CACHE_DIR/debootstrap.log" >&2; rm -rf "$root"; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/tmp/*
    tar --sort=name --numeric-owner -C "$root" -cf "$base.part" . && mv "$base.part" "$base"
    rm -rf "$root"
  fi
  local root; root=$(mktemp -d)
  tar -C "$root" -xf "$base"
  tar -C / --files-from=- -cf - | tar -C "$root" -xf -
  shift
  tar --sort=name --numeric-owner -C "$root" -cf - . | docker import "$@" - "$name" >/dev/null
  rm -rf "$root"
  echo "base-images: made $name"
}

make_node() {
  have choreo/node:20 && return 0
  command -v node >/dev/null && node --version | grep -q '^v20\.' || { echo "base-images: choreo/node:20 needs this host's Node.js 20 (package nodejs)" >&2; exit 1; }
  [ -e /usr/bin/npm ] && [ -d /usr/lib/node_modules/npm ] || { echo "base-images: choreo/node:20 needs npm in /usr/lib/node_modules (package nodejs)" >&2; exit 1; }
  # node itself, and npm as it is now (npm may have updated itself since the package was
  # installed); npx when the host has it
  (cd / && for f in usr/bin/node usr/bin/npm usr/bin/npx; do if [ -e "$f" ] || [ -L "$f" ]; then echo "$f"; fi; done \
    && find usr/lib/node_modules \( -type f -o -type l \)) \
    | overlay_image choreo/node:20 --change 'CMD ["node"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
}

make_go() {
  have choreo/go:1.26 && return 0
  local goroot=${GO_ROOT:-/usr/local/go}
  "$goroot/bin/go" version 2>/dev/null | grep -q 'go1\.26' || { echo "base-images: choreo/go:1.26 needs Go 1.26 at $goroot (GO_ROOT)" >&2; exit 1; }
  (cd / && find "${goroot#/}" \( -type f -o -type l \) -not -path "${goroot#/}/test/*" -not -path "${goroot#/}/doc/*" -not -path "${goroot#/}/api/*") \
    | overlay_image choreo/go-bare:1.26 --change 'CMD ["go", "version"]' \
      --change "ENV PATH=$goroot/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  # The standard library compiled once, with the flags source builds use (builds/source.py),
  # so that a build compiles only the project and its modules.
  printf 'FROM choreo/go-bare:1.26\nENV GOCACHE=/go-cache GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-trimpath\nRUN go build std\n' \
    | DOCKER_BUILDKIT=0 docker build -q -t choreo/go:1.26 - >/dev/null
  docker rmi choreo/go-bare:1.26 >/dev/null
  echo "base-images: made choreo/go:1.26 (standard library compiled)"
}

make_python() {
  debootstrap_image choreo/python:3.11 python-3.11-bookworm.tar python3-minimal,python3,ca-certificates
}

make_python_build() {
  debootstrap_image choreo/python-build:3.11 python-build-3.11-bookworm.tar python3-minimal,python3,python3-venv,python3-pip,ca-certificates
}

for name in $want; do "make_$name"; done
