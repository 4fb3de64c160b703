package idgen

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrNoColumnSequence is matched (with errors.Is) by the error ColumnSequence and
	// CheckKey return when a Config names no sequence and the key column has no sequence
	// of its own: it is neither a serial nor an identity column. Name a sequence in the
	// tag, or make the column serial or identity.
	ErrNoColumnSequence = errors.New("idgen: key column has no sequence of its own")

	// ErrSequenceBehind is matched by the error CheckKey returns when the next block the
	// sequence would hand out is not above the table's largest key: the table holds keys
	// that were inserted explicitly, or the sequence was moved back, and writers would
	// soon collide with existing rows. migrations.NewAdoption (or repo.AutoMigrate)
	// moves the sequence past the table's keys.
	ErrSequenceBehind = errors.New("idgen: the sequence's next block is not above the table's largest key")

	// ErrNoKeyTag is matched by the problem a model validator (migrations.Validate,
	// repo's Plugin.Validate, repo.New) reports for a model that seqrepo cannot key: no
	// field has an idgen tag, more than one has, or the tagged field is not the model's
	// only primary key or not an integer (int, int8 … int64, uint … uint64, or a type
	// defined on one of those).
	ErrNoKeyTag = errors.New("idgen: model has no usable idgen key")
)

// Key is a table's key column and the Config of the sequence its keys come from, for
// CheckKey. It knows no ORM: repo and migrations fill it from a model.
type Key struct {
	// Table is the table, optionally schema-qualified as "schema.table". Each part is
	// an exact name (case kept, no quotes), as GORM's schema.Table holds it; a part is
	// quoted as an identifier whenever it is sent.
	Table string
	// Column is the key column's exact name.
	Column string
	// Config is the sequence configuration. An empty Sequence means the column's own
	// sequence (ColumnSequence).
	Config Config
}

// ColumnSequence returns the sequence of table's column, the one a serial column's
// DEFAULT or an identity column draws from, as PostgreSQL's pg_get_serial_sequence
// finds it: schema-qualified and quoted where needed ("public.users_id_seq"), ready
// for Config.Sequence. table and column are exact names as in Key; they are quoted,
// never spliced. It returns an error matching ErrNoColumnSequence when the column has
// no sequence of its own, and PostgreSQL's error when the table or the column does not
// exist. It is safe for concurrent use if q is.
func ColumnSequence(ctx context.Context, q DB, table, column string) (string, error) {
	qt, err := quoteTable(table)
	if err != nil {
		return "", err
	}
	if column == "" || strings.ContainsRune(column, 0) {
		return "", &ConfigError{Problems: []string{fmt.Sprintf("key column %q of table %s is not a valid name", column, qt)}}
	}
	rows, err := query(ctx, q, `SELECT pg_get_serial_sequence($1, $2)`, qt, column)
	if err != nil {
		return "", fmt.Errorf("idgen: find the sequence of column %s of table %s: %w", quoteIdent(column), qt, err)
	}
	defer rows.Close()
	var seq sql.NullString
	if rows.Next() {
		if err := rows.Scan(&seq); err != nil {
			return "", fmt.Errorf("idgen: find the sequence of column %s of table %s: %w", quoteIdent(column), qt, err)
		}
	}
	if err := rows.Close(); err != nil {
		return "", fmt.Errorf("idgen: find the sequence of column %s of table %s: %w", quoteIdent(column), qt, err)
	}
	if !seq.Valid || seq.String == "" {
		return "", fmt.Errorf("%w: column %s of table %s is neither serial nor identity; name a sequence in the tag (idgen:\"sequence:NAME;allocationSize:N\") or make the column serial or identity",
			ErrNoColumnSequence, quoteIdent(column), qt)
	}
	return seq.String, nil
}

// CheckKey checks one key column the way New checks a sequence, and more: when
// k.Config names no sequence it resolves the column's own (ColumnSequence); then the
// sequence must exist, be NO CYCLE, have INCREMENT equal to AllocationSize and be able
// to reserve another block (as CheckOne), and the block its next nextval reserves must
// lie above the largest key already in the table (else ErrSequenceBehind): a table
// whose keys were inserted explicitly passes the INCREMENT check and still collides.
//
// It returns k.Config with Sequence resolved, also alongside most errors (it is
// unresolved only when resolving failed). It only reads. It is safe for concurrent use
// if q is.
func CheckKey(ctx context.Context, q DB, k Key) (Config, error) {
	cfg := k.Config
	if err := cfg.check(false); err != nil {
		return cfg, err
	}
	if cfg.Sequence == "" {
		seq, err := ColumnSequence(ctx, q, k.Table, k.Column)
		if err != nil {
			return cfg, err
		}
		cfg.Sequence = seq
	}
	if err := CheckOne(ctx, q, cfg); err != nil {
		return cfg, err
	}
	return cfg, checkAhead(ctx, q, k.Table, k.Column, cfg)
}

// seqNameSQL returns the sequence's schema-qualified name, each part quoted by
// PostgreSQL (format's %I), to be spliced into checkAhead's query.
const seqNameSQL = `SELECT format('%I.%I', n.nspname, c.relname), s.seqstart
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace JOIN pg_sequence AS s ON s.seqrelid = c.oid
WHERE c.oid = $1::text::regclass`

