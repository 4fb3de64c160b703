package repo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/seqrepo/seqrepo/idgen"
	"github.com/seqrepo/seqrepo/internal/keycheck"
	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// pluginName is the name the Plugin registers under in gorm.Config.Plugins.
const pluginName = "seqrepo"

// callbackName is the create callback the Plugin registers.
const callbackName = "seqrepo:assign_keys"

// Plugin is a GORM plugin that assigns primary keys on the client, from blocks reserved
// in PostgreSQL sequences, to every model whose primary key carries an idgen tag:
//
//	type Commit struct {
//		ID int64 `gorm:"primaryKey" idgen:"sequence:commits_id_seq;allocationSize:50"`
//		...
//	}
//
// Register it once per *gorm.DB with db.Use(repo.NewPlugin()). From then on every create
// of such a model — db.Create, db.CreateInBatches, CreateBatchSize sessions, db.Save of
// a row without a key, gorm.G[T], and the rows GORM creates for associations — gets its
// keys before the INSERT, all keys of one statement from one idgen.Allocator.NextN (at
// most one round trip per statement). The INSERT names the key column and has no
// RETURNING for it. A key that is already set (non-zero) is kept.
//
// The rule the plugin keeps: after any create through GORM, every struct or map row
// holds the key its row has in the table, or the call returns an error. A row that was
// not written keeps its zero key, as GORM leaves it (or holds the existing row's key). A
// statement that sends nothing reserves nothing. Otherwise the plugin is invisible:
//
//   - Select and Omit that leave the key column out (db.Select("Name").Create,
//     db.Omit("ID").Create, gorm.G[T](db).Select(…).Create) get the key column back:
//     the key seqrepo assigned is the one written, so the table needs no DEFAULT for
//     it, and the associations saved after the row reference it. When the key column
//     cannot be written at all (Omit("*"), a key field GORM may not create), the
//     statement is GORM's own: no key is assigned and GORM reads the database's back.
//   - ON CONFLICT (clause.OnConflict) whose only target is the key column changes
//     nothing: a row that conflicts holds the key of the row it conflicts with. DO
//     UPDATE (DoUpdates, UpdateAll) on another target adds the key column to RETURNING,
//     so GORM reads the updated row's key back into the struct, in the INSERT's own
//     round trip, as it does without the plugin. After DO NOTHING, every row given a
//     key that was not written gets its zero key back: RowsAffected says when all rows
//     or none were written, else one query on the statement's own connection finds
//     which keys are in the table. DO UPDATE … WHERE on more than one row, and DO
//     UPDATE on a slice of maps, return an error: GORM cannot tell which row each
//     returned key belongs to.
//   - A DryRun session and db.ToSQL are left to GORM: no key is reserved, none is
//     written into the rows, and the SQL is what GORM builds without the plugin.
//   - Join tables of many2many associations, GORM's own and SetupJoinTable models,
//     are not keyed models: the idgen tags GORM copies onto them from the keys of both
//     sides are ignored. A join model with a single key of its own is a model.
//   - Hooks: keys are assigned before every other create callback, so BeforeSave and
//     BeforeCreate see the row's key. A hook that sets a different non-zero key keeps
//     it: that key is written and stays in the struct.
//   - A key that the key field cannot hold (an int32 key past 2,147,483,647, any
//     unsigned key below 0; named types of integers alike) is an error matching
//     ErrKeyOutOfRange before any key is set or anything is written, never a wrap.
//
// There is one idgen.Allocator per sequence configuration, shared by the whole *gorm.DB
// and made on first use. Keys are allocated on the statement's own connection: through
// the shared allocator when the statement runs on the pool (so concurrent statements
// share one refill), through Allocator.WithTx when it runs in a transaction or on a
// *sql.Conn (so a pool whose last connection the transaction holds cannot deadlock).
// For the same reason such a statement never waits for another goroutine that is
// making the allocator: it checks the sequence on its own connection, and the first
// allocator made is the one kept. Keys are assigned before GORM's own default
// transaction begins.
//
// A Plugin belongs to the one *gorm.DB it was registered on (and the sessions and
// transactions derived from it). All its methods are safe for concurrent use.
type Plugin struct {
	validate  []any // PluginConfig.Validate: the models Initialize checks
	allocSize int   // PluginConfig.AllocationSize: the override, 0 for the tags' sizes
	autoSize  int   // PluginConfig.AutoKeys: the allocation size, 0 when off
	cfgErr    error // PluginConfig.validate's verdict, reported by Initialize

	// Set once by Initialize, before the callback is registered; read-only afterwards.
	db   *gorm.DB      // a fresh session of the *gorm.DB the plugin is registered on
	pool idgen.Querier // the pool the shared allocators refill on (unwrapped ConnPool)

	models   sync.Map // *schema.Schema → *modelEntry
	resolved sync.Map // *schema.Schema → *resolvedKey, for keys whose sequence is the column's own

	mu     sync.Mutex                        // protects allocs and making; never held across a round trip
	allocs map[idgen.Config]*idgen.Allocator // the shared allocator of each sequence configuration, once made
	making map[idgen.Config]*making          // a pool caller's idgen.New in flight, which other pool callers wait for
}

