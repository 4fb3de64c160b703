package migrations

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pressly/goose/v3"

	"github.com/seqrepo/seqrepo/idgen"
)

var (
	// ErrNoSequence is matched (with errors.Is) by the error of Adoption.Up and Down, and of
	// Adopt, when the column has no sequence to adopt: it is not an identity or serial column,
	// and its DEFAULT calls nextval on no sequence (or on more than one). Name the sequence
	// with AdoptConfig.Sequence. Nothing was changed.
	ErrNoSequence = errors.New("column has no sequence")

	// ErrNotAdoptable is matched by the error of Adoption.Up and Down, and of Adopt, when the
	// table cannot take client-assigned keys as it is: the key is GENERATED ALWAYS AS
	// IDENTITY, not an integer, or its sequence descends; or the transaction is not READ
	// COMMITTED. The error says which and what to do. Nothing was changed.
	ErrNotAdoptable = errors.New("table cannot adopt seqrepo as it is")

	// ErrNoSequence and ErrNotAdoptable have no "migrations:" prefix of their own: they are
	// matched, never printed, and the error around them carries the prefix once.

	// ErrInvalidAdoption is matched by the error NewAdoption and Adopt return for arguments
	// that are wrong before any database is asked: an empty or over-long name, a NUL byte,
	// an allocation size below 1. Nothing was executed.
	ErrInvalidAdoption = errors.New("migrations: invalid adoption")
)

// SQLSTATEs that the adoption statements raise; TranslateError maps them to the sentinels
// above.
const (
	sqlStateNoSequence    = "SR001"
	sqlStateNotAdoptable  = "SR002"
	adoptionDollarQuoteID = "seqrepo"
)

// Adoption is the change that adopts seqrepo on one existing table: its key sequence's
// INCREMENT becomes the allocation size, and the sequence moves past the largest key already
// in the table, so no block reserved later can contain an existing key. It is the change
// seqrepo's own migration 00002 makes, for any table, ready for a goose migration:
//
//	a, err := migrations.NewAdoption(migrations.AdoptConfig{Table: "orders", Column: "id", AllocationSize: 50})
//	if err != nil { ... }
//	m := a.Migration(20250101) // a goose Go migration: goose.WithGoMigrations(m)
//	up, down := a.SQL()        // or the statements, for a migration of your own
//	file := a.GooseFile()      // or a whole goose SQL migration file
//
// The statements find everything at run time, not when they are generated: which sequence
// the column uses (the identity or serial sequence, else the one its DEFAULT nextval(...)
// calls, else the one named by AdoptConfig.Sequence), which statement suits it (ALTER TABLE …
// ALTER COLUMN … SET INCREMENT BY for an identity column, ALTER SEQUENCE … INCREMENT BY
// otherwise), and the largest key. So they need no database to be generated, work the same
// in a Go migration, a goose SQL file or psql, and stay right if the table changed between
// generating and running them. Each direction is one PL/pgSQL DO statement; names are only
// ever quoted, as identifiers or literals, never spliced.
//
// Up, in one transaction: lock the table against writes (ACCESS EXCLUSIVE for an identity
// column, as its ALTER needs; SHARE ROW EXCLUSIVE otherwise), set the INCREMENT, which also
// locks the sequence against nextval until commit, then, if the next block could hold a key
// already in use, setval(seq, u), u being the highest such key: max(key), or what the
// sequence handed out (last_value once called; at most last_value-1 before, after RESTART or
// setval(seq, v, false)). The next nextval v = u+size then starts a block above every key in
// use under both optimizers (pooled-lo: v..v+size-1; pooled: u+1..v). Down sets INCREMENT 1
// and moves the sequence past both max(key) and the end of the last block reserved
// (last_value+size-1, capped at MAXVALUE), which a writer may still be filling, so keys from
// DEFAULT never collide with either. Up also records the configuration on the sequence, as a
// line "seqrepo: pooled-lo 50" (idgen.Config.Marker; see AdoptConfig.Optimizer) in its COMMENT, so that
// idgen.New refuses writers configured otherwise in any process; Down removes that line.
// Other lines of the comment are kept. Both read last_value and is_called from the sequence
// itself and only ever move it forward: a sequence jumped ahead stays ahead. Both are safe to
// run again and need a READ COMMITTED transaction (the default), to see rows committed while
// they wait for the lock.
//
// An Adoption is immutable and safe for concurrent use.
type Adoption struct {
	table, column  string // quoted for messages
	source         string // for goose: the name its status shows
	size           int
	up, down, file string
}

