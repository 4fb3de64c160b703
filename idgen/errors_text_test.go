package idgen_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/seqrepo/seqrepo/idgen"
)

// onePrefix fails t unless msg has exactly one "idgen:" prefix, at its start.
func onePrefix(t *testing.T, msg string) {
	t.Helper()
	if !strings.HasPrefix(msg, "idgen: ") || strings.Count(msg, "idgen:") != 1 {
		t.Errorf("want one \"idgen:\" prefix, at the start:\n%s", msg)
	}
}

// Errors that wrap one of the package's sentinels say "idgen:" once: the sentinels
// name the condition, the error around them names the package and the sequence.
func TestErrorTextHasOnePrefix(t *testing.T) {
	db, _ := openDB(t)
	ctx := context.Background()
	mustExec(t, db, `CREATE SEQUENCE cyc_seq INCREMENT 10 CYCLE`)

	_, err := idgen.New(ctx, db, idgen.Config{Sequence: "thing_id_seq", AllocationSize: 10})
	if !errors.Is(err, idgen.ErrSequenceNotFound) {
		t.Fatalf("New on a missing sequence: %v, want ErrSequenceNotFound", err)
	}
	onePrefix(t, err.Error())
	if !strings.HasPrefix(err.Error(), "idgen: sequence thing_id_seq: sequence not found") {
		t.Errorf("got %q", err)
	}

	_, err = idgen.New(ctx, db, idgen.Config{Sequence: "cyc_seq", AllocationSize: 10})
	if !errors.Is(err, idgen.ErrCycle) {
		t.Fatalf("New on a CYCLE sequence: %v, want ErrCycle", err)
	}
	onePrefix(t, err.Error())

	// Check lists one line per problem, and counts them in words.
	err = idgen.Check(ctx, db, idgen.Config{Sequence: "thing_id_seq", AllocationSize: 10})
	if err == nil {
		t.Fatal("Check on a missing sequence: nil")
	}
	onePrefix(t, err.Error())
	if strings.Contains(err.Error(), "1 problems") {
		t.Errorf("not pluralised correctly: %q", err)
	}
	err = idgen.Check(ctx, db,
		idgen.Config{Sequence: "thing_id_seq", AllocationSize: 10},
		idgen.Config{Sequence: "cyc_seq", AllocationSize: 10})
	onePrefix(t, err.Error())
	if !strings.Contains(err.Error(), "2 problems") {
		t.Errorf("want the count of problems: %q", err)
	}
}