// modelEntry caches parseModel's answer for one schema: m is nil for an untagged model.
// auto marks a PluginConfig.AutoKeys candidate (untagged, single integer key), keyed only once
// resolve has found its column's own sequence.
type modelEntry struct {
	m    *model
	err  error
	auto bool
}

// making is one pool caller's idgen.New. done is closed when err is set; nil means the
// allocator is in Plugin.allocs.
type making struct {
	done chan struct{}
	err  error
}

// NewPlugin returns a Plugin with the default configuration, to register with db.Use.
func NewPlugin() *Plugin { return NewPluginWithConfig(PluginConfig{}) }

// NewPluginWithConfig returns a Plugin configured by cfg, to register with db.Use. It
// returns no error so that it fits in db.Use(...): Initialize (db.Use) reports an
// invalid cfg, the one place the plugin's configuration and its Validate models are
// checked.
func NewPluginWithConfig(cfg PluginConfig) *Plugin {
	return &Plugin{
		validate:  append([]any(nil), cfg.Validate...),
		allocSize: cfg.AllocationSize,
		autoSize:  cfg.AutoKeys,
		cfgErr:    cfg.validate(),
		allocs:    map[idgen.Config]*idgen.Allocator{},
		making:    map[idgen.Config]*making{},
	}
}

// Name returns the name the plugin registers under, "seqrepo". It implements gorm.Plugin.
func (p *Plugin) Name() string { return pluginName }

// Initialize registers the create callback on db. It implements gorm.Plugin: call it
// through db.Use. It returns an error when its PluginConfig is invalid, when the plugin
// is already registered on another *gorm.DB, or when the models of PluginConfig.Validate
// have problems (an *idgen.CheckError listing them all, each naming its model).
func (p *Plugin) Initialize(db *gorm.DB) error {
	if p.cfgErr != nil {
		return p.cfgErr
	}
	if p.db != nil {
		return errors.New("repo: this Plugin is already registered on a *gorm.DB; make one Plugin per *gorm.DB")
	}
	p.db = db.Session(&gorm.Session{NewDB: true})
	p.pool = unwrapPool(db.ConnPool)
	if len(p.validate) > 0 {
		if err := p.Validate(context.Background(), p.validate...); err != nil {
			p.db, p.pool = nil, nil
			return err
		}
	}
	return p.registerCallbacks(db)
}

// Validate checks every given model (a struct value or pointer) with the same validator
// as migrations.Validate, so the two give the same verdict on the same models: the
// model's idgen tag parses and is on its only primary key, an integer field (int, int8 …
// int64, uint … uint64, or a type defined on one); the sequence (the tag's, or the key
// column's own for a tag without one and for PluginConfig.AutoKeys) exists, is NO CYCLE, has
// INCREMENT equal to the allocation size and can reserve a block; and the block its next
// nextval reserves lies above the table's largest key. Tables and columns are GORM's
// (its NamingStrategy, TableName methods).
//
// It reports every problem at once as an *idgen.CheckError with one *idgen.KeyError per
// offending model, naming the model, table, column and sequence, and for a mismatch or
// a sequence behind the table's keys the migrations.NewAdoption call that fixes it;
// errors.Is finds idgen's sentinels (idgen.ErrIncrementMismatch, idgen.ErrSequenceBehind,
// idgen.ErrNoKeyTag, …) in it. Without PluginConfig.AutoKeys a model without an idgen tag is a
// problem; with it, models the plugin leaves to GORM are skipped. Validate returns nil
// when all are sound.
//
// ctx bounds the checks; if it ends, Validate returns ctx.Err() alone. Validate must be
// called after Initialize. It only reads, and is safe for concurrent use.
func (p *Plugin) Validate(ctx context.Context, models ...any) error {
	if p.db == nil {
		return errors.New("repo: Plugin.Validate called before the plugin was registered with db.Use")
	}
	var problems []error
	for _, v := range models {
		k, auto, ok := p.checkModel(v)
		if !ok {
			continue
		}
		if err := keycheck.Check(ctx, p.pool, k); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if auto && errors.Is(err, idgen.ErrNoColumnSequence) {
				continue // left to GORM
			}
			if len(problems) == 0 {
				if down := keycheck.Unreachable(ctx, p.pool); down != nil {
					return fmt.Errorf("repo: Plugin.Validate: cannot query the database: %w", down)
				}
			}
			problems = append(problems, err)
		}
	}
	return keycheck.Errors(problems)
}

