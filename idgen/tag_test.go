package idgen_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/seqrepo/seqrepo/idgen"
)

func TestParseTag(t *testing.T) {
	good := []struct {
		tag  string
		want idgen.Config
	}{
		{"sequence:commits_id_seq", idgen.Config{Sequence: "commits_id_seq", AllocationSize: 50, Optimizer: idgen.PooledLo}},
		{"sequence:commits_id_seq;allocationSize:50", idgen.Config{Sequence: "commits_id_seq", AllocationSize: 50}},
		{"sequence:s;allocationSize:10;optimizer:pooled", idgen.Config{Sequence: "s", AllocationSize: 10, Optimizer: idgen.Pooled}},
		{"SEQUENCE:s;ALLOCATIONSIZE:7;OPTIMIZER:POOLED", idgen.Config{Sequence: "s", AllocationSize: 7, Optimizer: idgen.Pooled}},
		{"Sequence:S;AllocationSize:1;Optimizer:Pooled-Lo", idgen.Config{Sequence: "S", AllocationSize: 1}},
		{"optimizer:pooled_lo;sequence:s", idgen.Config{Sequence: "s", AllocationSize: 50}},
		{"optimizer:pooledlo;sequence:s", idgen.Config{Sequence: "s", AllocationSize: 50}},
		{"seq:s;size:20", idgen.Config{Sequence: "s", AllocationSize: 20}},
		{"sequence:s;allocation_size:20", idgen.Config{Sequence: "s", AllocationSize: 20}},
		{"  sequence : s ; allocationSize : 3 ; ", idgen.Config{Sequence: "s", AllocationSize: 3}},
		{";;sequence:s;;", idgen.Config{Sequence: "s", AllocationSize: 50}},
		{"sequence:ingest.commits_id_seq", idgen.Config{Sequence: "ingest.commits_id_seq", AllocationSize: 50}},
		{`sequence:"Odd.Name"`, idgen.Config{Sequence: `"Odd.Name"`, AllocationSize: 50}},
		{`sequence:"a;b";allocationSize:5`, idgen.Config{Sequence: `"a;b"`, AllocationSize: 5}},
		{`sequence:ingest."We;ird:Name";optimizer:pooled`, idgen.Config{Sequence: `ingest."We;ird:Name"`, AllocationSize: 50, Optimizer: idgen.Pooled}},
		{`sequence:"x'; DROP TABLE victim; --"`, idgen.Config{Sequence: `"x'; DROP TABLE victim; --"`, AllocationSize: 50}},
		// No sequence: the key column's own, resolved by the caller.
		{"", idgen.Config{AllocationSize: 50}},
		{"allocationSize:10", idgen.Config{AllocationSize: 10}},
		{"optimizer:pooled", idgen.Config{AllocationSize: 50, Optimizer: idgen.Pooled}},
	}
	for _, tt := range good {
		t.Run(tt.tag, func(t *testing.T) {
			got, err := idgen.ParseTag(tt.tag)
			if err != nil {
				t.Fatalf("ParseTag(%q): %v", tt.tag, err)
			}
			if got != tt.want {
				t.Fatalf("ParseTag(%q) = %+v, want %+v", tt.tag, got, tt.want)
			}
		})
	}

	bad := []struct {
		tag      string
		mentions string // the error message names the problem
	}{
		{"sequence", "no value"},
		{"sequence:", "no value"},
		{"sequence:   ", "no value"},
		{"sequence:s;color:red", `unknown key "color"`},
		{"sequence:s;allocationSize", "no value"},
		{"sequence:s;sequence:t", "sequence given twice"},
		{"sequence:s;Sequence:t", "sequence given twice"},
		{"sequence:s;seq:t", "given twice"},
		{"sequence:s;size:10;allocationSize:20", "given twice"},
		{"sequence:s;allocation_size:10;allocationsize:10", "given twice"},
		{"sequence:s;optimizer:pooled;optimizer:pooled", "optimizer given twice"},
		{"sequence:s;allocationSize:0", `allocationSize "0"`},
		{"sequence:s;allocationSize:-1", `allocationSize "-1"`},
		{"sequence:s;allocationSize:x", `allocationSize "x"`},
		{"sequence:s;allocationSize:1.5", `allocationSize "1.5"`},
		{"sequence:s;allocationSize:99999999999999999999", "allocationSize"},
		{"sequence:s;optimizer:hilo", `optimizer "hilo"`},
		{`sequence:"abc`, "unterminated"},
		{`sequence:"abc;allocationSize:5`, "unterminated"},
		{`sequence:a"b;size:1`, "unterminated"},
		{"sequence:a\x00b", "NUL"},
	}
	for _, tt := range bad {
		t.Run("bad/"+tt.tag, func(t *testing.T) {
			got, err := idgen.ParseTag(tt.tag)
			if err == nil {
				t.Fatalf("ParseTag(%q) = %+v, want an error", tt.tag, got)
			}
			if !errors.Is(err, idgen.ErrInvalidConfig) {
				t.Fatalf("ParseTag(%q): %v does not match ErrInvalidConfig", tt.tag, err)
			}
			var ce *idgen.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("ParseTag(%q): %T is not a *ConfigError", tt.tag, err)
			}
			if !strings.Contains(err.Error(), tt.mentions) {
				t.Fatalf("ParseTag(%q): %q does not mention %q", tt.tag, err, tt.mentions)
			}
			if got != (idgen.Config{}) {
				t.Fatalf("ParseTag(%q) returned %+v with its error", tt.tag, got)
			}
		})
	}
}

