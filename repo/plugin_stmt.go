package repo

import (
	"context"
	"fmt"
	"reflect"
	"regexp"
	"slices"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// This file decides, statement by statement, how the plugin takes part in a create, so
// that the rule of the Plugin's doc holds: every row ends up holding the key its row has
// in the table, or the call fails; a row that was not written keeps its zero key (or
// holds the existing row's); a statement that sends nothing reserves nothing.

// reconcileName is the callback that runs after GORM's INSERT of a statement whose ON
// CONFLICT clause may have left rows unwritten.
const reconcileName = "seqrepo:reconcile_keys"

// registerCallbacks registers the plugin's create callbacks on db: assignKeys before
// every other, so that keys are known to BeforeSave and BeforeCreate hooks and to the
// associations and are allocated before GORM begins its default transaction; and
// reconcileKeys right after GORM's INSERT, on the statement's own connection and before
// the associations saved after it, which copy the keys into their foreign keys.
func (p *Plugin) registerCallbacks(db *gorm.DB) error {
	if err := db.Callback().Create().Before("*").Register(callbackName, p.createCallback); err != nil {
		return err
	}
	return db.Callback().Create().After("gorm:create").Before("gorm:save_after_associations").Register(reconcileName, p.reconcileKeys)
}

// conflictPlan is what a create statement's ON CONFLICT clause asks of the plugin. The
// zero value, for no ON CONFLICT or one whose only target is the key column, asks
// nothing: a row that conflicts there already holds the key of the row it conflicts
// with.
type conflictPlan struct {
	// returning: DO UPDATE on another target. A row that conflicts is updated and keeps
	// its old key, so the key column is added to RETURNING and GORM reads it back into
	// the row, as it does without the plugin.
	returning bool
	// reconcile: DO NOTHING on another target or none, or DO UPDATE … WHERE. A row that
	// conflicts (and is not updated) is not written; after the INSERT, reconcileKeys
	// gives every such row its zero key back.
	reconcile bool
}

// planConflict returns what stmt's ON CONFLICT clause asks for, or an error when the
// plugin could not tell which key each row has after it.
func planConflict(stmt *gorm.Statement, m *model) (conflictPlan, error) {
	c, ok := stmt.Clauses["ON CONFLICT"]
	if !ok {
		return conflictPlan{}, nil
	}
	oc, ok := c.Expression.(clause.OnConflict)
	if !ok {
		return conflictPlan{}, nil
	}
	target := oc.Columns
	if len(target) == 0 && oc.UpdateAll && oc.OnConstraint == "" {
		target = []clause.Column{{Name: m.key.DBName}} // GORM's default for UpdateAll
	}
	if oc.OnConstraint == "" && len(target) == 1 && columnNamesKey(stmt, target[0].Name, m.key) {
		return conflictPlan{}, nil
	}
	if oc.DoNothing || (len(oc.DoUpdates) == 0 && !oc.UpdateAll) {
		return conflictPlan{reconcile: true}, nil
	}
	// DO UPDATE returns a row for every row sent, in order, and GORM scans them back
	// row by row; a WHERE that skips some rows shifts every later one onto the wrong
	// struct, and GORM cannot scan rows back into a slice of maps.
	list := isList(stmt.ReflectValue)
	if list && stmt.ReflectValue.Len() > 1 && len(oc.Where.Exprs) > 0 {
		return conflictPlan{}, fmt.Errorf("repo: model %s: ON CONFLICT DO UPDATE … WHERE on %d rows in one statement: seqrepo cannot tell which rows were written and which keys they hold; create them one at a time, or use Repository.Upsert", m.name(), stmt.ReflectValue.Len())
	}
	if list && stmt.ReflectValue.Type().Elem().Kind() == reflect.Map {
		return conflictPlan{}, fmt.Errorf("repo: model %s: ON CONFLICT DO UPDATE on a slice of maps: GORM cannot read each row's key back into its map; create structs, or the maps one at a time", m.name())
	}
	return conflictPlan{returning: true, reconcile: len(oc.Where.Exprs) > 0}, nil
}

// isList reports whether rv is a slice or an array.
func isList(rv reflect.Value) bool {
	k := rv.Kind()
	return k == reflect.Slice || k == reflect.Array
}

// returnKey adds m's key column to stmt's RETURNING clause, making one with the columns
// GORM would return (the create schema's database defaults) when there is none.
func returnKey(stmt *gorm.Statement, m *model) {
	key := clause.Column{Name: m.key.DBName}
	c, ok := stmt.Clauses["RETURNING"]
	if !ok {
		cols := []clause.Column{key}
		for _, f := range m.create.FieldsWithDefaultDBValue {
			if f.Readable {
				cols = append(cols, clause.Column{Name: f.DBName})
			}
		}
		stmt.AddClause(clause.Returning{Columns: cols})
		return
	}
	r, _ := c.Expression.(clause.Returning)
	if len(r.Columns) == 0 || slices.ContainsFunc(r.Columns, func(col clause.Column) bool { return col.Name == "*" || col.Name == key.Name }) {
		return // RETURNING * or the key already
	}
	// A new slice: r.Columns may be shared with the statement this one was cloned from.
	c.Expression = clause.Returning{Columns: append(slices.Clip(r.Columns), key)}
	stmt.Clauses["RETURNING"] = c
}

// includeKey makes stmt's Select and Omit name m's key column when they leave it out
// (db.Select("Name").Create, db.Omit("ID").Create): the key seqrepo assigns is then
// written, where GORM would leave the column to its database default and read that
// back. It reports false, with Select and Omit as they were, when the key column still
// cannot be written (Omit("*"), a key GORM may not create): the statement is then left
// to GORM. Selects and Omits are replaced, never appended to in place: they may share
// their array with the caller or with the statement this one was cloned from.
func includeKey(stmt *gorm.Statement, m *model) bool {
	if keySelected(stmt, m.key) {
		return true
	}
	selects, omits := stmt.Selects, stmt.Omits
	var keep []string
	for _, o := range omits {
		if !columnNamesKey(stmt, o, m.key) {
			keep = append(keep, o)
		}
	}
	stmt.Omits = keep
	if !keySelected(stmt, m.key) {
		stmt.Selects = append(slices.Clip(selects), m.key.DBName)
	}
	if !keySelected(stmt, m.key) {
		stmt.Selects, stmt.Omits = selects, omits
		return false
	}
	return true
}

// keySelected reports whether GORM's INSERT for stmt names key's column, as
// ConvertToCreateValues decides it.
func keySelected(stmt *gorm.Statement, key *schema.Field) bool {
	cols, restricted := stmt.SelectAndOmitColumns(true, false)
	v, ok := cols[key.DBName]
	return (ok && v) || (!ok && !restricted)
}

// nameMatcher splits "table.column", with optional quotes, as GORM's matchName does.
var nameMatcher = regexp.MustCompile(`^(?:\W?(\w+?)\W?\.)?(?:(\*)|\W?(\w+?)\W?)$`)

// columnNamesKey reports whether name, as Select, Omit or a conflict target gives it,
// is key: its field name, its column, or table.column of stmt's table.
func columnNamesKey(stmt *gorm.Statement, name string, key *schema.Field) bool {
	if f := stmt.Schema.LookUpField(name); f != nil {
		return f.DBName == key.DBName
	}
	if mm := nameMatcher.FindStringSubmatch(name); len(mm) == 4 && mm[3] != "" {
		return mm[3] == key.DBName && (mm[1] == "" || mm[1] == stmt.Table)
	}
	return false
}

// pendingKey is where assignKeys leaves, in the statement's Settings, the rows that
// reconcileKeys must check. The statement's pointer keeps apart the entries that GORM
// copies into the Settings of the association statements.
type pendingKey struct{ stmt *gorm.Statement }

// pending is what reconcileKeys needs of a statement: the rows it gave keys to, and
// the number of rows in the statement.
type pending struct {
	rows []keyedRow
	n    int
}

// rowCount returns the number of rows in a create statement's value.
func rowCount(rv reflect.Value) int {
	if isList(rv) {
		return rv.Len()
	}
	return 1
}

// reconcileKeys runs after GORM's INSERT of a statement with ON CONFLICT DO NOTHING (or
// DO UPDATE … WHERE, on one row): every row assignKeys gave a key to that was not written gets its old key back (zero,
// as GORM leaves it), so that no struct or map holds a key no row has. RowsAffected
// says how many rows were written: when that is all of them or none, nothing is sent;
// otherwise one query, on the statement's own connection (in its transaction), finds
// which of the keys are in the table. A row whose key a hook changed keeps the hook's.
func (p *Plugin) reconcileKeys(db *gorm.DB) {
	stmt := db.Statement
	v, ok := stmt.Settings.LoadAndDelete(pendingKey{stmt})
	if !ok || db.Error != nil {
		return
	}
	pd := v.(*pending)
	ctx := stmt.Context
	var rows []keyedRow
	for _, r := range pd.rows {
		if r.current(ctx) == r.key {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return
	}
	_, returning := stmt.Clauses["RETURNING"]
	written := func(int64) bool { return false }
	switch {
	case db.RowsAffected == 0:
	// With RETURNING, GORM's scan of DO NOTHING counts rows it skipped, so only
	// none and a single row are sure; without it, RowsAffected is PostgreSQL's count.
	case !returning && db.RowsAffected == int64(pd.n), pd.n == 1:
		return
	default:
		keys := make([]int64, len(rows))
		for i, r := range rows {
			keys[i] = r.key
		}
		found, err := p.existingKeys(ctx, stmt, rows[0].m, keys)
		if err != nil {
			db.AddError(err)
			return
		}
		written = func(k int64) bool { return found[k] }
	}
	for i := range rows {
		if !written(rows[i].key) {
			rows[i].unset(ctx)
		}
	}
}

// existingKeys returns which of keys m's table holds, asking on stmt's connection.
func (p *Plugin) existingKeys(ctx context.Context, stmt *gorm.Statement, m *model, keys []int64) (map[int64]bool, error) {
	key := stmt.Quote(m.key.DBName)
	q := fmt.Sprintf("SELECT %s FROM %s WHERE %s = ANY($1::bigint[])", key, stmt.Quote(stmt.Table), key)
	rs, err := stmt.ConnPool.QueryContext(ctx, q, int64Array(keys))
	if err != nil {
		return nil, fmt.Errorf("repo: model %s: find the rows ON CONFLICT DO NOTHING wrote: %w", m.name(), err)
	}
	defer rs.Close()
	found := make(map[int64]bool, len(keys))
	for rs.Next() {
		var k int64
		if err := rs.Scan(&k); err != nil {
			return nil, fmt.Errorf("repo: model %s: find the rows ON CONFLICT DO NOTHING wrote: %w", m.name(), err)
		}
		found[k] = true
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("repo: model %s: find the rows ON CONFLICT DO NOTHING wrote: %w", m.name(), err)
	}
	return found, nil
}

// current returns the key the row holds now.
func (r *keyedRow) current(ctx context.Context) int64 {
	if r.mv != nil {
		v, ok := r.mv[r.m.key.DBName]
		if !ok {
			return 0
		}
		return toInt64(v)
	}
	v, _ := r.m.key.ValueOf(ctx, r.v)
	return toInt64(v)
}

// isJoinTable reports whether s is a many2many join table rather than a model of its
// own. GORM builds its join tables from the key fields of both sides, struct tags and
// all, so they carry copies of idgen tags that must not make them keyed models. A join
// table is either GORM's own, whose model type is an unnamed struct (reflect.StructOf),
// or a model given to SetupJoinTable or written like one: a composite primary key made
// only of foreign key columns of its belongs-to relations. A model with a single key of
// its own stays a model, with or without an idgen tag.
func isJoinTable(s *schema.Schema) bool {
	if s.ModelType != nil && s.ModelType.Kind() == reflect.Struct && s.ModelType.Name() == "" {
		return true
	}
	if len(s.PrimaryFields) < 2 {
		return false
	}
	s.Relationships.Mux.RLock()
	defer s.Relationships.Mux.RUnlock()
	foreign := map[string]bool{}
	for _, rel := range s.Relationships.Relations {
		if rel.Type != schema.BelongsTo {
			continue
		}
		for _, ref := range rel.References {
			if ref.ForeignKey != nil {
				foreign[ref.ForeignKey.DBName] = true
			}
		}
	}
	for _, f := range s.PrimaryFields {
		if !foreign[f.DBName] {
			return false
		}
	}
	return true
}