// Allocator returns the shared allocator for model's sequence (model is a struct value
// or pointer of a tagged model), making it on first use; ctx bounds that. Use it to read
// Stats or to reserve keys by hand; it refills on the pool, so inside a transaction call
// WithTx(tx) on it.
func (p *Plugin) Allocator(ctx context.Context, model any) (*idgen.Allocator, error) {
	if p.db == nil {
		return nil, errors.New("repo: Plugin.Allocator called before the plugin was registered with db.Use")
	}
	s, err := parseSchema(p.db, model)
	if err != nil {
		return nil, err
	}
	m, err := p.candidate(s)
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("repo: model %T: primary key has no %s tag", model, idgen.TagKey)
	}
	return p.modelAllocator(ctx, m, p.pool)
}

// model returns the cached model of s, nil for a schema the plugin leaves to GORM: an
// untagged one, or a PluginConfig.AutoKeys candidate whose sequence is unknown yet or none (the
// create callback resolves it first). For a tag without a sequence it is the model with
// the sequence resolved once known, else the tag's (modelAllocator resolves it).
func (p *Plugin) model(s *schema.Schema) (*model, error) {
	e := p.entry(s)
	if e.err != nil || e.m == nil || e.m.cfg.Sequence != "" {
		return e.m, e.err
	}
	if r, ok := p.resolved.Load(s); ok {
		return r.(*resolvedKey).m, nil
	}
	if e.auto {
		return nil, nil
	}
	return e.m, nil
}

// assignKeys is the create callback: it gives every row of a tagged model that has no
// key one, all from one NextN, and points the statement at the model's create schema,
// in which the key is a plain column. A DryRun statement (ToSQL too) sends nothing, so
// it is left to GORM and reserves nothing; a Select or Omit that leaves the key out gets
// the key back (includeKey); an ON CONFLICT clause gets the key read back or reconciled
// (planConflict).
func (p *Plugin) assignKeys(db *gorm.DB) {
	stmt := db.Statement
	if db.Error != nil || stmt.Schema == nil || db.DryRun {
		return
	}
	m, err := p.model(stmt.Schema)
	if err != nil {
		db.AddError(err)
		return
	}
	if m == nil {
		return
	}
	plan, err := planConflict(stmt, m)
	if err != nil {
		db.AddError(err)
		return
	}
	if !includeKey(stmt, m) {
		return // the key column cannot be written: GORM's own statement
	}
	stmt.Schema = m.create
	rows, err := p.assign(stmt.Context, m, stmt.ConnPool, stmt.ReflectValue)
	if err != nil {
		db.AddError(err)
		return
	}
	if plan.returning {
		returnKey(stmt, m)
	}
	if plan.reconcile && len(rows) > 0 {
		stmt.Settings.Store(pendingKey{stmt}, &pending{rows: rows, n: rowCount(stmt.ReflectValue)})
	}
}

