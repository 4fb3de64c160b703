package idgen

import (
	"context"
	"fmt"
	"strings"
)

// Check verifies each Config against the database the way New does, without making
// an Allocator, and reports every problem at once: a missing sequence, a CYCLE
// sequence, an INCREMENT other than AllocationSize (naming both numbers), an exhausted
// sequence, or an invalid Config. It returns nil when all are sound, else a
// *CheckError. Use it at startup, like Hibernate's schema validation.
//
// Check is safe for concurrent use if q is.
func Check(ctx context.Context, q DB, cfgs ...Config) error {
	var problems []error
	for _, cfg := range cfgs {
		if err := CheckOne(ctx, q, cfg); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			problems = append(problems, err)
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return &CheckError{Problems: problems}
}

// CheckOne verifies one Config as New does and returns its error, or nil.
func CheckOne(ctx context.Context, q DB, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	if err := checkDB(cfg.Sequence, q); err != nil {
		return err
	}
	_, _, err := describe(ctx, q, cfg)
	return err
}

// CheckError lists every problem Check found, one error per Config. errors.Is and
// errors.As see each of them (ErrIncrementMismatch, ErrSequenceNotFound, …).
//
// It is seqrepo's one validation error type: migrations.Validate, repo's Plugin.Validate
// and the check db.Use runs for repo.PluginConfig.Validate return it too, with one
// *KeyError per offending model (errors.As finds the first; range over Problems for all).
// Like any error value it is not changed after it is returned.
type CheckError struct {
	Problems []error
}

// Error counts the problems, then lists one a line: "idgen: check found 2 problems:\n  - …".
func (e *CheckError) Error() string {
	var b strings.Builder
	// One prefix for the list: each line is a problem's text without its own "idgen: ".
	if len(e.Problems) == 1 {
		b.WriteString("idgen: check found 1 problem:")
	} else {
		fmt.Fprintf(&b, "idgen: check found %d problems:", len(e.Problems))
	}
	for _, p := range e.Problems {
		b.WriteString("\n  - ")
		b.WriteString(body(p))
	}
	return b.String()
}

// Unwrap returns the problems, for errors.Is and errors.As.
func (e *CheckError) Unwrap() []error { return e.Problems }

var _ interface{ Unwrap() []error } = (*CheckError)(nil)
