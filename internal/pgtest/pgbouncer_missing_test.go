package pgtest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

const missingBouncerChild = "SEQREPO_PGTEST_MISSING_BOUNCER_CHILD"

// TestRerunWithoutPgBouncer: with no pgbouncer installed, the rerun through it is
// skipped, saying how to install it, outside CI; in CI (or with
// SEQREPO_REQUIRE_PGBOUNCER) it fails.
func TestRerunWithoutPgBouncer(t *testing.T) {
	old := pgbouncerBinary
	pgbouncerBinary = func() (string, error) { return "", errNoPgBouncer }
	t.Cleanup(func() { pgbouncerBinary = old })
	t.Setenv("CI", "")
	t.Setenv(RequirePgBouncerEnv, "")
	t.Setenv(PgBouncerEnv, "")

	var sub *testing.T
	t.Run("outside CI", func(t *testing.T) {
		sub = t
		RerunThroughPgBouncer(t)
	})
	if !sub.Skipped() {
		t.Fatal("without pgbouncer and outside CI the rerun should be skipped")
	}

	// In CI the same call must fail: run it in a child whose failure we can observe.
	cmd := exec.Command(os.Args[0], "-test.run=^TestRerunWithoutPgBouncerChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), missingBouncerChild+"=1", "CI=true")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("in CI a missing pgbouncer should fail the rerun; the child passed:\n%s", out)
	}
	if !strings.Contains(string(out), "pgbouncer") {
		t.Fatalf("the failure should name pgbouncer:\n%s", out)
	}
}

// TestRerunWithoutPgBouncerChild is the child of TestRerunWithoutPgBouncer; it does
// nothing unless that test started it.
func TestRerunWithoutPgBouncerChild(t *testing.T) {
	if os.Getenv(missingBouncerChild) != "1" {
		return
	}
	pgbouncerBinary = func() (string, error) { return "", errNoPgBouncer }
	RerunThroughPgBouncer(t)
}