// assign gives every row in rv (a struct, a slice or array of structs or pointers, or a
// map or slice of maps as GORM accepts them) whose key is zero a new key from one NextN
// on pool's allocator, records them in ctx's keyJournal, if any, and returns them. It
// returns idgen's errors unchanged.
func (p *Plugin) assign(ctx context.Context, m *model, pool gorm.ConnPool, rv reflect.Value) ([]keyedRow, error) {
	var rows []keyedRow
	add := func(v reflect.Value) {
		v = reflect.Indirect(v)
		switch v.Kind() {
		case reflect.Struct:
			if _, zero := m.key.ValueOf(ctx, v); zero {
				rows = append(rows, keyedRow{m: m, v: v})
			}
		case reflect.Map:
			if mv, ok := v.Interface().(map[string]any); ok && mapKeyZero(mv, m.key) {
				prev, had := mv[m.key.DBName]
				rows = append(rows, keyedRow{m: m, mv: mv, prev: prev, had: had})
			}
		}
	}
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		for i := 0; i < rv.Len(); i++ {
			add(rv.Index(i))
		}
	default:
		add(rv)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	keys, err := p.next(ctx, m, pool, len(rows))
	if err != nil {
		return nil, err
	}
	if j, ok := ctx.Value(keyJournalKey{}).(*keyJournal); ok {
		j.record(rows)
	}
	for i := range rows {
		rows[i].key = keys[i]
		if err := rows[i].set(ctx, keys[i]); err != nil {
			return nil, fmt.Errorf("repo: set key of %s: %w", m.name(), err)
		}
	}
	return rows, nil
}

// keyedRow is a row of model m to which assign gives a key: a struct (v) or a map (mv,
// with its entry under the key column before, if it had one), and the key it gave.
type keyedRow struct {
	m    *model
	v    reflect.Value
	mv   map[string]any
	prev any
	had  bool
	key  int64
}

// set gives the row key k.
func (r *keyedRow) set(ctx context.Context, k int64) error {
	if r.mv != nil {
		r.mv[r.m.key.DBName] = k
		return nil
	}
	return r.m.key.Set(ctx, r.v, k)
}

// unset takes the key back out of the row.
func (r *keyedRow) unset(ctx context.Context) {
	if r.mv == nil {
		_ = r.m.key.Set(ctx, r.v, int64(0))
	} else if r.had {
		r.mv[r.m.key.DBName] = r.prev
	} else {
		delete(r.mv, r.m.key.DBName)
	}
}

// keyJournal records the rows to which assign gave keys while a CreateAll runs (its
// context carries the journal under keyJournalKey), so that a failed CreateAll takes
// the keys back out of the association rows GORM saved with its own. It is safe for
// concurrent use: GORM saves associations on the calling goroutine, but a hook may not.
type keyJournal struct {
	mu   sync.Mutex // protects rows
	rows []keyedRow
}

type keyJournalKey struct{}

// withKeyJournal returns ctx carrying a new keyJournal, and the journal.
func withKeyJournal(ctx context.Context) (context.Context, *keyJournal) {
	j := &keyJournal{}
	return context.WithValue(ctx, keyJournalKey{}, j), j
}

func (j *keyJournal) record(rows []keyedRow) {
	j.mu.Lock()
	j.rows = append(j.rows, rows...)
	j.mu.Unlock()
}

// undo takes back every key recorded, latest first.
func (j *keyJournal) undo(ctx context.Context) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := len(j.rows) - 1; i >= 0; i-- {
		j.rows[i].unset(ctx)
	}
	j.rows = nil
}

// mapKeyZero reports whether a map row names no key, by field or column name, or a zero one.
func mapKeyZero(row map[string]any, key *schema.Field) bool {
	for _, name := range []string{key.DBName, key.Name} {
		if v, ok := row[name]; ok && v != nil {
			return reflect.ValueOf(v).IsZero()
		}
	}
	return true
}

// next returns n new keys for m, allocated on pool: through the shared allocator when
// pool is the plugin's own pool, else through Allocator.WithTx(pool). It is where the
// plugin, CreateAll, Copy and Upsert all get their keys, so it also refuses keys that
// m's key field cannot hold (ErrKeyOutOfRange) before any is set or written.
func (p *Plugin) next(ctx context.Context, m *model, pool gorm.ConnPool, n int) ([]int64, error) {
	q := p.querier(pool)
	a, err := p.modelAllocator(ctx, m, q)
	if err != nil {
		keys, handled, aerr := p.adoptFresh(ctx, m, q, n, err)
		if !handled {
			return nil, err
		}
		if aerr != nil {
			return nil, aerr
		}
		if err := m.checkRange(keys); err != nil {
			return nil, err
		}
		return keys, nil
	}
	if !samePool(q, p.pool) {
		a = a.WithTx(q)
	}
	keys, err := a.NextN(ctx, n)
	if err != nil {
		again, handled, aerr := p.adoptRecreated(ctx, m, q, a, n, err)
		if !handled {
			return nil, err
		}
		if aerr != nil {
			return nil, aerr
		}
		keys = again
	}
	if err := m.checkRange(keys); err != nil {
		return nil, err
	}
	return keys, nil
}