// AdoptConfig says which table's key to adopt and how. Table, Column and AllocationSize
// are required; the other fields' zero values are the defaults. Every name is an exact
// identifier, never case-folded: "Orders" is the table Orders, not orders. A Table
// "shop.orders" with no Schema is the table orders of schema shop, as idgen reads
// names; with Schema set, a dot is part of the table's name. NewAdoption validates it, reporting every
// problem at once. An AdoptConfig is a plain value, safe to copy and share.
type AdoptConfig struct {
	// Table is the table whose key is adopted.
	Table string
	// Column is its key column.
	Column string
	// AllocationSize is the idgen tag's allocationSize: the INCREMENT Up sets. It must
	// be 1 or more.
	AllocationSize int
	// Schema is the table's schema. Empty (the default) finds the table on the
	// search_path when the statements run.
	Schema string
	// Sequence names the sequence to adopt, for a key whose sequence the statements
	// cannot find themselves (say, one the application calls nextval on explicitly).
	// Empty (the default) finds it at run time: the identity or serial sequence, else the
	// one the column's DEFAULT nextval(...) calls.
	Sequence string
	// SequenceSchema is Sequence's schema; empty finds Sequence on the search_path. It
	// is only valid with Sequence.
	SequenceSchema string
	// Optimizer is the optimizer the sequence's writers use (the idgen tag's
	// optimizer), for the marker Up records on the sequence; the zero value is
	// idgen.PooledLo.
	Optimizer idgen.Optimizer
}

// validate reports every invalid field of c at once, each naming the field, as an error
// matching ErrInvalidAdoption.
func (c AdoptConfig) validate() error {
	var problems []string
	check := func(field, name string) {
		if err := checkIdentifier(field, name); err != nil {
			problems = append(problems, err.Error())
		}
	}
	check("Table", c.Table)
	check("Column", c.Column)
	if c.Schema != "" {
		check("Schema", c.Schema)
	}
	if c.Sequence != "" {
		check("Sequence", c.Sequence)
	}
	if c.SequenceSchema != "" {
		if c.Sequence == "" {
			problems = append(problems, "SequenceSchema is set without Sequence; name the sequence too, or leave both empty to find it at run time")
		} else {
			check("SequenceSchema", c.SequenceSchema)
		}
	}
	if c.AllocationSize < 1 {
		problems = append(problems, fmt.Sprintf("AllocationSize is %d; use the idgen tag's allocationSize, 1 or more", c.AllocationSize))
	}
	if c.Optimizer != idgen.PooledLo && c.Optimizer != idgen.Pooled {
		problems = append(problems, fmt.Sprintf("Optimizer is %d; use idgen.PooledLo or idgen.Pooled", int(c.Optimizer)))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidAdoption, strings.Join(problems, "; "))
	}
	return nil
}

// NewAdoption returns the Adoption that cfg describes. It only validates cfg; it asks no
// database. Its errors match ErrInvalidAdoption.
func NewAdoption(cfg AdoptConfig) (*Adoption, error) {
	if schema, name, ok := strings.Cut(cfg.Table, "."); ok && cfg.Schema == "" {
		cfg.Schema, cfg.Table = schema, name // "schema.table", as idgen reads it
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	a := &Adoption{
		table:  quoteQualified(cfg.Schema, cfg.Table),
		column: quoteIdent(cfg.Column),
		size:   cfg.AllocationSize,
	}
	a.source = "adopt_seqrepo_" + sourceName(cfg.Schema, cfg.Table, cfg.Column) + ".go"
	a.up = adoptionStatement(cfg, true)
	a.down = adoptionStatement(cfg, false)
	a.file = a.gooseFile()
	return a, nil
}

// Adopt runs NewAdoption(cfg).Up in tx: the one-line form for a goose Go migration's up
// function. An invalid cfg is reported (ErrInvalidAdoption) before tx is used. Like any
// use of a *sql.Tx, it must not run concurrently with other statements on the same tx.
func Adopt(ctx context.Context, tx *sql.Tx, cfg AdoptConfig) error {
	a, err := NewAdoption(cfg)
	if err != nil {
		return err
	}
	return a.Up(ctx, tx)
}

// Up adopts seqrepo on the table, in tx. It must be a transaction, so that the locks hold
// until the change is committed; its signature is that of goose.GoFunc's RunTx. On error,
// roll tx back: the statement changes nothing unless it succeeds (a setval that already ran
// is not undone, which only leaves a gap). ctx cancels the statement.
func (a *Adoption) Up(ctx context.Context, tx *sql.Tx) error { return a.run(ctx, tx, a.up, "adopting") }

// Down undoes Up in tx: INCREMENT 1 again, with the sequence moved past every key already
// used or reserved. Like Up it can run inside a goose migration as its down function.
func (a *Adoption) Down(ctx context.Context, tx *sql.Tx) error {
	return a.run(ctx, tx, a.down, "un-adopting")
}

// SQL returns the Up and Down statements, one PL/pgSQL DO statement each, without a
// trailing semicolon.
func (a *Adoption) SQL() (up, down string) { return a.up, a.down }

// GooseFile returns a goose SQL migration file (annotations included) that runs Up and
// Down, for a file such as 00042_adopt_seqrepo_orders.sql.
func (a *Adoption) GooseFile() string { return a.file }

// Migration returns a goose Go migration with the given version that runs Up and Down in
// goose's transaction, for goose.WithGoMigrations. Its Source, which goose's status and
// log show, is "<version>_adopt_seqrepo_<schema>_<table>_<column>.go" (names with
// characters other than letters, digits and _ written as _); no such file exists.
func (a *Adoption) Migration(version int64) *goose.Migration {
	m := goose.NewGoMigration(version, &goose.GoFunc{RunTx: a.Up}, &goose.GoFunc{RunTx: a.Down})
	m.Source = strconv.FormatInt(version, 10) + "_" + a.source
	return m
}

// sourceName joins the non-empty names with _, each with characters other than ASCII
// letters, digits and _ replaced by _, for a migration's Source.
func sourceName(names ...string) string {
	var parts []string
	for _, n := range names {
		if n == "" {
			continue
		}
		parts = append(parts, strings.Map(func(r rune) rune {
			if r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
				return r
			}
			return '_'
		}, n))
	}
	return strings.Join(parts, "_")
}

