package migrations

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/seqrepo/seqrepo/idgen"
)

// ErrNoTag is matched (with errors.Is) by the problem Validate reports for a model that has
// no field with an idgen struct tag, more than one, or one on a field that is not an int64.
var ErrNoTag = errors.New("migrations: model has no usable idgen key tag")

// Validate checks, like Hibernate's schema validation at startup, that every model's key
// sequence is ready for seqrepo: for each model (a struct or a pointer to one, such as the
// values models.All returns) it reads the idgen struct tag of its key field with
// idgen.ParseTag and checks the sequence with idgen.CheckOne: it exists, is not CYCLE, and
// its INCREMENT equals the tag's allocationSize.
//
// Validate reports every problem at once: it returns nil, or a *ValidationError with one
// *ModelError per offending model, naming the model, its sequence and, for an increment
// mismatch, both numbers. errors.Is matches each problem's sentinel (idgen.ErrIncrementMismatch,
// idgen.ErrSequenceNotFound, idgen.ErrCycle, idgen.ErrExhausted, idgen.ErrInvalidConfig for a
// malformed tag, ErrNoTag), and errors.As finds the idgen error types. If ctx ends, Validate
// returns ctx.Err() alone.
//
// Validate only reads the catalog. It is safe for concurrent use if db is.
func Validate(ctx context.Context, db idgen.Querier, models ...any) error {
	var problems []*ModelError
	for _, m := range models {
		key, err := findKey(m)
		if err == nil {
			err = idgen.CheckOne(ctx, db, key.cfg)
			if err != nil && ctx.Err() != nil {
				return ctx.Err()
			}
		}
		if err != nil {
			problems = append(problems, &ModelError{Model: key.model, Field: key.field, Sequence: key.cfg.Sequence, Err: err})
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return &ValidationError{Problems: problems}
}

// modelKey is a model's tagged key field and its parsed tag, as far as they were found.
type modelKey struct {
	model string // Go type name
	field string // "" until found
	cfg   idgen.Config
}

// findKey finds m's idgen-tagged key field and parses its tag.
func findKey(m any) (modelKey, error) {
	t := reflect.TypeOf(m)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	key := modelKey{model: "<nil>"}
	if t != nil {
		key.model = t.String()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return key, fmt.Errorf("%w: %s is not a struct", ErrNoTag, key.model)
	}
	var fields []reflect.StructField
	collectTagged(t, nil, &fields)
	switch len(fields) {
	case 0:
		return key, fmt.Errorf("%w: no field has an %s tag", ErrNoTag, idgen.TagKey)
	case 1:
	default:
		names := make([]string, len(fields))
		for i, f := range fields {
			names[i] = f.Name
		}
		return key, fmt.Errorf("%w: %d fields have an %s tag (%s); want one", ErrNoTag, len(fields), idgen.TagKey, strings.Join(names, ", "))
	}
	f := fields[0]
	key.field = f.Name
	if f.Type.Kind() != reflect.Int64 {
		return key, fmt.Errorf("%w: field %s is %s, want int64", ErrNoTag, f.Name, f.Type)
	}
	cfg, err := idgen.ParseTag(f.Tag.Get(idgen.TagKey))
	if err != nil {
		return key, err
	}
	key.cfg = cfg
	return key, nil
}

// collectTagged appends the fields of t, and of the structs it embeds, that have an idgen
// tag; the name of a promoted field is its path, as in Embedded.ID.
func collectTagged(t reflect.Type, path []string, out *[]reflect.StructField) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if _, ok := f.Tag.Lookup(idgen.TagKey); ok {
			f.Name = strings.Join(append(path[:len(path):len(path)], f.Name), ".")
			*out = append(*out, f)
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous && ft.Kind() == reflect.Struct {
			collectTagged(ft, append(path[:len(path):len(path)], f.Name), out)
		}
	}
}

// ValidationError is every problem Validate found, one per model, in the order the models
// were given. errors.Is and errors.As see each problem. Like ModelError it is a plain value:
// safe to read from many goroutines, not to modify while others read it.
type ValidationError struct {
	Problems []*ModelError
}

// Error lists every problem, one per line.
func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "migrations: models not ready for seqrepo (%d problems):", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  - ")
		b.WriteString(p.Error())
	}
	return b.String()
}

// Unwrap returns the problems, for errors.Is and errors.As.
func (e *ValidationError) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

// ModelError is the problem with one model's key.
type ModelError struct {
	Model    string // the model's Go type, as "models.Commit"
	Field    string // the tagged key field, or "" when none was found
	Sequence string // the tag's sequence, or "" when the tag was not read
	Err      error  // an idgen error, or one matching ErrNoTag
}

// Error names the model, its key field and sequence, then the problem, as in
// "models.Commit.ID (sequence commits_id_seq): idgen: sequence commits_id_seq has INCREMENT 1
// but AllocationSize is 50; …".
func (e *ModelError) Error() string {
	var b strings.Builder
	b.WriteString(e.Model)
	if e.Field != "" {
		b.WriteString(".")
		b.WriteString(e.Field)
	}
	if e.Sequence != "" {
		fmt.Fprintf(&b, " (sequence %s)", e.Sequence)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns Err.
func (e *ModelError) Unwrap() error { return e.Err }

var _ interface{ Unwrap() []error } = (*ValidationError)(nil)
