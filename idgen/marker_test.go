package idgen_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/seqrepo/seqrepo/idgen"
)

// TestMarkerRefusesOtherConfig: the configuration recorded on the sequence (its
// COMMENT, as seqrepo's migrations write it) is checked by New and Check, so that a
// process configured differently from the others is refused even though this process
// has never used the sequence. A sequence without a marker is accepted.
func TestMarkerRefusesOtherConfig(t *testing.T) {
	db, _ := openDB(t)
	ctx := t.Context()
	mustExec(t, db,
		`CREATE SEQUENCE marked INCREMENT 50`,
		`COMMENT ON SEQUENCE marked IS 'seqrepo: pooled-lo 50'`,
		`CREATE SEQUENCE hibernate INCREMENT 50`,
		`COMMENT ON SEQUENCE hibernate IS E'keys of the orders table\nseqrepo: pooled 50'`,
		`CREATE SEQUENCE plain INCREMENT 50`,
		`COMMENT ON SEQUENCE plain IS 'a comment of the user''s own'`,
		`CREATE SEQUENCE bare INCREMENT 50`,
	)
	for _, tt := range []struct {
		cfg  idgen.Config
		want error
	}{
		{idgen.Config{Sequence: "marked", AllocationSize: 50}, nil},
		{idgen.Config{Sequence: "marked", AllocationSize: 50, Optimizer: idgen.Pooled}, idgen.ErrMixedConfig},
		{idgen.Config{Sequence: "hibernate", AllocationSize: 50, Optimizer: idgen.Pooled}, nil},
		{idgen.Config{Sequence: "hibernate", AllocationSize: 50}, idgen.ErrMixedConfig},
		{idgen.Config{Sequence: "plain", AllocationSize: 50, Optimizer: idgen.Pooled}, nil},
		{idgen.Config{Sequence: "bare", AllocationSize: 50, Optimizer: idgen.Pooled}, nil},
	} {
		_, err := idgen.New(ctx, db, tt.cfg)
		if tt.want == nil {
			noErr(t, err, "New("+tt.cfg.Marker()+") on "+tt.cfg.Sequence)
			continue
		}
		if !errors.Is(err, tt.want) {
			t.Fatalf("New(%s) on %s: %v, want %v", tt.cfg.Marker(), tt.cfg.Sequence, err, tt.want)
		}
		var mm *idgen.MarkerMismatchError
		if !errors.As(err, &mm) {
			t.Fatalf("error %T is not a *MarkerMismatchError", err)
		}
		// The message names both configurations and the sequence.
		for _, s := range []string{tt.cfg.Sequence, "seqrepo: pooled 50", "seqrepo: pooled-lo 50"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not contain %q", err, s)
			}
		}
		if err := idgen.Check(ctx, db, tt.cfg); !errors.Is(err, idgen.ErrMixedConfig) {
			t.Errorf("Check: %v, want ErrMixedConfig", err)
		}
	}
	if got := (idgen.Config{Sequence: "x", AllocationSize: 50, Optimizer: idgen.Pooled}).Marker(); got != "seqrepo: pooled 50" {
		t.Errorf("Marker() = %q", got)
	}
}
