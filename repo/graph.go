package repo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/seqrepo/seqrepo/idgen"
	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// This file holds CreateGraph: rows and their GORM associations written in one network
// round trip, which keys known before the write make possible. Nothing in the graph
// waits for a key from the database, so every INSERT can be sent before the first
// answer arrives.

// CreateGraph inserts rows together with every row reachable from them through their
// GORM associations — belongs-to parents, has-one and has-many children, many2many
// rows and their join rows, nested to any depth — in one network round trip: BEGIN, one
// multi-row INSERT per table in foreign-key order (parents before children, join rows
// last), COMMIT, sent together as one pgx pipeline. It is the one-round-trip form of
// GORM's db.Create(&rows) with the plugin: on a network with a round trip of a
// millisecond, GORM's create of a repository with ten authors and ten commits waits for
// five round trips, CreateGraph for one.
//
// Keys come first, from memory: every row of a tagged model whose key is zero gets one
// from the Plugin's allocator, one NextN per model (a round trip only when that
// allocator's block runs out); foreign keys and join rows are then filled in from the
// keys. A row of a model without an idgen tag must already hold its key, unless the
// model's key has no database default (join tables): CreateGraph cannot wait for one
// from the database, and returns an error before anything is sent.
//
// It writes what GORM's create writes, with GORM's conflict handling for associations:
//   - every creatable column; a zero field with a default: value gets it, a zero
//     autoCreateTime/autoUpdateTime field gets the time (in the caller's rows, as GORM
//     does); a zero field whose default the database supplies is sent as DEFAULT;
//   - rows: a plain INSERT, so a row that exists fails with a *DuplicateKeyError;
//   - belongs-to parents and many2many rows: INSERT … ON CONFLICT DO NOTHING, so a parent
//     that already has a key and exists is left as it is (and one that has a key but does
//     not exist yet is inserted), as GORM does;
//   - has-one and has-many children: ON CONFLICT (key) DO UPDATE SET the foreign key;
//   - join rows: ON CONFLICT DO NOTHING.
//
// A struct reached twice (two commits pointing to one *Author) is written once, and so
// is a parent or child that two structs describe with the same non-zero key. No GORM
// hooks run (as with Copy), and Select/Omit do not apply: use CreateAll for GORM's
// create with hooks.
//
// It is all or nothing. On the pool it takes a connection for the pipeline; in a
// transaction from InTx (a Repository from WithTx) or on a *sql.Conn already in a
// transaction, the pipeline runs inside it between SAVEPOINT and RELEASE SAVEPOINT.
// When a statement fails, the transaction or savepoint is rolled back (one more round
// trip, on failure only), and the keys CreateGraph assigned are taken back out of the
// caller's rows (foreign keys copied from them are left: the next create sets them
// again). In a db.Transaction, whose *sql.Tx hides the driver connection, it sends one
// statement per table in a savepoint of the caller's transaction instead; so it does
// with a driver other than pgx's stdlib. The pipeline is one transaction, so it is
// safe behind PgBouncer in transaction pooling mode.
//
// Errors name the table, and the row when PostgreSQL's error says which (*GraphError):
// errors.As finds a *DuplicateKeyError for a unique violation. A string field
// PostgreSQL cannot store fails with an *InvalidTextError before anything is sent.
//
// pgx sends the pipeline in each of its exec modes (default_query_exec_mode):
// cache_statement (the default) and cache_describe add one round trip the first time a
// connection sees a statement shape (table, columns, row count), to prepare or describe
// it, and none after that; describe_exec adds that round trip to every call; exec and
// simple_protocol (GORM's PreferSimpleProtocol) never do. In simple_protocol the values
// are written into the SQL by pgx, as for every statement in that mode.
//
// The INSERTs hold every value as a bind parameter, split to stay within PostgreSQL's
// 65,535 per statement, all in the one pipeline: CreateGraph is for request-sized
// graphs; for many thousands of rows of one table, Copy is faster. ctx cancels the
// write.
func (r *Repository[T]) CreateGraph(ctx context.Context, rows []T) error {
	if len(rows) == 0 {
		return nil
	}
	db := r.db.WithContext(ctx)
	g := &graph{ctx: ctx, p: r.plugin, seen: map[seenKey]int32{}, byPK: map[pkKey]int32{}, groupOf: map[groupKey]int{}}
	slice := reflect.ValueOf(rows)
	for i := range rows {
		if _, err := g.visit(slice.Index(i), r.m.schema, roleRoot, nil, -1, "", i); err != nil {
			return err
		}
	}
	journal := &keyJournal{}
	if err := g.assignKeys(db.Statement.ConnPool, journal); err != nil {
		return err
	}
	stmts, err := g.link(db.NowFunc())
	if err == nil {
		err = r.sendGraph(ctx, db, g, stmts)
	}
	if err != nil {
		journal.undo(ctx)
		return err
	}
	return nil
}

