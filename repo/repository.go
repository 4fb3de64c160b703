package repo

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/seqrepo/seqrepo/idgen"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// maxBindParams is PostgreSQL's limit on the parameters of one statement (the wire
// protocol counts them in an int16).
const maxBindParams = 65535

// DefaultBatchSize is the number of rows per statement or COPY that CreateAll, CopySeq
// and Upsert use unless Config.BatchSize says otherwise. CreateAll lowers it further for
// wide models to stay within PostgreSQL's 65,535 bind parameters.
const DefaultBatchSize = 5000

// Repository is a generic repository for a model T whose primary key carries an idgen
// tag. Its methods are domain-level and take the context first; for any other query use
// DB, the *gorm.DB it was made with.
//
// Every write takes its keys from the Plugin's allocators, on the client, before the
// write, and leaves them in the caller's rows. A failed batch write (CreateAll, Copy,
// CopySeq, Upsert) writes nothing, and the keys it assigned are taken back out of the
// caller's rows — for CreateAll, out of the association rows GORM saved with them too
// (the foreign keys GORM copied from those keys are left: the next create sets them
// again). A unique violation is returned as a *DuplicateKeyError; idgen's errors
// are returned unchanged. Text PostgreSQL cannot store (a NUL byte, invalid UTF-8) in a
// string field fails a batch write with an *InvalidTextError, before anything is sent.
//
// A Repository is safe for concurrent use by multiple goroutines. One made by WithTx is
// bound to a transaction and, like the transaction, is for one goroutine at a time.
type Repository[T any] struct {
	db     *gorm.DB // a session without conditions, on the pool or on a transaction
	plugin *Plugin
	m      *model
	batch  int
	// related is the number of rows per statement for the rows GORM saves with T's in
	// CreateAll (associations, theirs in turn, join tables): see relatedBatchSize.
	related int
	table   *tableInfo // shared with every WithTx copy
	// upsertVia is how Upsert reads its input; only the benchmarks change it.
	upsertVia upsertMethod
}

// New returns a Repository for T, a struct type whose primary key carries an idgen
// tag (or, with PluginConfig.AutoKeys, an integer key whose column has a sequence of its own; a
// key sequence found from the column is resolved by the first write that needs a key,
// which fails with idgen.ErrNoColumnSequence when there is none). db must have the
// Plugin registered (db.Use(repo.NewPlugin())), else New returns
// ErrNoPlugin; New does not register it, since that changes a handle others share.
// New keeps db without any conditions chained on it, and derives a fresh statement for
// every call. It does not query the database: the sequence is checked when the first
// key is needed, or by Plugin.Validate. New uses the default Config; see NewWithConfig.
func New[T any](db *gorm.DB) (*Repository[T], error) {
	return NewWithConfig[T](db, Config{})
}

// NewWithConfig is New with the configuration cfg; an invalid cfg is an error naming
// the field and its fix.
func NewWithConfig[T any](db *gorm.DB, cfg Config) (*Repository[T], error) {
	typ := reflect.TypeFor[T]()
	if typ.Kind() != reflect.Struct {
		return nil, fmt.Errorf("repo: New[%s]: T must be a struct type", typ)
	}
	cfg, err := cfg.validate()
	if err != nil {
		return nil, fmt.Errorf("repo: NewWithConfig[%s]: %w", typ.Name(), err)
	}
	p, ok := db.Config.Plugins[pluginName].(*Plugin)
	if !ok {
		return nil, fmt.Errorf("repo: New[%s]: %w", typ.Name(), ErrNoPlugin)
	}
	s, err := parseSchema(db, new(T))
	if err != nil {
		return nil, wrapf(err, "New[%s]", typ.Name())
	}
	m, err := p.candidate(s)
	if err != nil {
		return nil, wrapf(err, "New[%s]", typ.Name())
	}
	if m == nil {
		return nil, fmt.Errorf("repo: New[%s]: no field has an %s tag; tag the primary key, e.g. %s:\"sequence:%s_id_seq;allocationSize:%d\"",
			typ.Name(), idgen.TagKey, idgen.TagKey, s.Table, idgen.DefaultAllocationSize)
	}
	return &Repository[T]{
		db:      db.Session(&gorm.Session{NewDB: true}),
		plugin:  p,
		m:       m,
		batch:   cfg.BatchSize,
		related: relatedBatchSize(s, cfg.BatchSize),
		table:   &tableInfo{},
	}, nil
}

// WithTx returns a Repository that runs every call in tx, a transaction from InTx or
// db.Transaction. Copy and Upsert use COPY when tx comes from InTx, multi-row INSERTs
// otherwise. Conditions chained on tx are not carried over.
func (r *Repository[T]) WithTx(tx *gorm.DB) *Repository[T] {
	c := *r
	c.db = tx.Session(&gorm.Session{NewDB: true})
	return &c
}

