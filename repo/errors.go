package repo

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
)

// ErrNotFound is returned (wrapped, with the model and key) by Get, Update and Delete
// when no row has the key. It wraps gorm.ErrRecordNotFound, so errors.Is matches
// either, the way pgx's ErrNoRows matches sql.ErrNoRows.
var ErrNotFound error = notFoundError{}

type notFoundError struct{}

// Error returns "record not found". It has no "repo:" prefix: Get, Update and Delete
// return it wrapped, as "repo: Order 42: record not found".
func (notFoundError) Error() string { return "record not found" }

// Unwrap returns gorm.ErrRecordNotFound.
func (notFoundError) Unwrap() error { return gorm.ErrRecordNotFound }

// ErrNoPlugin is returned by New when the *gorm.DB has no seqrepo Plugin registered:
// call db.Use(repo.NewPlugin()) first.
// Like ErrNotFound it has no "repo:" prefix of its own: New wraps it ("repo: New[Order]: …").
var ErrNoPlugin = errors.New("seqrepo plugin not registered on this *gorm.DB; call db.Use(repo.NewPlugin()) first")

// DuplicateKeyError reports a unique-constraint violation (SQLSTATE 23505) from any write
// method. errors.As finds it; Unwrap returns the driver's *pgconn.PgError, and errors.Is
// also matches gorm.ErrDuplicatedKey. Like any error value it is not changed after it is
// returned, so it may be shared between goroutines.
//
// With gorm.Config.TranslateError set, GORM replaces the driver's error of its own
// statements (Create, CreateAll, Save, Update) by gorm.ErrDuplicatedKey before seqrepo
// sees it, and the constraint name is lost: those methods then return that error, and
// errors.Is(err, gorm.ErrDuplicatedKey) holds either way.
type DuplicateKeyError struct {
	Constraint string // the violated constraint or unique index, e.g. "authors_email_key"
	Table      string
	Detail     string // PostgreSQL's detail: "Key (email)=(a@example.com) already exists."
	Err        *pgconn.PgError
}

// Error names the table and constraint, and adds PostgreSQL's detail.
func (e *DuplicateKeyError) Error() string {
	msg := fmt.Sprintf("repo: duplicate key in %s violates unique constraint %q", e.Table, e.Constraint)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Unwrap returns the *pgconn.PgError.
func (e *DuplicateKeyError) Unwrap() error { return e.Err }

// Is reports whether target is gorm.ErrDuplicatedKey.
func (e *DuplicateKeyError) Is(target error) bool { return target == gorm.ErrDuplicatedKey }

// translate turns a unique violation into a *DuplicateKeyError and leaves every other
// error, idgen's included, as it is.
func translate(err error) error {
	if err == nil {
		return nil
	}
	var dup *DuplicateKeyError
	if errors.As(err, &dup) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return &DuplicateKeyError{Constraint: pgErr.ConstraintName, Table: pgErr.TableName, Detail: pgErr.Detail, Err: pgErr}
	}
	return err
}

// wrapf returns err with context: "repo: " + the formatted text + ": " + err's text,
// whose own "repo: " prefix, if any, is dropped so that the message says "repo:" once.
// errors.Is and errors.As see err.
func wrapf(err error, format string, args ...any) error {
	return &contextError{msg: fmt.Sprintf("repo: "+format, args...), err: err}
}

type contextError struct {
	msg string
	err error
}

func (e *contextError) Error() string {
	return e.msg + ": " + strings.TrimPrefix(e.err.Error(), "repo: ")
}

func (e *contextError) Unwrap() error { return e.err }

// translateUpsert is translate for Upsert, which also names the model and the conflict
// columns when no unique constraint or index covers them (SQLSTATE 42P10): PostgreSQL's
// own message names neither.
func translateUpsert(err error, model string, columns []string) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P10" {
		quoted := make([]string, len(columns))
		for i, c := range columns {
			quoted[i] = strconv.Quote(c)
		}
		cols := strings.Join(quoted, ", ")
		return fmt.Errorf("repo: Upsert %s: OnConflict.Columns (%s) are not the columns of a unique constraint or unique index; create one on exactly these columns (CREATE UNIQUE INDEX ON … (%s)), or name the columns of one that exists: %w",
			model, cols, cols, err)
	}
	return translate(err)
}

// ErrInvalidText is matched (errors.Is) by the *InvalidTextError that CreateAll, Copy,
// CopySeq and Upsert return for a row holding text PostgreSQL cannot store.
var ErrInvalidText = errors.New("repo: invalid text")

// InvalidTextError reports a string field, of a row given to CreateAll, Copy, CopySeq
// or Upsert, that PostgreSQL's text types cannot hold: it contains a NUL byte or is not
// valid UTF-8. The rows are checked before the write sends anything, so nothing was
// written and no key was reserved for them; CopySeq checks each batch before it sends
// it, and rolls back the batches it wrote before. errors.Is matches ErrInvalidText.
//
// The fields checked are those sent as the text they hold: a string (or a type whose
// underlying type is string and that has no driver.Valuer), a *string, a
// sql.NullString. A field with a Valuer or a GORM serializer is not, nor is a bytea
// column; CreateAll checks the rows it is given, not the associations GORM saves with
// them.
type InvalidTextError struct {
	Model  string // the model's Go type name, e.g. "Commit"
	Field  string // the Go field name, e.g. "Message"
	Row    int    // index of the row in the caller's slice; for CopySeq, in the sequence
	Reason string // what is wrong: "contains a NUL byte" or "is not valid UTF-8"
}

// Error names the model, row and field.
func (e *InvalidTextError) Error() string {
	return fmt.Sprintf("repo: %s row %d, field %s: %s", e.Model, e.Row, e.Field, e.Reason)
}

// Is reports whether target is ErrInvalidText.
func (e *InvalidTextError) Is(target error) bool { return target == ErrInvalidText }
