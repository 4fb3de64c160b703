package repo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
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
	// conflicting row is left as it is (DO NOTHING). A column named here that an input
	// row leaves to its database default (a zero field with default:now(), say; see
	// Copy) takes that default, as EXCLUDED does: an updated_at with DEFAULT now() is
	// refreshed.
	Update []string
	// UpdateAll updates every column the call writes except the key, Columns and
	// autoCreateTime columns. A column whose default the database supplies is updated
	// from the input rows that set it; a conflicting row whose input row leaves it zero
	// keeps its stored value, as GORM's own UpdateAll never writes such a column.
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
// Where the transaction's connection can be reached (Upsert's own transaction, or
// one from InTx) Upsert takes one key allocation for all rows and, through a temporary
// table created LIKE the model's table (its defaults included) ON COMMIT DROP: one
// statement that creates it, one binary COPY of the rows into it (one per group of
// rows that leave different database-default columns zero), one INSERT … SELECT
// DISTINCT ON (key) … ORDER BY key … ON CONFLICT … RETURNING, then one SELECT of the
// keys of the rows not inserted — in READ COMMITTED a row that a concurrent
// transaction committed while the INSERT waited for it is not visible to the INSERT's
// snapshot, but it is to the next statement's. In a db.Transaction, which hides its
// connection, and in pgx's simple_protocol exec mode (GORM's PreferSimpleProtocol,
// PgBouncer setups), it takes, for each batch of Config.BatchSize rows, one key
// allocation, INSERT … SELECT DISTINCT ON (key) … FROM unnest($1::bigint[], …) ON
// CONFLICT … RETURNING and the SELECT (more than one batch takes one more statement
// to sort the rows first); a batch whose rows leave different database-default
// columns zero goes through the temporary table, filled with unnest INSERTs. Either
// way rows are written in the order of their unique keys, so concurrent Upserts of
// overlapping rows wait for each other instead of deadlocking. Like Copy, Upsert
// writes columns only: no hooks, no associations; and like Copy it gives a row that
// leaves a field with a database default zero that default, row by row.
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
	lay, err := r.prepare(ctx, rows, plan.force, 0)
	if err != nil {
		return UpsertResult{}, err
	}
	plan = plan.writing(lay.fields)
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
		if r.upsertVia != viaUnnest && copyable(conn, r.upsertVia == viaTempTable) {
			// One INSERT for all rows, which sorts them itself.
			all := make([]int, len(rows))
			for i := range all {
				all[i] = i
			}
			return r.upsertBatch(ctx, tx, conn, types, plan, lay, rows, all, inserted)
		}
		order, err := r.upsertOrder(ctx, pool, types, plan, rows)
		if err != nil {
			return err
		}
		for start := 0; start < len(order); start += r.batch {
			batch := order[start:min(start+r.batch, len(order))]
			if err := r.upsertBatch(ctx, tx, nil, types, plan, lay, rows, batch, inserted); err != nil {
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

// upsertBatch upserts rows[idx] in tx and marks the inserted: through the temporary
// table filled with COPY when conn is not nil, else with unnest (see Upsert).
func (r *Repository[T]) upsertBatch(ctx context.Context, tx *gorm.DB, conn *sql.Conn, types map[string]column, plan *upsertPlan, lay *layout, rows []T, idx []int, inserted []bool) error {
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
		// The keys go out in ascending order, group after group, so that each group's
		// keys lie in a range of their own (see upsertStaged).
		slices.Sort(keys)
		fresh := make(map[int64]int, len(pending)) // new key → index into rows
		ranges := make([]keySpan, len(lay.groups))
		for k, i := range lay.byGroup(pending) {
			if err := r.setKey(&rows[i], keys[k]); err != nil {
				return err
			}
			fresh[keys[k]] = i
			ranges[lay.groupOf(i)].add(keys[k])
		}
		var got []int64
		switch {
		case conn != nil || len(lay.groups) > 1:
			// With unnest: rows leave different columns to their database defaults,
			// and one INSERT cannot say DEFAULT in some rows only; a temporary table
			// filled group by group can.
			got, err = r.upsertStaged(ctx, tx, conn, types, plan, lay, ranges, rows, pending)
		default:
			got, err = r.upsertInsert(ctx, pool, types, plan, lay.fields, rows, pending)
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
	query := r.upsertSQL(plan, fields, src, func(f *schema.Field) string { return cols[indexOf(fields, f)] }, "u.n", nil)
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
//	INSERT INTO table AS t (cols) SELECT cols FROM (SELECT DISTINCT ON (conflict…) … FROM src ORDER BY conflict…, ord) s
//	ON CONFLICT (conflict…) DO NOTHING | DO UPDATE SET c = EXCLUDED.c, … RETURNING key
//
// col maps a field to its expression in src and ord is the input order. DISTINCT ON
// keeps one row per unique key, by the database's equality: the first in input order
// for DO NOTHING, the last for DO UPDATE. A row with a NULL in its unique key conflicts
// with nothing (unique indexes treat NULLs as distinct), so such rows are kept apart.
// keep, when not nil, gives for an updated column a condition on EXCLUDED under which
// the row keeps its stored value (c = CASE WHEN cond THEN t.c ELSE EXCLUDED.c END), or
// "" for none.
func (r *Repository[T]) upsertSQL(plan *upsertPlan, fields []*schema.Field, src string, col func(*schema.Field) string, ord string, keep func(*schema.Field) string) string {
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
	fmt.Fprintf(&b, "INSERT INTO %s AS t (%s) SELECT %s FROM (SELECT DISTINCT ON (%s) %s FROM %s ORDER BY %s, %s) AS s",
		r.m.tableIdent().Sanitize(), quoteNames(fields), quoteNames(fields),
		strings.Join(distinct, ", "), strings.Join(sel, ", "), src, strings.Join(distinct, ", "), order)
	fmt.Fprintf(&b, " ON CONFLICT (%s)", quoteNames(plan.conflict))
	if len(plan.update) == 0 {
		b.WriteString(" DO NOTHING")
	} else {
		set := make([]string, len(plan.update))
		for j, f := range plan.update {
			set[j] = quote(f.DBName) + " = EXCLUDED." + quote(f.DBName)
			if keep == nil {
				continue
			}
			if cond := keep(f); cond != "" {
				set[j] = fmt.Sprintf("%s = CASE WHEN %s THEN t.%s ELSE EXCLUDED.%s END", quote(f.DBName), cond, quote(f.DBName), quote(f.DBName))
			}
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

// keySpan is the smallest and largest of n keys.
type keySpan struct {
	lo, hi int64
	n      int
}

func (kr *keySpan) add(k int64) {
	if kr.n == 0 || k < kr.lo {
		kr.lo = k
	}
	if kr.n == 0 || k > kr.hi {
		kr.hi = k
	}
	kr.n++
}

// upsertMethod is how Upsert reads its input rows.
type upsertMethod int

const (
	// viaAuto (the default): the temporary table filled with COPY where the connection
	// can be reached and pgx does not use the simple protocol, else unnest.
	viaAuto upsertMethod = iota
	// viaUnnest passes the rows as one array parameter per column and reads them with
	// unnest, in batches. Only tests and benchmarks choose it.
	viaUnnest
	// viaTempTable is viaAuto in the simple protocol too. Only tests choose it.
	viaTempTable
)

// copyable reports whether COPY can run on conn: it is a pgx stdlib connection and,
// unless simpleToo, not in pgx's simple_protocol exec mode.
func copyable(conn *sql.Conn, simpleToo bool) bool {
	if conn == nil {
		return false
	}
	ok := false
	_ = conn.Raw(func(dc any) error {
		if sc, isPgx := dc.(*stdlib.Conn); isPgx {
			ok = simpleToo || sc.Conn().Config().DefaultQueryExecMode != pgx.QueryExecModeSimpleProtocol
		}
		return nil
	})
	return ok
}

// upsertTempTable is the temporary table of upsertStaged. A temporary table belongs to
// one session, and each use drops the one before, so the name needs no uniqueness.
const upsertTempTable = "seqrepo_upsert"

// upsertStaged is upsertInsert by way of a temporary table made LIKE the model's table,
// its column defaults included: it writes rows[idx] into it, each group of lay with
// its own columns, so that a row that leaves out a column with a database default gets
// the default there, row by row, as the model's table would give it; then it inserts
// from it with one INSERT … ON CONFLICT and returns the keys that returned. It fills
// the table with COPY on conn, or with unnest INSERTs when conn is nil.
//
// With UpdateAll, a conflicting row keeps its stored value of a column with a database
// default when the input row left that column out, and takes the input's value when it
// wrote it. The DO UPDATE tells the two apart by EXCLUDED's key: ranges[g] holds the
// keys of group g, and no other key lies in it.
func (r *Repository[T]) upsertStaged(ctx context.Context, tx *gorm.DB, conn *sql.Conn, types map[string]column, plan *upsertPlan, lay *layout, ranges []keySpan, rows []T, idx []int) ([]int64, error) {
	pool := tx.Statement.ConnPool
	ord := "seqrepo_ord" // the input row's index plus 1
	for _, taken := types[ord]; taken; _, taken = types[ord] {
		ord += "_"
	}
	notNull := make([]string, len(lay.fields))
	for j, f := range lay.fields {
		if _, ok := types[f.DBName]; !ok {
			return nil, fmt.Errorf("repo: column %q of %s is not in the table", f.DBName, f.Schema.Table)
		}
		notNull[j] = "ALTER COLUMN " + quote(f.DBName) + " DROP NOT NULL"
	}
	// The model's table checks NOT NULL when the rows reach it, and names itself in
	// the error.
	create := fmt.Sprintf("DROP TABLE IF EXISTS pg_temp.%[1]s; CREATE TEMP TABLE %[1]s (LIKE %[2]s INCLUDING DEFAULTS, %[3]s bigint) ON COMMIT DROP; ALTER TABLE pg_temp.%[1]s %[4]s",
		upsertTempTable, r.m.tableIdent().Sanitize(), quote(ord), strings.Join(notNull, ", "))
	if _, err := r.exec(ctx, pool, create); err != nil {
		return nil, err
	}
	parts := make([][]int, len(lay.groups))
	for _, i := range idx {
		g := lay.groupOf(i)
		parts[g] = append(parts[g], i)
	}
	for g, part := range parts {
		if len(part) == 0 {
			continue
		}
		fields := lay.groups[g].fields
		if conn != nil {
			cols := append(names(fields), ord)
			src := r.newRowSource(ctx, fields, rows, part, true)
			if err := r.copyFrom(ctx, conn, pgx.Identifier{"pg_temp", upsertTempTable}, cols, src); err != nil {
				return nil, err
			}
			continue
		}
		src, exprs, err := unnestSelect(types, fields, "u")
		if err != nil {
			return nil, err
		}
		query := fmt.Sprintf("INSERT INTO pg_temp.%s (%s, %s) SELECT %s, ($%d::bigint[])[u.n] FROM %s",
			upsertTempTable, quoteNames(fields), quote(ord), strings.Join(exprs, ", "), len(fields)+1, src)
		for start := 0; start < len(part); start += r.batch {
			chunk := part[start:min(start+r.batch, len(part))]
			args, err := columnArrays(ctx, types, rows, chunk, fields)
			if err != nil {
				return nil, err
			}
			ords := make(int64Array, len(chunk))
			for k, i := range chunk {
				ords[k] = int64(i + 1)
			}
			if _, err := r.exec(ctx, pool, query, append(args, ords)...); err != nil {
				return nil, err
			}
		}
	}
	var keep func(f *schema.Field) string
	if plan.updateAll && len(lay.groups) > 1 {
		key := "EXCLUDED." + quote(r.m.key.DBName)
		keep = func(f *schema.Field) string {
			var left []string
			for g, grp := range lay.groups {
				if indexOf(grp.fields, f) < 0 && ranges[g].n > 0 {
					left = append(left, fmt.Sprintf("%s BETWEEN %d AND %d", key, ranges[g].lo, ranges[g].hi))
				}
			}
			return strings.Join(left, " OR ")
		}
	}
	query := r.upsertSQL(plan, lay.fields, "pg_temp."+upsertTempTable+" AS u", func(f *schema.Field) string { return "u." + quote(f.DBName) }, "u."+quote(ord), keep)
	var keys []int64
	err := r.query(ctx, pool, func(rows *sql.Rows) error {
		var k int64
		if err := rows.Scan(&k); err != nil {
			return err
		}
		keys = append(keys, k)
		return nil
	}, query)
	return keys, err
}
