package repo

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// This file holds what Copy, CopySeq and Upsert share: turning rows into column values
// the way GORM's INSERT does, COPY through the pgx connection under database/sql, and
// INSERT … SELECT FROM unnest(…), which needs one bind parameter per column, not per
// value, and serves where COPY cannot be reached.

// prepare checks the text of every row and fills in what GORM's create would before
// the INSERT — a zero field with a default: value gets it, a zero autoCreateTime or
// autoUpdateTime field gets the time — in the caller's rows. It returns how to write
// them: a column whose default the database supplies (default:now(), say) is left out
// of a row that has it zero, so that the row gets the default, as GORM writes DEFAULT
// for it; rows that leave out the same columns are written together (see layout).
// Columns in force are written in every row.
//
// The text check is the model's checkValue on the values prepare reads anyway: an
// *InvalidTextError, whose Row counts from first, before anything is sent.
func (r *Repository[T]) prepare(ctx context.Context, rows []T, force map[*schema.Field]bool, first int) (*layout, error) {
	now := r.db.NowFunc()
	// The columns prepare looks at in each row: those with a default of any kind.
	// dflt[ci] is the bit of columns[ci] in a row's mask when the database supplies its
	// default, else -1; a row's mask has the bits of the columns it leaves out.
	type defaulted struct {
		a   accessor
		bit int
	}
	var cols []defaulted
	dflt := make([]int, len(r.m.columns))
	bits := 0
	for ci, f := range r.m.columns {
		dflt[ci] = -1
		if f == r.m.create.PrioritizedPrimaryField {
			continue
		}
		bit := -1
		switch {
		case f.DefaultValueInterface != nil || f.AutoCreateTime > 0 || f.AutoUpdateTime > 0:
		case f.HasDefaultValue && !force[f]:
			bit, dflt[ci] = bits, bits
			bits++
		default:
			continue
		}
		cols = append(cols, defaulted{a: r.table.acc.get(f), bit: bit})
	}
	width := (bits + 7) / 8
	masks := make([]byte, len(rows)*width)
	for i := range rows {
		rv := reflect.ValueOf(&rows[i]).Elem()
		if err := r.m.checkText(rv, first+i); err != nil {
			return nil, err
		}
		for k := range cols {
			c := &cols[k]
			if !c.a.isZero(ctx, rv) {
				continue
			}
			f := c.a.f
			switch {
			case f.DefaultValueInterface != nil:
				_ = f.Set(ctx, rv, f.DefaultValueInterface)
			case f.AutoCreateTime > 0 || f.AutoUpdateTime > 0:
				_ = f.Set(ctx, rv, now)
			case c.bit >= 0:
				masks[i*width+c.bit/8] |= 1 << (c.bit % 8)
			}
		}
	}
	return r.m.newLayout(dflt, masks, width, len(rows)), nil
}

// layout says which columns each row of a batch write is written with.
type layout struct {
	// groups are the rows that write the same columns, in the order of their first row.
	groups []rowGroup
	// fields are the columns any row writes, in column order.
	fields []*schema.Field
	// group[i] is the group of row i; nil when there is one group.
	group []int32
}

// rowGroup is rows written with one column list.
type rowGroup struct {
	fields []*schema.Field
	// idx are the indexes of the group's rows, ascending; nil for every row.
	idx []int
}

// groupOf returns the group of row i.
func (l *layout) groupOf(i int) int {
	if l.group == nil {
		return 0
	}
	return int(l.group[i])
}

// byGroup returns idx ordered by group (in the order of l.groups), in the order of idx
// within a group; idx itself when there is one group.
func (l *layout) byGroup(idx []int) []int {
	if l.group == nil {
		return idx
	}
	start := make([]int, len(l.groups)+1) // start[g+1]: rows of groups before g+1
	for _, i := range idx {
		start[l.group[i]+1]++
	}
	for g := range l.groups {
		start[g+1] += start[g]
	}
	out := make([]int, len(idx))
	for _, i := range idx {
		g := l.group[i]
		out[start[g]] = i
		start[g]++
	}
	return out
}