// GraphError reports the statement of a CreateGraph write that failed: the table it
// wrote and, when PostgreSQL's error names the key of the row (a unique or foreign-key
// violation does), where that row is in the caller's graph. Err is a *DuplicateKeyError
// for a unique violation, else the driver's error; errors.As and errors.Is see through
// GraphError to it. Like any error value it is not changed after it is returned, so it
// may be shared between goroutines.
type GraphError struct {
	Table string // the table the failed statement wrote, e.g. "commits"
	// Row is the path of the failed row from the rows given to CreateGraph, e.g.
	// "rows[0].Commits[3].Author"; "" when the error does not say which row it is.
	Row string
	Err error
}

// Error names the table and row, then says what PostgreSQL said.
func (e *GraphError) Error() string {
	where := "table " + e.Table
	if e.Row != "" {
		where += ", row " + e.Row
	}
	return "repo: CreateGraph: " + where + ": " + strings.TrimPrefix(e.Err.Error(), "repo: ")
}

// Unwrap returns Err.
func (e *GraphError) Unwrap() error { return e.Err }

// graphRole says how a table's rows are inserted, as GORM's create treats them.
type graphRole uint8

const (
	roleRoot   graphRole = iota // the rows given: a plain INSERT
	roleParent                  // belongs-to parents and many2many rows: ON CONFLICT DO NOTHING
	roleChild                   // has-one/has-many children: ON CONFLICT (key) DO UPDATE SET the foreign key
	roleJoin                    // many2many join rows: ON CONFLICT DO NOTHING
)

// graph is one CreateGraph call's rows, grouped into the statements that write them.
// It belongs to one call, on one goroutine.
type graph struct {
	ctx     context.Context
	p       *Plugin
	rows    []graphRow
	groups  []*graphGroup // in the order found
	groupOf map[groupKey]int
	links   []graphLink
	seen    map[seenKey]int32 // struct address → row, so a struct reached twice is written once
	byPK    map[pkKey]int32   // an association row's non-zero key → row
}

// graphRow is one row of the graph: a struct, and how it was reached, for errors.
type graphRow struct {
	v     reflect.Value // the addressable struct; a join row's is made by link
	group int
	from  int32  // the row it was reached from, -1 for one of the given rows
	name  string // the association's field name on that row
	idx   int    // index of the row in rows or in the association's slice; -1 for a single association
}

// graphGroup is the rows of one table written one way: one INSERT (or more, within the
// bind-parameter limit) in the pipeline.
type graphGroup struct {
	key   groupKey
	s     *schema.Schema // the schema the INSERT uses: a tagged model's create schema
	m     *model         // nil for a model without an idgen tag
	rows  []int32
	after map[int]bool // the groups that must be written before this one
}

type groupKey struct {
	s    *schema.Schema
	role graphRole
	rel  *schema.Relationship // a child's relation (its foreign key is what conflicts update)
}

// graphLink is an association between two rows, whose foreign key (or join row) is set
// once the keys are known.
type graphLink struct {
	rel       *schema.Relationship
	obj, elem int32 // the row holding the association field, and the associated row
}

type seenKey struct {
	p uintptr
	t reflect.Type
}

type pkKey struct {
	s  *schema.Schema
	pk string
}

// group returns the index of the group of key, making it on first use.
func (g *graph) group(key groupKey) (int, error) {
	if i, ok := g.groupOf[key]; ok {
		return i, nil
	}
	var m *model
	if key.role != roleJoin { // a join table's fields copy the idgen tags of the keys they hold
		var err error
		if m, err = g.p.model(key.s); err != nil {
			return 0, err
		}
	}
	s := key.s
	if m != nil {
		s = m.create
	}
	g.groups = append(g.groups, &graphGroup{key: key, s: s, m: m, after: map[int]bool{}})
	g.groupOf[key] = len(g.groups) - 1
	return len(g.groups) - 1, nil
}

