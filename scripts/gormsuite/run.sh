#!/usr/bin/env bash
# GORM's own test suite (go-gorm/gorm's tests/ module, on PostgreSQL) as a differential check of seqrepo's
# plugin: the suite runs as GORM ships it, then with the plugin registered, then with GORM's core models
# keyed by seqrepo, each on a fresh database of a private PostgreSQL; any test that passes in the first run
# and not in a later one, and is not on allow.txt with a reason, fails this script. See README.md,
# "GORM's test suite".
#
# usage: scripts/gormsuite/run.sh [MODE...]
#
#   plain   GORM alone (always run: it is the baseline the others are compared with)
#   plugin  db.Use(repo.NewPlugin()) on every connection the tests open; no model is keyed
#   keyed   plugin, and User, Account, Pet, Toy, Tools, Order, Parent and Child embed one base struct whose
#           ID carries idgen:"allocationSize:50"; after GORM's migrations, repo.AutoMigrate sets their
#           sequences to INCREMENT 50
#   (default: all three)
#
# Environment:
#   GORM_DIR       a GORM source tree (a checkout of v1.31.2); it is copied, never changed
#   GORM_REPO      without GORM_DIR: a git repository of GORM (clone or bare mirror) to extract GORM_VERSION from
#   GORM_VERSION   the tag GORM_REPO is extracted at (default v1.31.2)
#   SEQREPO_DIR    the seqrepo module GORM's tests are built with (default: this repository)
#   RESULTS_DIR    where the go test -json streams and report.txt go (default: a new temporary directory)
#   GORM_TEST_RUN  a go test -run pattern, to run part of the suite
#   GORM_TEST_SKIP a go test -skip pattern, to leave tests out
#   KEEP_WORK=1    keep the patched copy of GORM (its path is printed) instead of removing it
#
# Needs Go, git and patch, the PostgreSQL server binaries (as the rest of seqrepo's tests), and the Go module
# proxy (GORM's tests module also requires the mysql, sqlite, sqlserver and gaussdb drivers; sqlite needs cgo).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seqrepo="$(cd "${SEQREPO_DIR:-$root}" && pwd)"
version="${GORM_VERSION:-v1.31.2}"

modes=(plain)
for m in "$@"; do
  case "$m" in
    plain) ;;
    plugin | keyed) [[ " ${modes[*]} " == *" $m "* ]] || modes+=("$m") ;;
    *) echo "run.sh: unknown mode $m (want plain, plugin or keyed)" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || modes=(plain plugin keyed)

if [ -z "${GORM_DIR:-}" ] && [ -z "${GORM_REPO:-}" ]; then
  cat >&2 <<EOF
run.sh: say where GORM's source is:
  git clone --branch $version https://github.com/go-gorm/gorm /tmp/gorm && GORM_DIR=/tmp/gorm $0 $*
or GORM_REPO=<a clone or mirror of go-gorm/gorm> to extract $version from it.
EOF
  exit 2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/seqrepo-gormsuite-XXXXXX")"
