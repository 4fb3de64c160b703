package repo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// OnConflict says what Upsert does with an input row whose unique key is already in the
// table. Column names may be given as database columns ("email") or Go field names
// ("Email"). It is a plain value; Upsert does not keep or change it.
type OnConflict struct {
	// Columns are the columns of the unique constraint or index that identifies a row,
	// e.g. {"email"} or {"repository_id", "sha"}. Required; the primary key may not be
	// one of them (Upsert assigns keys; it identifies rows by their natural key).
	Columns []string
	// Update lists the columns a conflicting row takes from the input row (ON CONFLICT
	// DO UPDATE SET col = EXCLUDED.col). With neither Update nor UpdateAll the
	// conflicting row is left as it is (DO NOTHING). A column named here that the INSERT
	// leaves to its database default (see Copy) takes that default, as EXCLUDED does:
	// an updated_at with DEFAULT now(), say, is refreshed.
	Update []string
	// UpdateAll updates every column the call writes except the key, Columns and
	// autoCreateTime columns. A column whose default the database supplies and that is
	// zero in every input row is not written, so not updated either: the stored value
	// stays, as with GORM's own UpdateAll.
	UpdateAll bool
}

// UpsertResult tells, for each input row of Upsert, whether it was inserted. It is a
// plain value, owned by the caller.
type UpsertResult struct {
	// Inserted[i] is true when rows[i] added its unique key to the table, false when
	// the key was already there or an earlier input row has the same key.
	Inserted []bool
}

// InsertedCount returns the number of rows inserted.
func (r UpsertResult) InsertedCount() int {
	n := 0
	for _, in := range r.Inserted {
		if in {
			n++
		}
	}
	return n
}