func (a *Adoption) run(ctx context.Context, tx *sql.Tx, stmt, doing string) error {
	if tx == nil {
		return fmt.Errorf("migrations: %s seqrepo on %s.%s: nil transaction", doing, a.table, a.column)
	}
	if _, err := tx.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("migrations: %s seqrepo on %s.%s: %w", doing, a.table, a.column, TranslateError(err))
	}
	return nil
}

// TranslateError returns err so that errors.Is matches ErrNoSequence or ErrNotAdoptable when
// err comes from an adoption statement that refused the table: its SQLSTATE is SR001 (no
// sequence) or SR002 (cannot adopt as it is). Adoption.Up, Down and Adopt already return
// errors translated; pass it the error of a goose Provider that ran a GooseFile, or of any
// other runner of SQL() or GooseFile(). The text is err's, unchanged, and errors.Is and
// errors.As still see err; any other error, nil included, is returned as it is.
// TranslateError is safe for concurrent use.
func TranslateError(err error) error {
	var sentinel error
	switch sqlState(err) {
	case sqlStateNoSequence:
		sentinel = ErrNoSequence
	case sqlStateNotAdoptable:
		sentinel = ErrNotAdoptable
	default:
		return err
	}
	return &adoptionError{err: err, sentinel: sentinel}
}

// adoptionError is an error raised by an adoption statement, matching its sentinel.
type adoptionError struct {
	err, sentinel error
}

func (e *adoptionError) Error() string        { return e.err.Error() }
func (e *adoptionError) Unwrap() error        { return e.err }
func (e *adoptionError) Is(target error) bool { return target == e.sentinel }

// sqlState returns the SQLSTATE of a driver error that carries one (pgx's *pgconn.PgError
// and lib/pq's *pq.Error both do), or "".
func sqlState(err error) string {
	var s interface{ SQLState() string }
	if errors.As(err, &s) {
		return s.SQLState()
	}
	return ""
}

func (a *Adoption) gooseFile() string {
	var b strings.Builder
	// Names stay out of the comments: the file is read line by line, and a name may hold a
	// newline. In the statements they are escaped literals on one line.
	fmt.Fprintf(&b, "-- Adopt seqrepo on the table named in the statements below: its key sequence gets\n"+
		"-- INCREMENT %d and moves past the largest key. Down restores INCREMENT 1.\n"+
		"-- Generated by github.com/seqrepo/seqrepo/migrations.Adoption.\n\n", a.size)
	b.WriteString("-- +goose Up\n-- +goose StatementBegin\n")
	b.WriteString(a.up)
	b.WriteString(";\n-- +goose StatementEnd\n\n")
	b.WriteString("-- +goose Down\n-- +goose StatementBegin\n")
	b.WriteString(a.down)
	b.WriteString(";\n-- +goose StatementEnd\n")
	return b.String()
}