// visit adds v, a struct of schema s reached from row from, and everything reachable
// from it, and returns its row.
func (g *graph) visit(v reflect.Value, s *schema.Schema, role graphRole, rel *schema.Relationship, from int32, name string, idx int) (int32, error) {
	sk := seenKey{p: v.Addr().Pointer(), t: v.Type()}
	if i, ok := g.seen[sk]; ok {
		return i, nil
	}
	var pk pkKey
	if role != roleRoot && len(s.PrimaryFields) > 0 {
		if pk.pk = primaryKeyString(g.ctx, s, v); pk.pk != "" {
			pk.s = s
			if i, ok := g.byPK[pk]; ok {
				g.seen[sk] = i
				return i, nil
			}
		}
	}
	key := groupKey{s: s, role: role}
	if role == roleChild {
		key.rel = rel
	}
	gi, err := g.group(key)
	if err != nil {
		return 0, err
	}
	grp := g.groups[gi]
	if grp.m == nil {
		if f := s.PrioritizedPrimaryField; f != nil && (f.HasDefaultValue || f.AutoIncrement) {
			if _, zero := f.ValueOf(g.ctx, v); zero {
				return 0, fmt.Errorf("repo: CreateGraph: %s at %s has no key, and model %s has no %s tag: its key would come from the database, which a write in one round trip cannot wait for; tag its primary key, set the key, or use CreateAll",
					s.Table, g.path(from, name, idx), modelName(s), idgen.TagKey)
			}
		}
	}
	i := int32(len(g.rows))
	g.rows = append(g.rows, graphRow{v: v, group: gi, from: from, name: name, idx: idx})
	grp.rows = append(grp.rows, i)
	g.seen[sk] = i
	if pk.s != nil {
		g.byPK[pk] = i
	}

	// GORM's order: belongs-to parents, then has-one, has-many and many2many.
	for _, rel := range s.Relationships.BelongsTo {
		if err := g.follow(i, v, rel, roleParent); err != nil {
			return 0, err
		}
	}
	for _, rel := range s.Relationships.HasOne {
		if err := g.follow(i, v, rel, roleChild); err != nil {
			return 0, err
		}
	}
	for _, rel := range s.Relationships.HasMany {
		if err := g.follow(i, v, rel, roleChild); err != nil {
			return 0, err
		}
	}
	for _, rel := range s.Relationships.Many2Many {
		if err := g.follow(i, v, rel, roleParent); err != nil {
			return 0, err
		}
	}
	return i, nil
}

// follow visits the rows of row i's association rel and links them to it.
func (g *graph) follow(i int32, v reflect.Value, rel *schema.Relationship, role graphRole) error {
	if _, zero := rel.Field.ValueOf(g.ctx, v); zero {
		return nil
	}
	fv := reflect.Indirect(rel.Field.ReflectValueOf(g.ctx, v))
	add := func(elem reflect.Value, idx int) error {
		if elem.Kind() == reflect.Pointer {
			if elem.IsNil() {
				return nil
			}
			elem = elem.Elem()
		}
		if elem.Kind() != reflect.Struct {
			return nil
		}
		j, err := g.visit(elem, rel.FieldSchema, role, rel, i, rel.Name, idx)
		if err != nil {
			return err
		}
		g.links = append(g.links, graphLink{rel: rel, obj: i, elem: j})
		return nil
	}
	if fv.Kind() == reflect.Slice || fv.Kind() == reflect.Array {
		for k := 0; k < fv.Len(); k++ {
			if err := add(fv.Index(k), k); err != nil {
				return err
			}
		}
		return nil
	}
	return add(fv, -1)
}

// path returns where the row reached from row from through field name (at index idx)
// is in the graph, e.g. "rows[0].Commits[3].Author".
func (g *graph) path(from int32, name string, idx int) string {
	var b string
	if from < 0 {
		b = "rows"
	} else {
		r := g.rows[from]
		b = g.path(r.from, r.name, r.idx) + "." + name
	}
	if idx >= 0 {
		b += "[" + strconv.Itoa(idx) + "]"
	}
	return b
}