// newLayout groups n rows by their masks of width bytes each (see prepare): rows with
// the same mask leave out the same columns.
func (m *model) newLayout(dflt []int, masks []byte, width, n int) *layout {
	fieldsOf := func(mask []byte) []*schema.Field {
		fields := make([]*schema.Field, 0, len(m.columns))
		for ci, f := range m.columns {
			if b := dflt[ci]; b < 0 || mask[b/8]&(1<<(b%8)) == 0 {
				fields = append(fields, f)
			}
		}
		return fields
	}
	maskOf := func(i int) []byte { return masks[i*width : (i+1)*width] }
	one := true
	for i := 1; i < n && one; i++ {
		one = bytes.Equal(maskOf(i), maskOf(0))
	}
	if n == 0 || one {
		var first []byte
		if n > 0 {
			first = maskOf(0)
		} else {
			first = make([]byte, width)
		}
		fields := fieldsOf(first)
		return &layout{groups: []rowGroup{{fields: fields}}, fields: fields}
	}
	l := &layout{group: make([]int32, n)}
	byMask := map[string]int32{}
	for i := 0; i < n; i++ {
		g, ok := byMask[string(maskOf(i))]
		if !ok {
			g = int32(len(l.groups))
			byMask[string(maskOf(i))] = g
			l.groups = append(l.groups, rowGroup{fields: fieldsOf(maskOf(i))})
		}
		l.group[i] = g
		l.groups[g].idx = append(l.groups[g].idx, i)
	}
	for _, f := range m.columns {
		for _, g := range l.groups {
			if indexOf(g.fields, f) >= 0 {
				l.fields = append(l.fields, f)
				break
			}
		}
	}
	return l
}

// names returns the column names of fields.
func names(fields []*schema.Field) []string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f.DBName
	}
	return out
}

// rowSource feeds rows[idx] (all rows when idx is nil) to pgx's CopyFrom, one []any of
// field values per row, reused; with ord, each row ends with its index in rows plus 1.
type rowSource[T any] struct {
	ctx  context.Context
	rows []T
	idx  []int
	acc  []accessor
	ord  bool
	k    int
	vals []any
}

// newRowSource returns a rowSource of fields for rows[idx].
func (r *Repository[T]) newRowSource(ctx context.Context, fields []*schema.Field, rows []T, idx []int, ord bool) *rowSource[T] {
	n := len(fields)
	if ord {
		n++
	}
	return &rowSource[T]{ctx: ctx, rows: rows, idx: idx, acc: r.m.accessors(&r.table.acc, fields), ord: ord, vals: make([]any, n)}
}

func (s *rowSource[T]) len() int {
	if s.idx != nil {
		return len(s.idx)
	}
	return len(s.rows)
}

func (s *rowSource[T]) Next() bool { s.k++; return s.k <= s.len() }

func (s *rowSource[T]) Values() ([]any, error) {
	i := s.k - 1
	if s.idx != nil {
		i = s.idx[i]
	}
	rv := reflect.ValueOf(&s.rows[i]).Elem()
	for j := range s.acc {
		s.vals[j] = s.acc[j].value(s.ctx, rv)
	}
	if s.ord {
		s.vals[len(s.acc)] = int64(i + 1)
	}
	return s.vals, nil
}

func (s *rowSource[T]) Err() error { return nil }

var _ pgx.CopyFromSource = (*rowSource[struct{}])(nil)

// copyRows writes rows[idx] (all rows when idx is nil) with COPY on conn, which must be in a transaction the caller
// controls.
func (r *Repository[T]) copyRows(ctx context.Context, conn *sql.Conn, fields []*schema.Field, rows []T, idx []int) error {
	src := r.newRowSource(ctx, fields, rows, idx, false)
	return r.copyFrom(ctx, conn, r.m.tableIdent(), names(fields), src)
}

// copyFrom runs pgx's CopyFrom on the driver connection under conn (pgx's stdlib
// driver, the one gorm.io/driver/postgres uses). Nothing else may use conn meanwhile:
// database/sql holds the connection's lock while the COPY runs.
func (r *Repository[T]) copyFrom(ctx context.Context, conn *sql.Conn, table pgx.Identifier, cols []string, src pgx.CopyFromSource) error {
	begin := time.Now()
	var n int64
	err := conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("repo: COPY needs the pgx stdlib driver, the connection is a %T", dc)
		}
		var err error
		n, err = sc.Conn().CopyFrom(ctx, table, cols, src)
		return err
	})
	r.trace(ctx, begin, func() (string, int64) {
		quoted := make([]string, len(cols))
		for i, c := range cols {
			quoted[i] = quote(c)
		}
		return fmt.Sprintf("COPY %s (%s) FROM STDIN", table.Sanitize(), strings.Join(quoted, ", ")), n
	}, err)
	return err
}