// DB returns the *gorm.DB the Repository runs on (the transaction, for one made by
// WithTx), without conditions, for queries the Repository does not offer.
func (r *Repository[T]) DB() *gorm.DB { return r.db }

// Key returns row's primary key, 0 when it has none yet.
func (r *Repository[T]) Key(row *T) int64 {
	v, _ := r.m.key.ValueOf(context.Background(), reflect.ValueOf(row).Elem())
	return toInt64(v)
}

// Create inserts row with GORM (hooks and associations included); a row without a key
// gets one first.
func (r *Repository[T]) Create(ctx context.Context, row *T) error {
	return translate(r.db.WithContext(ctx).Create(row).Error)
}

// CreateAll inserts rows with GORM in batches (hooks and associations included), all or
// nothing: in one transaction, or in a savepoint of the caller's. Rows without a key get
// one first, all from one allocation. A batch never has more rows than Config.BatchSize nor
// more than fit in 65,535 bind parameters, and neither has a statement of the
// association rows GORM saves with a batch (its CreateBatchSize is set for them).
func (r *Repository[T]) CreateAll(ctx context.Context, rows []T) error {
	if len(rows) == 0 {
		return nil
	}
	for i := range rows {
		if err := r.m.checkText(reflect.ValueOf(&rows[i]).Elem(), i); err != nil {
			return err
		}
	}
	ctx, journal := withKeyJournal(ctx) // keys the plugin gives to associations
	db := r.db.WithContext(ctx)
	assigned, err := r.assignKeys(ctx, db, rows)
	if err != nil {
		return err
	}
	size := r.createBatchSize()
	err = transaction(db, func(tx *gorm.DB) error {
		// GORM saves a batch's associations with Create, which CreateBatchSize splits.
		w := tx.Session(&gorm.Session{SkipDefaultTransaction: true, CreateBatchSize: r.related})
		return w.CreateInBatches(rows, size).Error
	})
	if err != nil {
		journal.undo(ctx)
		r.clearKeys(rows, assigned)
		return translate(err)
	}
	return nil
}

// createBatchSize is the batch size capped by the bind-parameter limit.
func (r *Repository[T]) createBatchSize() int {
	n := r.batch
	if cols := len(r.m.columns); cols > 0 && n > maxBindParams/cols {
		n = maxBindParams / cols
	}
	return max(n, 1)
}

// relatedBatchSize returns the number of rows per statement for the rows GORM saves
// with s's rows — associations, their associations in turn, many2many join rows —
// which GORM writes with one INSERT per relation and parent batch unless CreateBatchSize
// splits it: batch, capped so that a row of the widest of those models still fits
// 65,535 bind parameters.
func relatedBatchSize(s *schema.Schema, batch int) int {
	widest := 0
	seen := map[*schema.Schema]bool{}
	var walk func(s *schema.Schema)
	walk = func(s *schema.Schema) {
		if s == nil || seen[s] {
			return
		}
		seen[s] = true
		cols := 0
		for _, f := range s.Fields {
			if f.DBName != "" && f.Creatable {
				cols++
			}
		}
		widest = max(widest, cols)
		for _, rel := range relationsOf(&s.Relationships) {
			walk(rel.FieldSchema)
			walk(rel.JoinTable)
		}
	}
	walk(s)
	if widest > 0 && batch > maxBindParams/widest {
		batch = maxBindParams / widest
	}
	return max(batch, 1)
}

// relationsOf returns the relations of rs, those of its embedded structs included.
// GORM adds to them while it parses other models, under rs.Mux.
func relationsOf(rs *schema.Relationships) []*schema.Relationship {
	rs.Mux.RLock()
	defer rs.Mux.RUnlock()
	var out []*schema.Relationship
	var add func(rs *schema.Relationships)
	add = func(rs *schema.Relationships) {
		for _, rel := range rs.Relations {
			out = append(out, rel)
		}
		for _, e := range rs.EmbeddedRelations {
			add(e)
		}
	}
	add(rs)
	return out
}