// rowPath returns row i's path.
func (g *graph) rowPath(i int32) string {
	r := g.rows[i]
	return g.path(r.from, r.name, r.idx)
}

// primaryKeyString returns v's primary key values as a string, "" when any is zero.
func primaryKeyString(ctx context.Context, s *schema.Schema, v reflect.Value) string {
	var b strings.Builder
	for _, f := range s.PrimaryFields {
		pv, zero := f.ValueOf(ctx, v)
		if zero {
			return ""
		}
		fmt.Fprintf(&b, "%v\x00", pv)
	}
	return b.String()
}

// assignKeys gives every row of a tagged model whose key is zero a new key, one NextN
// per model on pool's allocator, and records them in journal.
func (g *graph) assignKeys(pool gorm.ConnPool, journal *keyJournal) error {
	var order []*model
	need := map[*model][]keyedRow{}
	for _, grp := range g.groups {
		if grp.m == nil {
			continue
		}
		for _, i := range grp.rows {
			v := g.rows[i].v
			if _, zero := grp.m.key.ValueOf(g.ctx, v); zero {
				if need[grp.m] == nil {
					order = append(order, grp.m)
				}
				need[grp.m] = append(need[grp.m], keyedRow{m: grp.m, v: v})
			}
		}
	}
	for _, m := range order {
		rows := need[m]
		keys, err := g.p.next(g.ctx, m, pool, len(rows))
		if err != nil {
			journal.undo(g.ctx)
			return err
		}
		journal.record(rows)
		for k := range rows {
			if err := rows[k].set(g.ctx, keys[k]); err != nil {
				journal.undo(g.ctx)
				return fmt.Errorf("repo: set key of %s: %w", m.name(), err)
			}
		}
	}
	return nil
}

// link sets every foreign key from the keys, makes the join rows, orders the groups
// parents first, and returns the statements that write them.
func (g *graph) link(now time.Time) ([]graphStmt, error) {
	ctx := g.ctx
	for _, l := range g.links {
		obj, elem := g.rows[l.obj].v, g.rows[l.elem].v
		switch l.rel.Type {
		case schema.BelongsTo:
			for _, ref := range l.rel.References {
				if !ref.OwnPrimaryKey {
					pv, _ := ref.PrimaryKey.ValueOf(ctx, elem)
					if err := ref.ForeignKey.Set(ctx, obj, pv); err != nil {
						return nil, fmt.Errorf("repo: CreateGraph: set %s.%s: %w", modelName(l.rel.Schema), ref.ForeignKey.Name, err)
					}
				}
			}
			g.before(g.rows[l.elem].group, g.rows[l.obj].group)
		case schema.HasOne, schema.HasMany:
			for _, ref := range l.rel.References {
				var err error
				if ref.OwnPrimaryKey {
					pv, _ := ref.PrimaryKey.ValueOf(ctx, obj)
					err = ref.ForeignKey.Set(ctx, elem, pv)
				} else if ref.PrimaryValue != "" {
					err = ref.ForeignKey.Set(ctx, elem, ref.PrimaryValue)
				}
				if err != nil {
					return nil, fmt.Errorf("repo: CreateGraph: set %s.%s: %w", modelName(l.rel.FieldSchema), ref.ForeignKey.Name, err)
				}
			}
			g.before(g.rows[l.obj].group, g.rows[l.elem].group)
		case schema.Many2Many:
			gi, err := g.group(groupKey{s: l.rel.JoinTable, role: roleJoin})
			if err != nil {
				return nil, err
			}
			join := reflect.New(l.rel.JoinTable.ModelType).Elem()
			for _, ref := range l.rel.References {
				switch {
				case ref.OwnPrimaryKey:
					pv, _ := ref.PrimaryKey.ValueOf(ctx, obj)
					err = ref.ForeignKey.Set(ctx, join, pv)
				case ref.PrimaryValue != "":
					err = ref.ForeignKey.Set(ctx, join, ref.PrimaryValue)
				default:
					pv, _ := ref.PrimaryKey.ValueOf(ctx, elem)
					err = ref.ForeignKey.Set(ctx, join, pv)
				}
				if err != nil {
					return nil, fmt.Errorf("repo: CreateGraph: set %s.%s: %w", l.rel.JoinTable.Table, ref.ForeignKey.Name, err)
				}
			}
			i := int32(len(g.rows))
			g.rows = append(g.rows, graphRow{v: join, group: gi, from: l.obj, name: l.rel.Name + "(join)", idx: -1})
			g.groups[gi].rows = append(g.groups[gi].rows, i)
			g.before(g.rows[l.obj].group, gi)
			g.before(g.rows[l.elem].group, gi)
		}
	}
	var stmts []graphStmt
	for _, gi := range g.order() {
		s, err := g.statements(gi, now)
		if err != nil {
			return nil, err
		}
		stmts = append(stmts, s...)
	}
	return stmts, nil
}