// insertRows writes rows[idx] (all rows when idx is nil) with one INSERT … SELECT FROM
// unnest(…) on pool, the statement's connection.
func (r *Repository[T]) insertRows(ctx context.Context, pool gorm.ConnPool, types map[string]column, fields []*schema.Field, rows []T, idx []int) error {
	src, cols, err := unnestSelect(types, fields, "")
	if err != nil {
		return err
	}
	query := fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM %s", r.m.tableIdent().Sanitize(), quoteNames(fields), strings.Join(cols, ", "), src)
	args, err := columnArrays(ctx, types, rows, idx, fields)
	if err != nil {
		return err
	}
	_, err = r.exec(ctx, pool, query, args...)
	return err
}

// columnArrays returns one argument per field: the PostgreSQL text of an array holding
// the field's value in each row of rows[idx] (each row when idx is nil), the parameters
// of unnestSelect. Every element is the text pgx would send for the value as the
// column's type, or NULL. The value of an array column is itself its array text, an
// element of the text[] that unnestSelect casts back.
//
// The arrays travel as text, a plain string parameter that unnestSelect's cast
// ($1::bigint[], …) turns into the array, so that they work in every pgx exec mode: an
// []any array needs the parameter type from the server (cache_statement,
// cache_describe, describe_exec) and cannot be encoded in exec or simple_protocol, the
// modes used behind PgBouncer (GORM's PreferSimpleProtocol).
func columnArrays[T any](ctx context.Context, types map[string]column, rows []T, idx []int, fields []*schema.Field) ([]any, error) {
	n := len(rows)
	if idx != nil {
		n = len(idx)
	}
	tm := typeMaps.Get().(*pgtype.Map) // not safe for concurrent use: one per call
	defer typeMaps.Put(tm)
	bufs := make([][]byte, len(fields))
	oids := make([]uint32, len(fields))
	for j, f := range fields {
		bufs[j] = append(make([]byte, 0, 16*n+2), '{')
		oids[j] = types[f.DBName].oid
	}
	var scratch []byte
	for k := 0; k < n; k++ {
		i := k
		if idx != nil {
			i = idx[k]
		}
		rv := reflect.ValueOf(&rows[i]).Elem()
		for j, f := range fields {
			v, _ := f.ValueOf(ctx, rv)
			if k > 0 {
				bufs[j] = append(bufs[j], ',')
			}
			var err error
			bufs[j], scratch, err = appendElement(tm, bufs[j], scratch, oids[j], v)
			if err != nil {
				return nil, fmt.Errorf("repo: %s.%s: %w", f.Schema.Name, f.Name, err)
			}
		}
	}
	args := make([]any, len(fields))
	for j := range bufs {
		args[j] = string(append(bufs[j], '}'))
	}
	return args, nil
}

// typeMaps holds pgtype maps for columnArrays: a map remembers its encode plans.
var typeMaps = sync.Pool{New: func() any { return pgtype.NewMap() }}

// appendElement appends v, a value of a column of type oid, to buf as an element of an
// array's text: NULL, or its text in double quotes. scratch is reused for the text.
func appendElement(tm *pgtype.Map, buf, scratch []byte, oid uint32, v any) ([]byte, []byte, error) {
	switch x := v.(type) {
	case nil:
		return append(buf, "NULL"...), scratch, nil
	case int64:
		if oid == pgtype.Int8OID || oid == pgtype.Int4OID || oid == pgtype.Int2OID || oid == pgtype.NumericOID {
			return strconv.AppendInt(buf, x, 10), scratch, nil
		}
	case string:
		if oid == pgtype.TextOID || oid == pgtype.VarcharOID {
			return appendQuoted(buf, x), scratch, nil
		}
	}
	text, err := tm.Encode(oid, pgtype.TextFormatCode, v, scratch[:0])
	if err != nil {
		return buf, scratch, err
	}
	if text == nil {
		return append(buf, "NULL"...), scratch, nil
	}
	return appendQuoted(buf, text), text, nil
}

// appendQuoted appends s to buf as a double-quoted array element.
func appendQuoted[S string | []byte](buf []byte, s S) []byte {
	buf = append(buf, '"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			buf = append(buf, '\\')
		}
		buf = append(buf, s[i])
	}
	return append(buf, '"')
}

