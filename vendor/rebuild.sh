#!/usr/bin/env bash
# Rebuilds vendor/quinn and vendor/quinn-proto from the published crates plus the patch series
# in vendor/patches/ (vendor/README.md).
#
#   vendor/rebuild.sh           rewrite vendor/<crate>/ from published + patches
#   vendor/rebuild.sh --check   exit 1, with a diff summary, if vendor/ differs from that
#   vendor/rebuild.sh --test    run quinn-proto's own unit tests on vendor/quinn-proto
#
# The published crate is the .crate archive in cargo's registry cache, checked against the
# checksum in vendor/upstream/Cargo.lock; put it there once with
#   cargo fetch --locked --manifest-path vendor/upstream/Cargo.toml
# After that the rebuild and the check work offline. --test also needs quinn-proto's
# test-only dependencies, from its own published Cargo.lock (`cargo fetch`, once).
set -euo pipefail

cd "$(dirname "$0")/.."
VENDOR=vendor
LOCK=$VENDOR/upstream/Cargo.lock
CRATES=(quinn quinn-proto)
CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}

mode=${1:-rebuild}
case $mode in
  rebuild | --check | --test) ;;
  *)
    echo "usage: $0 [--check | --test]" >&2
    exit 2
    ;;
esac

# Prints "version checksum" of a registry package in vendor/upstream/Cargo.lock.
locked() {
  awk -v name="$1" '
    /^\[\[package\]\]/ { n = ""; v = ""; c = "" }
    /^name = / { n = $3; gsub(/"/, "", n) }
    /^version = / { v = $3; gsub(/"/, "", v) }
    /^checksum = / { c = $3; gsub(/"/, "", c); if (n == name) print v, c }
  ' "$LOCK"
}

# Extracts the published crate, checked against the lockfile, into $2.
unpack() {
  local name=$1 dest=$2 version sum archive
  read -r version sum < <(locked "$name")
  if [ -z "${version:-}" ]; then
    echo "$name is not in $LOCK" >&2
    exit 2
  fi
  archive=$(find "$CARGO_HOME/registry/cache" -name "$name-$version.crate" 2>/dev/null | head -n 1)
  if [ -z "$archive" ]; then
    echo "$name-$version.crate is not in $CARGO_HOME/registry/cache; run:" >&2
    echo "  cargo fetch --locked --manifest-path $VENDOR/upstream/Cargo.toml" >&2
    exit 2
  fi
  if [ "$(sha256sum "$archive" | cut -d' ' -f1)" != "$sum" ]; then
    echo "$archive does not match the checksum in $LOCK" >&2
    exit 1
  fi
  mkdir -p "$dest"
  tar -xzf "$archive" -C "$dest" --strip-components=1 --no-same-owner
  # Contents only: the archive's timestamps and modes are not part of the recipe.
  find "$dest" -type d -exec chmod 755 {} + && find "$dest" -type f -exec chmod 644 {} +
  echo "$version"
}

# Applies vendor/patches/<crate>/series to the tree in $2, in order, without fuzz.
apply() {
  local name=$1 tree=$2 patch
  while read -r patch; do
    case $patch in '' | '#'*) continue ;; esac
    if ! patch -d "$tree" -p1 -F0 -N -s --no-backup-if-mismatch <"$VENDOR/patches/$name/$patch"; then
      echo "$name: $patch does not apply" >&2
      exit 1
    fi
  done <"$VENDOR/patches/$name/series"
}

if [ "$mode" = --test ]; then
  # quinn-proto's own suite (src/tests and the inline unit tests), on the vendored tree as it
  # is, with the dependency versions of its published Cargo.lock. Its own target directory, so
  # that Huddle's builds are not invalidated.
  # The tree is copied out of the repository first: Huddle's workspace (Cargo.toml) would
  # otherwise claim it as a package outside its members and refuse to build it on its own.
  copy=$(mktemp -d)
  trap 'rm -rf "$copy"' EXIT
  cp -R "$VENDOR/quinn-proto" "$copy/"
  manifest=$copy/quinn-proto/Cargo.toml
  cargo fetch --locked --manifest-path "$manifest" >/dev/null
  cargo test --locked --offline --manifest-path "$manifest" --target-dir "$PWD/target/vendor-tests" --lib
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for name in "${CRATES[@]}"; do
  version=$(unpack "$name" "$work/$name")
  apply "$name" "$work/$name"
  if [ "$mode" = --check ]; then
    if ! diff -r "$work/$name" "$VENDOR/$name" >"$work/$name.diff"; then
      echo "vendor/$name differs from $name $version + vendor/patches/$name:" >&2
      sed -e "s|$work/|published+patches: |" "$work/$name.diff" | grep -E '^(Only in|Files|diff)' \
        | sed -n 1,40p >&2
      echo "(vendor/rebuild.sh rewrites vendor/$name; vendor/README.md says how to change a patch)" >&2
      status=1
    fi
  else
    rm -rf "${VENDOR:?}/$name"
    cp -R "$work/$name" "$VENDOR/$name"
    echo "vendor/$name: $name $version + $(grep -cv '^\(#\|$\)' "$VENDOR/patches/$name/series") patches"
  fi
done
exit $status