// before records that group a is written before group b.
func (g *graph) before(a, b int) {
	if a != b {
		g.groups[b].after[a] = true
	}
}

// order returns the groups parents first, otherwise in the order found. In a cycle of
// tables (rare: two models that belong to each other) the first found goes first, and
// PostgreSQL's foreign-key check has the last word.
func (g *graph) order() []int {
	done := make([]bool, len(g.groups))
	out := make([]int, 0, len(g.groups))
	for len(out) < len(g.groups) {
		pick := -1
		for i, grp := range g.groups {
			if done[i] {
				continue
			}
			ready := true
			for a := range grp.after {
				if !done[a] {
					ready = false
					break
				}
			}
			if ready {
				pick = i
				break
			}
			if pick < 0 {
				pick = -2 - i // the first undone, should none be ready
			}
		}
		if pick < -1 {
			pick = -2 - pick
		}
		done[pick] = true
		out = append(out, pick)
	}
	return out
}

// graphStmt is one INSERT of the pipeline, with the rows it writes.
type graphStmt struct {
	sql   string
	args  []any
	group int
	rows  []int32
}

// statements returns the INSERTs of group gi: the columns GORM's create would write,
// split within the bind-parameter limit.
func (g *graph) statements(gi int, now time.Time) ([]graphStmt, error) {
	ctx := g.ctx
	grp := g.groups[gi]
	s := grp.s
	var fields []*schema.Field
	var dbDefault []bool
	for _, name := range s.DBNames {
		f := s.FieldsByDBName[name]
		if f == nil || !f.Creatable {
			continue
		}
		fields = append(fields, f)
		dbDefault = append(dbDefault, f.HasDefaultValue && f.DefaultValueInterface == nil)
	}
	// vals[k][j] is row k's value of fields[j]; nil in a database-default column means DEFAULT.
	vals := make([][]any, len(grp.rows))
	used := make([]bool, len(fields))
	for k, i := range grp.rows {
		rv := g.rows[i].v
		vals[k] = make([]any, len(fields))
		for j, f := range fields {
			v, zero := f.ValueOf(ctx, rv)
			if zero {
				switch {
				case f.DefaultValueInterface != nil:
					if err := f.Set(ctx, rv, f.DefaultValueInterface); err != nil {
						return nil, err
					}
					v = f.DefaultValueInterface
				case f.AutoCreateTime > 0 || f.AutoUpdateTime > 0:
					if err := f.Set(ctx, rv, now); err != nil {
						return nil, err
					}
					v, _ = f.ValueOf(ctx, rv)
				case dbDefault[j]:
					continue // DEFAULT, unless the column is left out
				}
			} else if reason := badGraphText(v); reason != "" {
				return nil, &InvalidTextError{Model: modelName(s), Field: f.Name, Row: g.rootOf(i), Reason: reason}
			}
			vals[k][j] = v
			used[j] = true
		}
	}
	cols := make([]int, 0, len(fields))
	for j := range fields {
		if !dbDefault[j] || used[j] {
			cols = append(cols, j)
		}
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("repo: CreateGraph: %s has no column to insert", s.Table)
	}
	head := "INSERT INTO " + pgx.Identifier(strings.Split(s.Table, ".")).Sanitize() + " ("
	for c, j := range cols {
		if c > 0 {
			head += ", "
		}
		head += quote(fields[j].DBName)
	}
	head += ") VALUES "
	tail := g.conflict(grp)
	per := max(1, maxBindParams/len(cols))
	var out []graphStmt
	for start := 0; start < len(grp.rows); start += per {
		end := min(start+per, len(grp.rows))
		var b strings.Builder
		b.WriteString(head)
		args := make([]any, 0, (end-start)*len(cols))
		for k := start; k < end; k++ {
			if k > start {
				b.WriteString(", ")
			}
			b.WriteByte('(')
			for c, j := range cols {
				if c > 0 {
					b.WriteString(", ")
				}
				if v := vals[k][j]; v == nil && dbDefault[j] {
					b.WriteString("DEFAULT")
				} else {
					args = append(args, v)
					b.WriteByte('$')
					b.WriteString(strconv.Itoa(len(args)))
				}
			}
			b.WriteByte(')')
		}
		b.WriteString(tail)
		out = append(out, graphStmt{sql: b.String(), args: args, group: gi, rows: grp.rows[start:end]})
	}
	return out, nil
}