// unnestSelect returns `unnest($1::t1[], …) WITH ORDINALITY AS u(c0, …, n)` for
// fields, numbering parameters from 1, and the expression of each field's value in it:
// u.c0, …; the ordinality column n is 1-based. alias names the relation ("u" when
// empty). Each parameter is an array's text (see columnArrays), which the cast turns
// into the array. An array column travels as an element of a text[] and its expression
// casts it back (u.c0::text[]): unnest of a t[][] parameter would flatten the arrays
// into elements.
func unnestSelect(types map[string]column, fields []*schema.Field, alias string) (string, []string, error) {
	if alias == "" {
		alias = "u"
	}
	var b strings.Builder
	exprs := make([]string, len(fields))
	b.WriteString("unnest(")
	for j, f := range fields {
		col, ok := types[f.DBName]
		if !ok {
			return "", nil, fmt.Errorf("repo: column %q of %s is not in the table", f.DBName, f.Schema.Table)
		}
		if j > 0 {
			b.WriteString(", ")
		}
		exprs[j] = alias + ".c" + strconv.Itoa(j)
		if col.array {
			fmt.Fprintf(&b, "$%d::text[]", j+1)
			exprs[j] += "::" + col.typ
		} else {
			fmt.Fprintf(&b, "$%d::%s[]", j+1, col.typ)
		}
	}
	fmt.Fprintf(&b, ") WITH ORDINALITY AS %s(%s, n)", alias, aliases(len(fields)))
	return b.String(), exprs, nil
}

// aliases returns "c0, c1, …" for n columns.
func aliases(n int) string {
	var b strings.Builder
	for j := 0; j < n; j++ {
		if j > 0 {
			b.WriteString(", ")
		}
		b.WriteString("c" + strconv.Itoa(j))
	}
	return b.String()
}

// quoteNames returns the quoted, comma-separated column names of fields.
func quoteNames(fields []*schema.Field) string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = quote(f.DBName)
	}
	return strings.Join(out, ", ")
}

func quote(name string) string { return pgx.Identifier{name}.Sanitize() }

func itoa(i int) string { return strconv.Itoa(i) }

// tableIdent returns the model's table as a pgx identifier: GORM table names may be
// schema-qualified with a dot.
func (m *model) tableIdent() pgx.Identifier {
	return pgx.Identifier(strings.Split(m.schema.Table, "."))
}

// exec runs query on pool without GORM's statement building (which would expand the
// array arguments into lists) and reports it to GORM's logger.
func (r *Repository[T]) exec(ctx context.Context, pool gorm.ConnPool, query string, args ...any) (int64, error) {
	begin := time.Now()
	res, err := unwrapPool(pool).ExecContext(ctx, query, args...)
	var n int64
	if err == nil {
		n, _ = res.RowsAffected()
	}
	r.trace(ctx, begin, func() (string, int64) { return query, n }, err)
	return n, err
}

// query runs query on pool like exec and calls scan for every row.
func (r *Repository[T]) query(ctx context.Context, pool gorm.ConnPool, scan func(*sql.Rows) error, query string, args ...any) error {
	begin := time.Now()
	var n int64
	err := func() error {
		rows, err := unwrapPool(pool).QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			n++
			if err := scan(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	}()
	r.trace(ctx, begin, func() (string, int64) { return query, n }, err)
	return err
}

// trace reports a statement to GORM's logger, as GORM does for its own.
func (r *Repository[T]) trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	if r.db.Logger != nil {
		r.db.Logger.Trace(ctx, begin, fc, err)
	}
}

// tableInfo is what Copy and Upsert learn about the model's table from the catalog,
// once per Repository (and its WithTx copies).
type tableInfo struct {
	mu    sync.Mutex        // protects types; never held across the catalog query
	types map[string]column // column name → what the catalog says of it
	acc   accessorCache     // how to read each column from a row
}

// column is what the catalog says of one column of the model's table.
type column struct {
	typ   string // the SQL type, as format_type writes it
	oid   uint32 // the type's OID
	array bool   // an array type, or a domain over one
}

// columnTypes returns every column of the model's table, read from the catalog on pool
// the first time. Concurrent first callers may each read it.
func (r *Repository[T]) columnTypes(ctx context.Context, pool gorm.ConnPool) (map[string]column, error) {
	t := r.table
	t.mu.Lock()
	types := t.types
	t.mu.Unlock()
	if types != nil {
		return types, nil
	}
	types = map[string]column{}
	err := r.query(ctx, pool, func(rows *sql.Rows) error {
		var name string
		var col column
		var oid int64
		if err := rows.Scan(&name, &col.typ, &oid, &col.array); err != nil {
			return err
		}
		col.oid = uint32(oid)
		types[name] = col
		return nil
	}, `SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid::int8, t.typcategory = 'A'
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped`, r.m.tableIdent().Sanitize())
	if err != nil {
		return nil, fmt.Errorf("repo: read the columns of %s: %w", r.m.schema.Table, err)
	}
	t.mu.Lock()
	t.types = types
	t.mu.Unlock()
	return types, nil
}