// Get returns the row with key, or an error matching ErrNotFound.
func (r *Repository[T]) Get(ctx context.Context, key int64) (*T, error) {
	row := new(T)
	err := r.db.WithContext(ctx).Take(row, r.keyIs(key)).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, fmt.Errorf("repo: %s %d: %w", r.m.name(), key, ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return row, nil
}

// GetMany returns the rows with the given keys, in the order of keys, skipping keys that
// no row has and repeats of a key. The keys go in one array parameter, so there is no
// limit on their number.
func (r *Repository[T]) GetMany(ctx context.Context, keys []int64) ([]T, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	var found []T
	err := r.db.WithContext(ctx).
		Where(clause.Expr{SQL: "? = ANY(?::bigint[])", Vars: []any{r.keyColumn(), int64Array(keys)}}).
		Find(&found).Error
	if err != nil {
		return nil, err
	}
	byKey := make(map[int64]int, len(found))
	for i := range found {
		byKey[r.Key(&found[i])] = i
	}
	out := make([]T, 0, len(found))
	for _, k := range keys {
		if i, ok := byKey[k]; ok {
			out = append(out, found[i])
			delete(byKey, k)
		}
	}
	return out, nil
}

// Update writes every column of row (GORM's Select("*").Updates) to the row with row's
// key. It returns an error matching ErrNotFound when no row has the key, and an error
// when row has no key.
func (r *Repository[T]) Update(ctx context.Context, row *T) error {
	key := r.Key(row)
	if key == 0 {
		return fmt.Errorf("repo: Update %s: the row has no key (use Create or Save)", r.m.name())
	}
	res := r.db.WithContext(ctx).Model(row).Select("*").Updates(row)
	if res.Error != nil {
		return translate(res.Error)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("repo: Update %s %d: %w", r.m.name(), key, ErrNotFound)
	}
	return nil
}

// Save inserts row with a new key when it has none, and otherwise writes every column
// of the row with its key, inserting it if there is none: GORM's Save, which is Spring
// Data's save.
func (r *Repository[T]) Save(ctx context.Context, row *T) error {
	return translate(r.db.WithContext(ctx).Save(row).Error)
}

// Delete deletes the row with key (GORM's Delete: a model with gorm.DeletedAt is soft
// deleted). It returns an error matching ErrNotFound when no row has the key.
func (r *Repository[T]) Delete(ctx context.Context, key int64) error {
	res := r.db.WithContext(ctx).Delete(new(T), r.keyIs(key))
	if res.Error != nil {
		return translate(res.Error)
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("repo: Delete %s %d: %w", r.m.name(), key, ErrNotFound)
	}
	return nil
}

// List returns up to limit rows with keys greater than after, in key order: keyset
// pagination. Start with after = 0 and pass the key of the last row for the next page;
// a page shorter than limit is the last.
func (r *Repository[T]) List(ctx context.Context, after int64, limit int) ([]T, error) {
	if limit < 1 {
		return nil, fmt.Errorf("repo: List %s: limit %d, want 1 or more", r.m.name(), limit)
	}
	var rows []T
	err := r.db.WithContext(ctx).
		Where(clause.Gt{Column: r.keyColumn(), Value: after}).
		Order(clause.OrderByColumn{Column: r.keyColumn()}).
		Limit(limit).
		Find(&rows).Error
	return rows, err
}

// Count returns the number of rows (GORM's Count: soft-deleted rows are not counted).
func (r *Repository[T]) Count(ctx context.Context) (int64, error) {
	var n int64
	err := r.db.WithContext(ctx).Model(new(T)).Count(&n).Error
	return n, err
}

func (r *Repository[T]) keyColumn() clause.Column {
	return clause.Column{Table: clause.CurrentTable, Name: r.m.key.DBName}
}

func (r *Repository[T]) keyIs(key int64) clause.Expression {
	return clause.Eq{Column: r.keyColumn(), Value: key}
}

// assignKeys gives every row without a key a new key, all from one allocation on db's
// connection, and returns the indexes of the rows it gave keys to.
func (r *Repository[T]) assignKeys(ctx context.Context, db *gorm.DB, rows []T) ([]int, error) {
	var idx []int
	for i := range rows {
		if _, zero := r.m.key.ValueOf(ctx, reflect.ValueOf(&rows[i]).Elem()); zero {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return nil, nil
	}
	keys, err := r.plugin.next(ctx, r.m, db.Statement.ConnPool, len(idx))
	if err != nil {
		return nil, err
	}
	for j, i := range idx {
		if err := r.setKey(&rows[i], keys[j]); err != nil {
			return nil, err
		}
	}
	return idx, nil
}

// clearKeys takes back the keys assignKeys gave: the rows were not written.
func (r *Repository[T]) clearKeys(rows []T, idx []int) {
	for _, i := range idx {
		_ = r.setKey(&rows[i], 0)
	}
}

func (r *Repository[T]) setKey(row *T, key int64) error {
	if err := r.m.key.Set(context.Background(), reflect.ValueOf(row).Elem(), key); err != nil {
		return fmt.Errorf("repo: set key of %s: %w", r.m.name(), err)
	}
	return nil
}

// toInt64 converts a key field's value to int64.
func toInt64(v any) int64 {
	rv := reflect.Indirect(reflect.ValueOf(v))
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return int64(rv.Uint())
	}
	return 0
}

// int64Array is a bigint[] parameter. It is a driver.Valuer so that GORM passes it as
// one parameter instead of expanding the slice into a list.
type int64Array []int64

// Value returns the array in PostgreSQL's text form, {1,2,3}.
func (a int64Array) Value() (driver.Value, error) {
	var b strings.Builder
	b.Grow(len(a)*8 + 2)
	b.WriteByte('{')
	for i, k := range a {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(k, 10))
	}
	b.WriteByte('}')
	return b.String(), nil
}