// checkAhead reports ErrSequenceBehind when the lowest key of the block the next
// nextval reserves is not above max(column).
func checkAhead(ctx context.Context, q DB, table, column string, cfg Config) error {
	qt, err := quoteTable(table)
	if err != nil {
		return err
	}
	var seqName string
	var start int64
	if err := scanRow(ctx, q, seqNameSQL, []any{cfg.Sequence}, &seqName, &start); err != nil {
		return classify(cfg.Sequence, err)
	}
	// last_value and is_called come from the sequence itself: pg_sequence_last_value is
	// NULL before the first nextval, also after setval(seq, v, false).
	query := fmt.Sprintf(`SELECT (SELECT max(%s) FROM %s), s.last_value, s.is_called FROM %s AS s`,
		quoteIdent(column), qt, seqName)
	var (
		maxKey sql.NullInt64
		last   int64
		called bool
	)
	if err := scanRow(ctx, q, query, nil, &maxKey, &last, &called); err != nil {
		return fmt.Errorf("idgen: read the largest key of %s.%s and sequence %s: %w", qt, quoteIdent(column), cfg.Sequence, err)
	}
	if !maxKey.Valid {
		return nil // an empty table
	}
	size := int64(cfg.AllocationSize) // equal to the INCREMENT: CheckOne checked it
	next := last                      // the value the next nextval returns
	if called {
		next = last + size // no overflow: CheckOne found room for another block
	}
	low := next // PooledLo: next … next+size-1
	if cfg.Optimizer == Pooled && (called || next != start) {
		low = next - size + 1 // Pooled: next-size+1 … next; START is a block of its own
	}
	if maxKey.Int64 >= low {
		return fmt.Errorf("%w: the largest key in %s.%s is %d, but sequence %s's next block starts at %d; move the sequence past the table's keys with migrations.NewAdoption (or repo.AutoMigrate)",
			ErrSequenceBehind, qt, quoteIdent(column), maxKey.Int64, cfg.Sequence, low)
	}
	return nil
}

// scanRow scans the one row query returns into dest; sql.ErrNoRows when there is none.
func scanRow(ctx context.Context, q DB, stmt string, args []any, dest ...any) error {
	rows, err := query(ctx, q, stmt, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return sql.ErrNoRows
	}
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	return rows.Close()
}

// quoteTable quotes "schema.table" (or "table") part by part, each part exact.
func quoteTable(table string) (string, error) {
	parts := strings.Split(table, ".")
	if len(parts) > 2 || table == "" || strings.ContainsRune(table, 0) {
		return "", &ConfigError{Problems: []string{fmt.Sprintf("table %q is not a valid name (want table or schema.table)", table)}}
	}
	for i, p := range parts {
		if p == "" {
			return "", &ConfigError{Problems: []string{fmt.Sprintf("table %q is not a valid name (want table or schema.table)", table)}}
		}
		parts[i] = quoteIdent(p)
	}
	return strings.Join(parts, "."), nil
}

// quoteIdent quotes name as an SQL identifier, exactly as given.
func quoteIdent(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

// KeyError is the problem a validator found with one model's key: repo's
// Plugin.Validate and migrations.Validate both report one per offending model, inside
// a *CheckError. Model and Field are the caller's names (a Go type such as
// "models.Commit", and its key field); Table, Column and Sequence are what was found,
// empty when not known. errors.Is and errors.As see Err: one of this package's sentinels
// and error types (ErrIncrementMismatch, ErrSequenceNotFound, ErrSequenceBehind,
// ErrNoColumnSequence, ErrNoKeyTag, ErrInvalidConfig, …) or a database error. Hint, when
// set, is the change that fixes it, such as the migrations.NewAdoption call.
//
// Like any error value it is not changed once returned, so it may be read from many
// goroutines.
type KeyError struct {
	Model    string
	Field    string
	Table    string
	Column   string
	Sequence string
	Hint     string
	Err      error
}

// Error names the model and what is known of its key, then the problem and the fix, as
// in "models.Commit.ID (table commits, column id, sequence commits_id_seq): …; fix: …".
// It has no "idgen:" prefix: validators return it inside a *CheckError, which has one.
func (e *KeyError) Error() string {
	var b strings.Builder
	b.WriteString(e.Model)
	if e.Field != "" {
		b.WriteString(".")
		b.WriteString(e.Field)
	}
	var about []string
	if e.Table != "" {
		about = append(about, "table "+e.Table)
	}
	if e.Column != "" {
		about = append(about, "column "+e.Column)
	}
	if e.Sequence != "" {
		about = append(about, "sequence "+e.Sequence)
	}
	if len(about) > 0 {
		b.WriteString(" (" + strings.Join(about, ", ") + ")")
	}
	b.WriteString(": ")
	b.WriteString(body(e.Err)) // the *CheckError around it says "idgen:"
	if e.Hint != "" {
		b.WriteString("; fix: ")
		b.WriteString(e.Hint)
	}
	return b.String()
}

// Unwrap returns Err.
func (e *KeyError) Unwrap() error { return e.Err }