// querier returns the Querier a statement on pool should allocate through: pool without
// GORM's prepared-statement wrappers.
func (p *Plugin) querier(pool gorm.ConnPool) idgen.Querier {
	if pool == nil {
		return p.pool
	}
	return unwrapPool(pool)
}

// unwrapPool strips GORM's prepared-statement wrappers: allocation queries gain nothing
// from being prepared, and the shared allocator is recognised by its plain pool.
func unwrapPool(pool gorm.ConnPool) gorm.ConnPool {
	for {
		switch p := pool.(type) {
		case *gorm.PreparedStmtDB:
			pool = p.ConnPool
		case *gorm.PreparedStmtTX:
			pool = p.Tx
		default:
			return pool
		}
	}
}

// allocator returns the shared allocator for cfg, making it on first use.
//
// q is the connection the caller is on. idgen.New checks the sequence with a query on
// the Querier it is given, and the allocator then refills through that Querier, which
// must be the pool. Callers on the pool wait for one idgen.New; if it fails because its
// caller's context ended, the next waiter tries again, else they all get its error (and
// a later call retries).
//
// A caller on a transaction or connection it holds (q is not the pool) never waits for
// another goroutine's idgen.New, which may itself be waiting for a pool connection that
// only this caller can give back (a one-connection pool, or the pool's last). It makes
// an allocator of its own, with the check routed to q (only New's own query sees the
// routing context), and keeps whichever allocator is installed first.
func (p *Plugin) allocator(ctx context.Context, cfg idgen.Config, q idgen.Querier) (*idgen.Allocator, error) {
	held := !samePool(q, p.pool)
	for {
		p.mu.Lock()
		if a := p.allocs[cfg]; a != nil {
			p.mu.Unlock()
			return a, nil
		}
		if held {
			p.mu.Unlock()
			a, err := idgen.New(context.WithValue(ctx, checkOnKey{}, q), poolQuerier{p.pool}, cfg)
			if err != nil {
				return nil, err
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			return p.installLocked(cfg, a), nil
		}
		m := p.making[cfg]
		if m == nil {
			m = &making{done: make(chan struct{})}
			p.making[cfg] = m
			p.mu.Unlock()
			a, err := idgen.New(ctx, poolQuerier{p.pool}, cfg)
			p.mu.Lock()
			delete(p.making, cfg)
			if err == nil {
				a = p.installLocked(cfg, a)
			}
			m.err = err
			p.mu.Unlock()
			close(m.done)
			return a, err
		}
		p.mu.Unlock()
		select {
		case <-m.done:
			if m.err != nil && !errors.Is(m.err, context.Canceled) && !errors.Is(m.err, context.DeadlineExceeded) {
				return nil, m.err
			}
			// Made, or the maker gave up: look again, and make it ourselves if need be.
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// installLocked makes a the shared allocator for cfg unless one is already installed,
// and returns the one that is. p.mu must be held.
func (p *Plugin) installLocked(cfg idgen.Config, a *idgen.Allocator) *idgen.Allocator {
	if have := p.allocs[cfg]; have != nil {
		return have
	}
	p.allocs[cfg] = a
	return a
}

// samePool reports whether a and b are the same connection pool, transaction or connection.
func samePool(a, b idgen.Querier) bool {
	if a == nil || b == nil || !reflect.TypeOf(a).Comparable() || !reflect.TypeOf(b).Comparable() {
		return a == nil && b == nil
	}
	return a == b
}

// checkOnKey marks the context of idgen.New's check with the Querier it must run on.
type checkOnKey struct{}

// poolQuerier is the Querier shared allocators are made with: it queries the pool,
// except for a query whose context carries a checkOnKey Querier.
type poolQuerier struct{ pool idgen.Querier }

// QueryContext runs query on the Querier in ctx's checkOnKey, else on the pool.
func (q poolQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if on, ok := ctx.Value(checkOnKey{}).(idgen.Querier); ok {
		return on.QueryContext(ctx, query, args...)
	}
	return q.pool.QueryContext(ctx, query, args...)
}

var _ gorm.Plugin = (*Plugin)(nil)