results="${RESULTS_DIR:-$work/results}"
mkdir -p "$results"
results="$(cd "$results" && pwd)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "${KEEP_WORK:-}" = 1 ]; then
    echo "run.sh: kept the patched GORM copy in $work/gorm" >&2
  elif [[ "$results" == "$work"/* ]]; then
    find "$work" -mindepth 1 -maxdepth 1 ! -name results -exec rm -rf {} +
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# 1. A copy of GORM, patched: the tests_test.go hooks, seqrepo's overlay files, models that embed Model.
gorm="$work/gorm"
mkdir -p "$gorm"
if [ -n "${GORM_DIR:-}" ]; then
  tar -C "$GORM_DIR" --exclude=.git -cf - . | tar -C "$gorm" -xf -
else
  git -C "$GORM_REPO" archive "$version" | tar -x -C "$gorm"
fi
if [ ! -f "$gorm/tests/tests_test.go" ] || [ ! -f "$gorm/utils/tests/models.go" ]; then
  echo "run.sh: $gorm has no tests/tests_test.go or utils/tests/models.go: is GORM_DIR a GORM checkout?" >&2
  exit 2
fi
if ! patch -d "$gorm" -p1 --forward --no-backup-if-mismatch -s < "$here/tests_test.patch"; then
  echo "run.sh: GORM's tests/tests_test.go differs from $version's: update scripts/gormsuite/tests_test.patch" >&2
  exit 1
fi
cp -R "$here/testdata/overlay/." "$gorm/"
models="$gorm/utils/tests/models.go"
sed -i 's/^\tgorm\.Model$/\tModel/' "$models"
if ! grep -q $'^\tModel$' "$models"; then
  echo "run.sh: no model in $models embeds gorm.Model any more: update run.sh's keyed mode" >&2
  exit 1
fi
grep -q 'gorm\.[A-Z]' "$models" || sed -i '/^\t"gorm.io\/gorm"$/d' "$models"
# Tests that build a model's embedded gorm.Model by hand convert it (Model and gorm.Model differ only in tags),
# and so does the one that copies a model's Model into a struct embedding gorm.Model.
sed -i 's/Model: gorm\.Model{\([^}]*\)}/Model: Model(gorm.Model{\1})/g' "$gorm"/tests/*_test.go
sed -i 's/^\(\t\tModel: *\)user3\.Model,$/\1gorm.Model(user3.Model),/' "$gorm/tests/update_test.go"

(
  cd "$gorm/tests"
  go mod edit -replace "gorm.io/gorm=$gorm" -replace "github.com/seqrepo/seqrepo=$seqrepo" \
    -require github.com/seqrepo/seqrepo@v0.0.0-00010101000000-000000000000
  cat "$seqrepo/go.sum" >> go.sum
)

# 2. A private PostgreSQL with one database per mode.
(cd "$root" && go build -o "$work/pgserver" ./scripts/gormsuite/pgserver)
"$work/pgserver" -dsn-file "$work/dsns" "${modes[@]}" &
server_pid=$!
for _ in $(seq 1 240); do
  [ -f "$work/dsns" ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "run.sh: the PostgreSQL server did not start (see pgserver's error above)" >&2
    exit 1
  fi
  sleep 0.5
done
[ -f "$work/dsns" ] || { echo "run.sh: the PostgreSQL server did not start within 2 minutes" >&2; exit 1; }

# 3. The suite once per mode.
for mode in "${modes[@]}"; do
  case "$mode" in
    plain) tags="" ;;
    plugin) tags="seqrepo" ;;
    keyed) tags="seqrepo,seqrepo_keyed" ;;
  esac
  dsn="$(awk -F'\t' -v m="$mode" '$1 == m { print $2 }' "$work/dsns") TimeZone=Asia/Shanghai"
  echo "run.sh: $mode: go test${tags:+ -tags $tags} in GORM's tests/ ..." >&2
  start=$SECONDS
  (
    cd "$gorm/tests"
    GOWORK=off GOFLAGS="-mod=mod ${GOFLAGS:-}" GORM_DIALECT=postgres GORM_DSN="$dsn" \
      go test -json -count=1 -timeout 30m ${tags:+-tags "$tags"} ${GORM_TEST_RUN:+-run "$GORM_TEST_RUN"} \
      ${GORM_TEST_SKIP:+-skip "$GORM_TEST_SKIP"} . \
      > "$results/$mode.json" 2> "$results/$mode.stderr"
  ) || true
  echo "run.sh: $mode: done in $((SECONDS - start))s" >&2
  if grep -qv '^go: downloading' "$results/$mode.stderr"; then
    sed 's/^/    /' "$results/$mode.stderr" | tail -n 30 >&2
  fi
done

# 4. The differential report.
args=()
for mode in "${modes[@]}"; do args+=("$mode=$results/$mode.json"); done
rc=0
(cd "$root" && go run ./scripts/gormsuite/report -allow "$here/allow.txt" -flaky "$here/flaky.txt" "${args[@]}") > "$results/report.txt" || rc=$?
cat "$results/report.txt"
echo "run.sh: results in $results" >&2
exit "$rc"