// adoptionStatement renders the DO statement for one direction. Every name appears once, as
// a string literal in the DECLARE section; the body passes them to format's %I, or as
// regclass values (printed quoted), and to catalog functions as values.
func adoptionStatement(c AdoptConfig, up bool) string {
	named := "NULL"
	if c.Sequence != "" {
		named = quoteLiteral(quoteQualified(c.SequenceSchema, c.Sequence))
	}
	var body strings.Builder
	marker := idgen.Config{AllocationSize: c.AllocationSize, Optimizer: c.Optimizer}.Marker()
	fmt.Fprintf(&body, adoptDeclare, quoteLiteral(quoteQualified(c.Schema, c.Table)), quoteLiteral(c.Column), named, c.AllocationSize, quoteLiteral(marker))
	body.WriteString(adoptResolve)
	if up {
		body.WriteString(adoptUp)
	} else {
		body.WriteString(adoptDown)
	}
	// The body is dollar-quoted; choose a tag that no name inside it can end early.
	tag := "$" + adoptionDollarQuoteID + "$"
	for i := 1; strings.Contains(body.String(), tag); i++ {
		tag = "$" + adoptionDollarQuoteID + strconv.Itoa(i) + "$"
	}
	return "DO " + tag + body.String() + tag
}

const adoptDeclare = `
DECLARE
	tbl    regclass := %s;
	col    name     := %s;
	named  text     := %s;
	size   bigint   := %d;
	marker text     := %s;
	num    smallint;
	typ    regtype;
	ident  "char";
	own    regclass;
	seq    regclass;
	n      bigint;
	incr   bigint;
	start  bigint;
	minv   bigint;
	maxv   bigint;
	last   bigint;
	called boolean;
	max_id bigint;
	used   bigint;
BEGIN
`

// adoptResolve finds the column and its sequence, and checks them, before anything changes.
const adoptResolve = `	IF current_setting('transaction_isolation') <> 'read committed' THEN
		RAISE EXCEPTION USING ERRCODE = 'SR002',
			MESSAGE = format('changing the sequence of %s.%I needs a READ COMMITTED transaction, not %s: a later snapshot could miss rows committed while the statement waited for its lock; run it at READ COMMITTED', tbl, col, current_setting('transaction_isolation'));
	END IF;
	SELECT a.attnum, a.atttypid::regtype, a.attidentity INTO num, typ, ident
	FROM pg_attribute AS a
	WHERE a.attrelid = tbl AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped;
	IF NOT FOUND THEN
		RAISE EXCEPTION USING ERRCODE = 'undefined_column',
			MESSAGE = format('column %I of %s does not exist', col, tbl);
	END IF;
	IF typ NOT IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype) THEN
		RAISE EXCEPTION USING ERRCODE = 'SR002',
			MESSAGE = format('column %I of %s is %s; a key from a sequence is bigint (or integer, smallint)', col, tbl, typ);
	END IF;
	own := pg_get_serial_sequence(tbl::text, col)::regclass;
	IF named IS NOT NULL THEN
		seq := named::regclass;
		IF (SELECT c.relkind FROM pg_class AS c WHERE c.oid = seq) <> 'S' THEN
			RAISE EXCEPTION USING ERRCODE = 'wrong_object_type',
				MESSAGE = format('%s is not a sequence', seq);
		END IF;
	ELSIF own IS NOT NULL THEN
		seq := own; -- identity or serial
	ELSE
		-- A free-standing sequence: the one the column's DEFAULT nextval(...) depends on.
		SELECT count(DISTINCT d.refobjid), min(d.refobjid)::regclass INTO n, seq
		FROM pg_attrdef AS ad
		JOIN pg_depend AS d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
			AND d.refclassid = 'pg_class'::regclass
		JOIN pg_class AS c ON c.oid = d.refobjid AND c.relkind = 'S'
		WHERE ad.adrelid = tbl AND ad.adnum = num;
		IF n > 1 THEN
			RAISE EXCEPTION USING ERRCODE = 'SR001',
				MESSAGE = format('the DEFAULT of column %I of %s uses %s sequences; name the one to adopt (migrations.AdoptConfig.Sequence)', col, tbl, n);
		END IF;
	END IF;
	IF seq IS NULL THEN
		RAISE EXCEPTION USING ERRCODE = 'SR001',
			MESSAGE = format('column %I of %s has no sequence: it is not an identity or serial column, and its DEFAULT does not call nextval; name the sequence (migrations.AdoptConfig.Sequence), or create one', col, tbl);
	END IF;
	SELECT s.seqincrement, s.seqstart, s.seqmin, s.seqmax INTO incr, start, minv, maxv
	FROM pg_sequence AS s WHERE s.seqrelid = seq;
	IF incr < 0 THEN
		RAISE EXCEPTION USING ERRCODE = 'SR002',
			MESSAGE = format('sequence %s of %s.%I descends (INCREMENT %s); blocks need an ascending sequence', seq, tbl, col, incr);
	END IF;
`