// conflict returns the ON CONFLICT clause of grp's INSERT, as GORM's create of
// associations has it.
func (g *graph) conflict(grp *graphGroup) string {
	switch grp.key.role {
	case roleParent, roleJoin:
		return " ON CONFLICT DO NOTHING"
	case roleChild:
		if len(grp.s.PrimaryFieldDBNames) == 0 {
			return " ON CONFLICT DO NOTHING"
		}
		var b strings.Builder
		b.WriteString(" ON CONFLICT (")
		for i, name := range grp.s.PrimaryFieldDBNames {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(quote(name))
		}
		b.WriteString(") DO UPDATE SET ")
		for i, ref := range grp.key.rel.References {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(quote(ref.ForeignKey.DBName) + " = excluded." + quote(ref.ForeignKey.DBName))
		}
		return b.String()
	}
	return ""
}

// rootOf returns the index in rows of the row row i was reached from.
func (g *graph) rootOf(i int32) int {
	for g.rows[i].from >= 0 {
		i = g.rows[i].from
	}
	return g.rows[i].idx
}

// badGraphText says what is wrong with v as PostgreSQL text when it is a string, a
// *string or a valid sql.NullString (see InvalidTextError), "" otherwise.
func badGraphText(v any) string {
	switch x := v.(type) {
	case string:
		return badText(x)
	case *string:
		if x != nil {
			return badText(*x)
		}
	case sql.NullString:
		if x.Valid {
			return badText(x.String)
		}
	}
	return ""
}

// sendGraph writes stmts all or nothing: as one pipeline on the driver connection when
// it can be reached, else one statement at a time in a transaction or savepoint.
func (r *Repository[T]) sendGraph(ctx context.Context, db *gorm.DB, g *graph, stmts []graphStmt) error {
	pool := unwrapPool(db.Statement.ConnPool)
	if conn := connOf(pool); conn != nil { // InTx's transaction, or a *sql.Conn
		if ok, err := r.pipeline(ctx, conn, g, stmts); ok {
			return err
		}
	} else if sqlDB, ok := pool.(*sql.DB); ok {
		conn, err := sqlDB.Conn(ctx)
		if err != nil {
			return err
		}
		ok, err := r.pipeline(ctx, conn, g, stmts)
		conn.Close()
		if ok {
			return err
		}
	}
	return transaction(db, func(tx *gorm.DB) error {
		for _, st := range stmts {
			if _, err := r.exec(ctx, tx.Statement.ConnPool, st.sql, st.args...); err != nil {
				return g.explain(st, err)
			}
		}
		return nil
	})
}

// errNotPgx is pipeline's answer for a connection of another driver.
var errNotPgx = errors.New("repo: not a pgx connection")

