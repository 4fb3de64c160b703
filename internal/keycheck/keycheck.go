// Package keycheck is the one validator of seqrepo's keyed models, shared by repo
// (Plugin.Validate, PluginConfig.Validate) and migrations (Validate), so that the two cannot
// disagree: the same rule for key types, the same checks of the sequence and the table
// (idgen.CheckKey), the same error type (*idgen.KeyError inside an *idgen.CheckError)
// and the same hints.
//
// It lives in internal so that neither importer depends on the other: repo imports
// GORM and describes a model from GORM's schema; migrations knows no ORM and describes
// it from the Go type (FromType). Both fill a Model and call Check. Everything here is
// safe for concurrent use.
package keycheck

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/seqrepo/seqrepo/idgen"
)

// IntegerType reports whether t can hold a key from a sequence: int, int8 … int64,
// uint … uint64, or a type defined on one of those. A key beyond the field's range is
// refused when it is assigned, never wrapped.
func IntegerType(t reflect.Type) bool {
	if t == nil {
		return false
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// Model is what a validator knows of one model's key before it asks the database.
type Model struct {
	Name   string // the Go type, as reflect.Type.String() writes it ("models.Commit")
	Field  string // the key field, "" when none was found
	Table  string // exact, optionally "schema.table"; "" when unknown
	Column string // exact
	Config idgen.Config
	// Err is a problem found without the database (matching idgen.ErrNoKeyTag or
	// idgen.ErrInvalidConfig); Check then reports it alone.
	Err error
}

// Check checks m's key with idgen.CheckKey and returns nil, an *idgen.KeyError, or
// ctx.Err() alone when ctx ended.
func Check(ctx context.Context, q idgen.Querier, m Model) error {
	ke := &idgen.KeyError{Model: m.Name, Field: m.Field, Table: m.Table, Column: m.Column, Sequence: m.Config.Sequence}
	if m.Err != nil {
		ke.Err = m.Err
		return ke
	}
	cfg, err := idgen.CheckKey(ctx, q, idgen.Key{Table: m.Table, Column: m.Column, Config: m.Config})
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	ke.Sequence, ke.Err = cfg.Sequence, err
	if errors.Is(err, idgen.ErrIncrementMismatch) || errors.Is(err, idgen.ErrSequenceBehind) {
		ke.Hint = AdoptionHint(m.Table, m.Column, cfg.AllocationSize) + " in a migration, or repo.AutoMigrate at startup"
	}
	return ke
}

// Unreachable returns the error of a trivial query on q, or nil when q answers. A validator
// calls it when its first model fails, so that a database it cannot reach (down, refusing
// connections, a closed handle) is reported once instead of once per model.
func Unreachable(ctx context.Context, q idgen.Querier) error {
	rows, err := q.QueryContext(ctx, "SELECT 1")
	if err != nil {
		return err
	}
	return rows.Close()
}

// AdoptionHint returns the migrations.NewAdoption call that adopts table's column, as
// Go source: migrations.NewAdoption(migrations.AdoptConfig{Table: "orders", Column: "id",
// AllocationSize: 50}), with Schema for a schema-qualified table.
func AdoptionHint(table, column string, size int) string {
	schema, name, ok := strings.Cut(table, ".")
	if !ok {
		return fmt.Sprintf("migrations.NewAdoption(migrations.AdoptConfig{Table: %s, Column: %s, AllocationSize: %d})", strconv.Quote(table), strconv.Quote(column), size)
	}
	return fmt.Sprintf("migrations.NewAdoption(migrations.AdoptConfig{Schema: %s, Table: %s, Column: %s, AllocationSize: %d})", strconv.Quote(schema), strconv.Quote(name), strconv.Quote(column), size)
}

// Errors collects the problems of many models into the one error type the validators
// return: nil, or an *idgen.CheckError whose Problems are *idgen.KeyError.
func Errors(problems []error) error {
	if len(problems) == 0 {
		return nil
	}
	return &idgen.CheckError{Problems: problems}
}

// NoKey returns the error for a model seqrepo cannot key, matching idgen.ErrNoKeyTag.
func NoKey(format string, args ...any) error {
	return fmt.Errorf("%w: %s", idgen.ErrNoKeyTag, fmt.Sprintf(format, args...))
}