// adoptUp locks the table first, in the mode the ALTER needs, so that no lock is upgraded
// (an upgrade can deadlock with a writer); the ALTER then holds the sequence against
// nextval until commit, so max(key) and last_value cannot move before setval.
const adoptUp = `	IF ident = 'a' AND seq = own THEN
		RAISE EXCEPTION USING ERRCODE = 'SR002',
			MESSAGE = format('column %I of %s is GENERATED ALWAYS AS IDENTITY, which rejects client-assigned keys: run ALTER TABLE %s ALTER COLUMN %I SET GENERATED BY DEFAULT first', col, tbl, tbl, col);
	END IF;
	IF ident <> '' AND seq = own THEN
		EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', tbl);
		EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET INCREMENT BY %s', tbl, col, size);
	ELSE
		EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', tbl);
		EXECUTE format('ALTER SEQUENCE %s INCREMENT BY %s', seq, size);
	END IF;
	EXECUTE format('SELECT max(%I) FROM %s', col, tbl) INTO max_id;
	-- From the sequence itself: pg_sequence_last_value is NULL whenever is_called is false.
	EXECUTE format('SELECT last_value, is_called FROM %s', seq) INTO last, called;
	-- The highest key that may be in use: max(key), and what the sequence handed out, which is
	-- last_value once called and at most last_value - 1 before (RESTART, setval(seq, v, false)).
	used := greatest(max_id, CASE WHEN called THEN last WHEN last > minv THEN last - 1 END);
	-- The next nextval v is last + size once called, last before. The lowest key its block
	-- can hold: v under pooled-lo (v..v+size-1) and under pooled for START (a block of its
	-- own), v - size + 1 otherwise under pooled. (The CASE is in parentheses: PL/pgSQL ends
	-- an IF condition at the first THEN.)
	IF used >= (CASE WHEN called THEN last::numeric + 1 WHEN last = start THEN last
			ELSE last::numeric - size + 1 END) THEN
		-- The next nextval is then used + size, never less than before: pooled-lo's block
		-- starts there, pooled's at used + 1. MINVALUE bounds setval.
		PERFORM setval(seq, greatest(used, minv));
	END IF;
	-- Record the configuration on the sequence (idgen.Config.Marker), replacing any
	-- marker there and keeping the other lines of its comment; idgen.New refuses a
	-- configuration that differs.
	EXECUTE format('COMMENT ON SEQUENCE %s IS %L', seq, concat_ws(E'\n', marker,
		(SELECT string_agg(l, E'\n') FROM regexp_split_to_table(obj_description(seq, 'pg_class'), E'\n') AS l
		 WHERE btrim(l) NOT LIKE 'seqrepo:%')));
END
`

// adoptDown mirrors adoptUp with INCREMENT 1. Under INCREMENT size the last nextval v
// reserved v..v+size-1 (pooled-lo), which a writer may still be filling.
const adoptDown = `	IF ident <> '' AND seq = own THEN
		EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', tbl);
		EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET INCREMENT BY 1', tbl, col);
	ELSE
		EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', tbl);
		EXECUTE format('ALTER SEQUENCE %s INCREMENT BY 1', seq);
	END IF;
	EXECUTE format('SELECT max(%I) FROM %s', col, tbl) INTO max_id;
	EXECUTE format('SELECT last_value, is_called FROM %s', seq) INTO last, called;
	-- The highest key that may be in use or reserved: max(key); once called, the end of the
	-- block of the last nextval, capped at MAXVALUE; before, at most last_value - 1.
	used := greatest(max_id, CASE WHEN called THEN least(last::numeric + size - 1, maxv)::bigint
		WHEN last > minv THEN last - 1 END);
	-- INCREMENT 1 hands out last + 1 next once called, last before: move only past a key in
	-- use, never backwards.
	IF used >= (CASE WHEN called THEN last::numeric + 1 ELSE last END) THEN
		PERFORM setval(seq, used);
	END IF;
	-- Remove the marker Up wrote; keep the other lines of the comment.
	EXECUTE format('COMMENT ON SEQUENCE %s IS %L', seq,
		(SELECT string_agg(l, E'\n') FROM regexp_split_to_table(obj_description(seq, 'pg_class'), E'\n') AS l
		 WHERE btrim(l) NOT LIKE 'seqrepo:%'));
END
`