// formatTag writes cfg as a tag that ParseTag reads back.
func formatTag(cfg idgen.Config) string {
	if cfg.Sequence == "" {
		return fmt.Sprintf("allocationSize:%d;optimizer:%s", cfg.AllocationSize, cfg.Optimizer)
	}
	return fmt.Sprintf("sequence:%s;allocationSize:%d;optimizer:%s", cfg.Sequence, cfg.AllocationSize, cfg.Optimizer)
}

func TestOptimizerString(t *testing.T) {
	for opt, want := range map[idgen.Optimizer]string{idgen.PooledLo: "pooled-lo", idgen.Pooled: "pooled", idgen.Optimizer(9): "Optimizer(9)"} {
		if got := opt.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(opt), got, want)
		}
	}
}

// FuzzParseTag checks that ParseTag never panics, that every error matches
// ErrInvalidConfig, and that a Config it returns is valid and reads back the same
// from a tag written for it.
func FuzzParseTag(f *testing.F) {
	for _, seed := range []string{
		"sequence:commits_id_seq;allocationSize:50",
		"SEQUENCE:s;ALLOCATIONSIZE:7;OPTIMIZER:POOLED",
		`sequence:ingest."We;ird:Name";optimizer:pooled-lo`,
		`sequence:"a;b";size:5`,
		`sequence:"abc`,
		"sequence:s;sequence:t",
		"sequence:s;size:0",
		"sequence:s;size:-1",
		"sequence:s;color:red",
		";;;",
		"",
		":",
		`"`,
		"sequence: \t s \n;size:+3",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tag string) {
		cfg, err := idgen.ParseTag(tag)
		if err != nil {
			if !errors.Is(err, idgen.ErrInvalidConfig) {
				t.Fatalf("ParseTag(%q): %v does not match ErrInvalidConfig", tag, err)
			}
			if cfg != (idgen.Config{}) {
				t.Fatalf("ParseTag(%q) returned %+v with its error", tag, cfg)
			}
			return
		}
		// An empty Sequence is a tag without one (the key column's own sequence); a
		// blank one is never returned.
		if (cfg.Sequence != "" && strings.TrimSpace(cfg.Sequence) == "") || cfg.AllocationSize < 1 ||
			(cfg.Optimizer != idgen.PooledLo && cfg.Optimizer != idgen.Pooled) {
			t.Fatalf("ParseTag(%q) = %+v, not a valid Config", tag, cfg)
		}
		again, err := idgen.ParseTag(formatTag(cfg))
		if err != nil {
			t.Fatalf("ParseTag(%q) = %+v, but its tag %q does not parse: %v", tag, cfg, formatTag(cfg), err)
		}
		if again != cfg {
			t.Fatalf("ParseTag(%q) = %+v, but its tag %q reads back as %+v", tag, cfg, formatTag(cfg), again)
		}
	})
}