// Upsert inserts rows whose unique key (on.Columns) is not in the table yet and, per on,
// updates or leaves alone the rows whose key is. When it returns, every rows[i] holds
// its key in the table: a new key for an inserted row, the existing key for a row that
// conflicted; keys the rows held before are not used. Input rows with the same unique
// key behave as if upserted one after another: they all get the same key, the first of
// them is the one Inserted (if the key was new), and the row holds the first one's
// values for DO NOTHING, the last one's for DO UPDATE — no "ON CONFLICT DO UPDATE
// command cannot affect row a second time". Duplicates are found by PostgreSQL's
// equality, the one the unique index uses.
//
// Each batch of WithBatchSize rows takes one key allocation and two statements:
// INSERT … SELECT DISTINCT ON (key) … FROM unnest($1::bigint[], …) ON CONFLICT …
// RETURNING, then a SELECT of the keys of the rows not inserted — in READ COMMITTED a
// row that a concurrent transaction committed while the INSERT waited for it is not
// visible to the INSERT's snapshot, but it is to the next statement's. Rows are written
// in the order of their unique keys (more than one batch takes one more statement to
// sort them), so concurrent Upserts of overlapping rows wait for each other instead of
// deadlocking. Like Copy, Upsert writes columns only: no hooks, no associations.
//
// It is all or nothing: in a transaction of its own, or in a savepoint of the caller's
// (a Repository from WithTx, with a transaction from InTx or db.Transaction alike); on
// error the rows get their old keys back. ctx cancels it.
func (r *Repository[T]) Upsert(ctx context.Context, rows []T, on OnConflict) (UpsertResult, error) {
	plan, err := r.upsertPlan(on)
	if err != nil {
		return UpsertResult{}, err
	}
	if len(rows) == 0 {
		return UpsertResult{}, nil
	}
	fields, err := r.prepare(ctx, rows, plan.force, 0)
	if err != nil {
		return UpsertResult{}, err
	}
	plan = plan.writing(fields)
	before := make([]int64, len(rows))
	for i := range rows {
		before[i] = r.Key(&rows[i])
	}
	inserted := make([]bool, len(rows))
	err = r.inTx(ctx, func(tx *gorm.DB, conn *sql.Conn) error {
		pool := tx.Statement.ConnPool
		types, err := r.columnTypes(ctx, pool)
		if err != nil {
			return err
		}
		order, err := r.upsertOrder(ctx, pool, types, plan, rows)
		if err != nil {
			return err
		}
		for start := 0; start < len(order); start += r.batch {
			batch := order[start:min(start+r.batch, len(order))]
			if err := r.upsertBatch(ctx, tx, conn, types, plan, fields, rows, batch, inserted); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for i := range rows {
			_ = r.setKey(&rows[i], before[i])
		}
		return UpsertResult{}, translateUpsert(err, r.m.name(), on.Columns)
	}
	// The row that wrote a new key may be a later duplicate (DO UPDATE keeps the last);
	// report the first row with that key as the inserted one.
	return UpsertResult{Inserted: firstInserted(rows, inserted, r.Key)}, nil
}

// firstInserted moves each inserted mark to the first row with the same key.
func firstInserted[T any](rows []T, inserted []bool, key func(*T) int64) []bool {
	first := make(map[int64]int, len(rows))
	for i := range rows {
		if _, ok := first[key(&rows[i])]; !ok {
			first[key(&rows[i])] = i
		}
	}
	out := make([]bool, len(rows))
	for i, in := range inserted {
		if in {
			out[first[key(&rows[i])]] = true
		}
	}
	return out
}

// upsertOrder returns the indexes of rows in the order Upsert writes them: the order of
// their unique keys in the database (input order among equal keys). Each INSERT takes
// its rows' locks in that order, so when all batches follow one order, concurrent
// Upserts of the same rows wait for each other instead of deadlocking. One batch needs
// no round trip: its INSERT sorts its own rows.
func (r *Repository[T]) upsertOrder(ctx context.Context, pool gorm.ConnPool, types map[string]column, plan *upsertPlan, rows []T) ([]int, error) {
	order := make([]int, 0, len(rows))
	if len(rows) <= r.batch {
		for i := range rows {
			order = append(order, i)
		}
		return order, nil
	}
	src, cols, err := unnestSelect(types, plan.conflict, "u")
	if err != nil {
		return nil, err
	}
	args, err := columnArrays(ctx, types, rows, nil, plan.conflict)
	if err != nil {
		return nil, err
	}
	query := fmt.Sprintf("SELECT u.n FROM %s ORDER BY %s, u.n", src, strings.Join(cols, ", "))
	err = r.query(ctx, pool, func(res *sql.Rows) error {
		var n int64
		if err := res.Scan(&n); err != nil {
			return err
		}
		order = append(order, int(n-1))
		return nil
	}, query, args...)
	if err == nil && len(order) != len(rows) {
		err = fmt.Errorf("repo: Upsert %s: sorted %d of %d rows", r.m.name(), len(order), len(rows))
	}
	return order, err
}

// upsertPlan is an OnConflict resolved against the model.
type upsertPlan struct {
	conflict  []*schema.Field
	update    []*schema.Field
	updateAll bool
	force     map[*schema.Field]bool // columns every batch writes: the conflict columns
}

// writing returns the plan for an INSERT of fields: with UpdateAll, only the columns in
// fields are updated. A column left out of the INSERT (a database default, zero in every
// row) would otherwise be set to EXCLUDED's value, its DEFAULT, over the stored one.
func (p *upsertPlan) writing(fields []*schema.Field) *upsertPlan {
	if !p.updateAll {
		return p
	}
	c := *p
	c.update = nil
	for _, f := range p.update {
		if indexOf(fields, f) >= 0 {
			c.update = append(c.update, f)
		}
	}
	return &c
}

func (r *Repository[T]) upsertPlan(on OnConflict) (*upsertPlan, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("repo: Upsert %s: "+format, append([]any{r.m.name()}, args...)...)
	}
	if len(on.Columns) == 0 {
		return nil, bad("OnConflict.Columns is empty; name the columns of a unique constraint")
	}
	if len(on.Update) > 0 && on.UpdateAll {
		return nil, bad("OnConflict has both Update and UpdateAll")
	}
	lookup := func(name string) (*schema.Field, error) {
		f := r.m.create.LookUpField(name)
		if f == nil || f.DBName == "" {
			return nil, bad("no column %q", name)
		}
		for _, c := range r.m.columns {
			if c == f {
				if f == r.m.create.PrioritizedPrimaryField {
					return nil, bad("column %q is the primary key, which Upsert assigns", name)
				}
				return f, nil
			}
		}
		return nil, bad("column %q is not written on create", name)
	}
	p := &upsertPlan{force: map[*schema.Field]bool{}}
	for _, name := range on.Columns {
		f, err := lookup(name)
		if err != nil {
			return nil, err
		}
		p.conflict = append(p.conflict, f)
		p.force[f] = true
	}
	for _, name := range on.Update {
		f, err := lookup(name)
		if err != nil {
			return nil, err
		}
		if p.force[f] {
			return nil, bad("column %q is in both Columns and Update", name)
		}
		p.update = append(p.update, f)
	}
	if on.UpdateAll {
		p.updateAll = true
		for _, f := range r.m.columns {
			if f != r.m.create.PrioritizedPrimaryField && !p.force[f] && f.AutoCreateTime == 0 {
				p.update = append(p.update, f)
			}
		}
	}
	return p, nil
}

// maxUpsertRounds bounds how often Upsert retries rows that were neither inserted nor
// found: each retry is caused by a concurrent transaction deleting, or changing the key
// of, the row that the INSERT conflicted with.
const maxUpsertRounds = 5

// upsertBatch upserts rows[idx] in tx, in the order of idx, and marks the inserted.
func (r *Repository[T]) upsertBatch(ctx context.Context, tx *gorm.DB, conn *sql.Conn, types map[string]column, plan *upsertPlan, fields []*schema.Field, rows []T, idx []int, inserted []bool) error {
	pool := tx.Statement.ConnPool
	pending := idx // indexes into rows still without their final key
	for round := 0; len(pending) > 0; round++ {
		if round == maxUpsertRounds {
			return fmt.Errorf("repo: Upsert %s: %d rows neither inserted nor found after %d rounds; rows with these keys are being deleted or changed concurrently", r.m.name(), len(pending), round)
		}
		keys, err := r.plugin.next(ctx, r.m, pool, len(pending))
		if err != nil {
			return err
		}
		fresh := make(map[int64]int, len(pending)) // new key → index into rows
		for k, i := range pending {
			if err := r.setKey(&rows[i], keys[k]); err != nil {
				return err
			}
			fresh[keys[k]] = i
		}
		var got []int64
		if conn != nil && r.upsertVia == viaTempTable {
			got, err = r.upsertInsertTemp(ctx, tx, conn, plan, fields, rows, pending)
		} else {
			got, err = r.upsertInsert(ctx, pool, types, plan, fields, rows, pending)
		}
		if err != nil {
			return err
		}
		for _, k := range got {
			if i, ok := fresh[k]; ok {
				inserted[i] = true
				delete(fresh, k)
			}
		}
		var rest []int
		for _, i := range pending {
			if _, ok := fresh[r.Key(&rows[i])]; ok {
				rest = append(rest, i)
			}
		}
		if pending, err = r.lookupKeys(ctx, pool, types, plan, rows, rest); err != nil {
			return err
		}
	}
	return nil
}

// upsertInsert runs the INSERT … ON CONFLICT for rows[idx], taking them from unnest
// arrays, and returns the keys it returned.
func (r *Repository[T]) upsertInsert(ctx context.Context, pool gorm.ConnPool, types map[string]column, plan *upsertPlan, fields []*schema.Field, rows []T, idx []int) ([]int64, error) {
	src, cols, err := unnestSelect(types, fields, "u")
	if err != nil {
		return nil, err
	}
	args, err := columnArrays(ctx, types, rows, idx, fields)
	if err != nil {
		return nil, err
	}
	query := r.upsertSQL(plan, fields, src, func(f *schema.Field) string { return cols[indexOf(fields, f)] }, "u.n")
	var keys []int64
	err = r.query(ctx, pool, func(rows *sql.Rows) error {
		var k int64
		if err := rows.Scan(&k); err != nil {
			return err
		}
		keys = append(keys, k)
		return nil
	}, query, args...)
	return keys, err
}

// upsertSQL builds
//
//	INSERT INTO t (cols) SELECT cols FROM (SELECT DISTINCT ON (conflict…) … FROM src ORDER BY conflict…, ord) s
//	ON CONFLICT (conflict…) DO NOTHING | DO UPDATE SET c = EXCLUDED.c, … RETURNING key
//
// col maps a field to its expression in src and ord is the input order. DISTINCT ON
// keeps one row per unique key, by the database's equality: the first in input order
// for DO NOTHING, the last for DO UPDATE. A row with a NULL in its unique key conflicts
// with nothing (unique indexes treat NULLs as distinct), so such rows are kept apart.
func (r *Repository[T]) upsertSQL(plan *upsertPlan, fields []*schema.Field, src string, col func(*schema.Field) string, ord string) string {
	var distinct, nulls []string
	for _, f := range plan.conflict {
		distinct = append(distinct, col(f))
		nulls = append(nulls, col(f)+" IS NULL")
	}
	distinct = append(distinct, fmt.Sprintf("CASE WHEN %s THEN %s END", strings.Join(nulls, " OR "), ord))
	order := ord
	if len(plan.update) > 0 {
		order += " DESC"
	}
	sel := make([]string, len(fields))
	for j, f := range fields {
		sel[j] = col(f) + " AS " + quote(f.DBName)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "INSERT INTO %s (%s) SELECT %s FROM (SELECT DISTINCT ON (%s) %s FROM %s ORDER BY %s, %s) AS s",
		r.m.tableIdent().Sanitize(), quoteNames(fields), quoteNames(fields),
		strings.Join(distinct, ", "), strings.Join(sel, ", "), src, strings.Join(distinct, ", "), order)
	fmt.Fprintf(&b, " ON CONFLICT (%s)", quoteNames(plan.conflict))
	if len(plan.update) == 0 {
		b.WriteString(" DO NOTHING")
	} else {
		set := make([]string, len(plan.update))
		for j, f := range plan.update {
			set[j] = quote(f.DBName) + " = EXCLUDED." + quote(f.DBName)
		}
		b.WriteString(" DO UPDATE SET " + strings.Join(set, ", "))
	}
	b.WriteString(" RETURNING " + quote(r.m.key.DBName))
	return b.String()
}

// lookupKeys sets the key of every rows[idx] to the key of the table row with the same
// unique key, and returns the indexes of rows that have none.
func (r *Repository[T]) lookupKeys(ctx context.Context, pool gorm.ConnPool, types map[string]column, plan *upsertPlan, rows []T, idx []int) ([]int, error) {
	if len(idx) == 0 {
		return nil, nil
	}
	src, cols, err := unnestSelect(types, plan.conflict, "u")
	if err != nil {
		return nil, err
	}
	args, err := columnArrays(ctx, types, rows, idx, plan.conflict)
	if err != nil {
		return nil, err
	}
	on := make([]string, len(plan.conflict))
	for j, f := range plan.conflict {
		on[j] = fmt.Sprintf("t.%s = %s", quote(f.DBName), cols[j])
	}
	query := fmt.Sprintf("SELECT u.n, t.%s FROM %s JOIN %s AS t ON %s",
		quote(r.m.key.DBName), src, r.m.tableIdent().Sanitize(), strings.Join(on, " AND "))
	found := make([]bool, len(idx))
	err = r.query(ctx, pool, func(res *sql.Rows) error {
		var n, key int64
		if err := res.Scan(&n, &key); err != nil {
			return err
		}
		if n < 1 || n > int64(len(idx)) || found[n-1] {
			return errors.New("repo: Upsert: OnConflict.Columns match more than one row; they must be the columns of a unique constraint or index")
		}
		found[n-1] = true
		return r.setKey(&rows[idx[n-1]], key)
	}, query, args...)
	if err != nil {
		return nil, err
	}
	var missing []int
	for k, ok := range found {
		if !ok {
			missing = append(missing, idx[k])
		}
	}
	return missing, nil
}

func indexOf(fields []*schema.Field, f *schema.Field) int {
	for j, g := range fields {
		if g == f {
			return j
		}
	}
	return -1
}

// upsertMethod is how Upsert's INSERT reads its input rows.
type upsertMethod int

const (
	// viaUnnest (the default) passes the rows as one array parameter per column and
	// reads them with unnest: one statement, one round trip.
	viaUnnest upsertMethod = iota
	// viaTempTable is the classic pivot: COPY the rows into a temporary table created
	// ON COMMIT DROP in the same transaction, then INSERT … SELECT from it. Kept for the
	// benchmark that chose viaUnnest (see BenchmarkUpsert).
	viaTempTable
)

// upsertTempTable is the temporary table of viaTempTable. A temporary table belongs to
// one session, and it is dropped before the next batch, so the name needs no uniqueness.
const upsertTempTable = "seqrepo_upsert"

// upsertInsertTemp is upsertInsert by way of a temporary table filled with COPY on conn.
func (r *Repository[T]) upsertInsertTemp(ctx context.Context, tx *gorm.DB, conn *sql.Conn, plan *upsertPlan, fields []*schema.Field, rows []T, idx []int) ([]int64, error) {
	pool := tx.Statement.ConnPool
	sel := make([]string, len(fields))
	cols := make([]string, len(fields)+1)
	for j, f := range fields {
		sel[j] = fmt.Sprintf("%s AS c%d", quote(f.DBName), j)
		cols[j] = "c" + itoa(j)
	}
	cols[len(fields)] = "n"
	create := fmt.Sprintf("CREATE TEMP TABLE %s ON COMMIT DROP AS SELECT %s, 0::bigint AS n FROM %s WITH NO DATA",
		upsertTempTable, strings.Join(sel, ", "), r.m.tableIdent().Sanitize())
	if _, err := r.exec(ctx, pool, create); err != nil {
		return nil, err
	}
	src := &rowSource[T]{ctx: ctx, rows: rows, idx: idx, fields: fields, ord: true, vals: make([]any, len(cols))}
	if err := r.copyFrom(ctx, conn, []string{upsertTempTable}, cols, src); err != nil {
		return nil, err
	}
	query := r.upsertSQL(plan, fields, upsertTempTable+" AS u", func(f *schema.Field) string { return "u.c" + itoa(indexOf(fields, f)) }, "u.n")
	var keys []int64
	err := r.query(ctx, pool, func(rows *sql.Rows) error {
		var k int64
		if err := rows.Scan(&k); err != nil {
			return err
		}
		keys = append(keys, k)
		return nil
	}, query)
	if err != nil {
		return nil, err
	}
	if _, err := r.exec(ctx, pool, "DROP TABLE "+upsertTempTable); err != nil {
		return nil, err
	}
	return keys, nil
}