// pipeline sends stmts in one pgx batch on conn: between BEGIN and COMMIT when conn is
// not in a transaction, between SAVEPOINT and RELEASE SAVEPOINT when it is. ok is false,
// and nothing was sent, when conn is not a pgx stdlib connection.
func (r *Repository[T]) pipeline(ctx context.Context, conn *sql.Conn, g *graph, stmts []graphStmt) (ok bool, err error) {
	begin := time.Now()
	err = conn.Raw(func(dc any) error {
		sc, isPgx := dc.(*stdlib.Conn)
		if !isPgx {
			return errNotPgx
		}
		pc := sc.Conn()
		// The savepoint's name is the same in every call, so that the pipeline's
		// statements are the same and prepared once per connection; it is released or
		// rolled back before CreateGraph returns, so it never meets itself.
		var open, done, undo string
		switch st := pc.PgConn().TxStatus(); st {
		case 'I':
			open, done, undo = "BEGIN", "COMMIT", "ROLLBACK"
		case 'T':
			open, done = "SAVEPOINT seqrepo_graph", "RELEASE SAVEPOINT seqrepo_graph"
			undo = "ROLLBACK TO SAVEPOINT seqrepo_graph; RELEASE SAVEPOINT seqrepo_graph"
		default:
			return fmt.Errorf("repo: CreateGraph: the connection's transaction has failed (status %q); roll it back first", st)
		}
		b := &pgx.Batch{}
		b.Queue(open)
		for _, st := range stmts {
			b.Queue(st.sql, st.args...)
		}
		b.Queue(done)
		br := pc.SendBatch(ctx, b)
		var failed error
	results:
		for q := 0; q < b.Len(); q++ {
			if _, err := br.Exec(); err != nil {
				switch {
				case q == 0:
					failed = err
				case q <= len(stmts):
					failed = g.explain(stmts[q-1], err)
				default: // COMMIT: a deferred constraint
					failed = g.explain(graphStmt{group: -1}, err)
				}
				break results
			}
		}
		if err := br.Close(); failed == nil && err != nil {
			failed = err
		}
		if failed == nil {
			return nil
		}
		// A failed BEGIN … COMMIT leaves the transaction open; a failed statement after
		// the SAVEPOINT leaves the caller's transaction aborted ('E'). (One that fails
		// to prepare, before the SAVEPOINT ran, aborts it too, and then it stays so.)
		st := pc.PgConn().TxStatus()
		if !pc.IsClosed() && (open == "BEGIN" && st != 'I' || open != "BEGIN" && st == 'E') {
			// The simple protocol: nothing to prepare in the failed transaction.
			if _, err := pc.PgConn().Exec(context.WithoutCancel(ctx), undo).ReadAll(); err != nil {
				failed = errors.Join(failed, fmt.Errorf("repo: CreateGraph: roll back: %w", err))
			}
		}
		return failed
	})
	if errors.Is(err, errNotPgx) {
		return false, nil
	}
	r.trace(ctx, begin, func() (string, int64) {
		var b strings.Builder
		n := 0
		for i, st := range stmts {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(st.sql)
			n += len(st.rows)
		}
		return "pipeline: " + b.String(), int64(n)
	}, err)
	return true, err
}

// explain returns err, from the statement st, as a *GraphError naming the table and,
// when PostgreSQL's detail gives the key of the row, the row.
func (g *graph) explain(st graphStmt, err error) error {
	err = translate(err)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		if st.group < 0 {
			return err
		}
		return &GraphError{Table: g.groups[st.group].s.Table, Err: err}
	}
	ge := &GraphError{Table: pgErr.TableName, Err: err}
	if st.group >= 0 {
		ge.Table = g.groups[st.group].s.Table
		if i, ok := g.rowOfDetail(st, pgErr.Detail); ok {
			ge.Row = g.rowPath(i)
		}
	}
	return ge
}

// rowOfDetail finds the row of st whose columns hold the key in PostgreSQL's detail,
// "Key (email)=(ada@example.com) already exists." or "Key (author_id)=(7) is not
// present in table …". Only integer and text values are compared.
func (g *graph) rowOfDetail(st graphStmt, detail string) (int32, bool) {
	rest, ok := strings.CutPrefix(detail, "Key (")
	if !ok {
		return 0, false
	}
	colList, rest, ok := strings.Cut(rest, ")=(")
	if !ok {
		return 0, false
	}
	s := g.groups[st.group].s
	var fields []*schema.Field
	for _, c := range strings.Split(colList, ", ") {
		f := s.FieldsByDBName[strings.Trim(c, `"`)]
		if f == nil {
			return 0, false
		}
		fields = append(fields, f)
	}
	for _, i := range st.rows {
		var b strings.Builder
		for k, f := range fields {
			if k > 0 {
				b.WriteString(", ")
			}
			v, _ := f.ValueOf(g.ctx, g.rows[i].v)
			rv := reflect.Indirect(reflect.ValueOf(v))
			switch rv.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				b.WriteString(strconv.FormatInt(rv.Int(), 10))
			case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
				b.WriteString(strconv.FormatUint(rv.Uint(), 10))
			case reflect.String:
				b.WriteString(rv.String())
			default:
				return 0, false
			}
		}
		if strings.HasPrefix(rest, b.String()+")") {
			return i, true
		}
	}
	return 0, false
}
