package repo

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/seqrepo/seqrepo/idgen"
	"github.com/seqrepo/seqrepo/internal/keycheck"
	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// This file holds what the plugin learns about a model's key beyond its tag: the key
// column's own sequence, for a tag without one and for PluginConfig.AutoKeys, and the shared
// validator's view of a model (keyOf).

// resolvedKey is the answer for one schema whose key sequence comes from its column:
// m is the model with Config.Sequence resolved, or nil when the column has no sequence
// of its own and the model (an auto-keyed candidate) is left to GORM.
type resolvedKey struct{ m *model }

// entry returns the cached modelEntry of s, computing it on first use: parseModel's
// answer, checked against the shared key rule (keycheck) so that Plugin.Validate,
// repo.New, the create callback and migrations.Validate accept the same models; a tag
// that GORM does not map is an error instead of being ignored; and with PluginConfig.AutoKeys an
// untagged model whose single primary key is an integer is a candidate (auto).
func (p *Plugin) entry(s *schema.Schema) *modelEntry {
	if e, ok := p.models.Load(s); ok {
		return e.(*modelEntry)
	}
	e := &modelEntry{}
	e.m, e.err = parseModel(s)
	if e.m != nil || e.err != nil {
		if k := keyOf(s); k.Err != nil {
			e.m, e.err = nil, fmt.Errorf("repo: model %s: %w", modelName(s), k.Err)
		}
	} else if hidden := keycheck.HiddenTags(s.ModelType); len(hidden) > 0 {
		e.err = fmt.Errorf("repo: model %s: %w", modelName(s), keyOf(s).Err)
	} else if p.autoSize > 0 {
		if key := autoKey(s); key != nil {
			e.m = newModel(s, key, idgen.Config{AllocationSize: p.autoSize})
			e.auto = true
		}
	}
	if e.m != nil && p.allocSize > 0 {
		e.m.cfg.AllocationSize = p.allocSize
	}
	got, _ := p.models.LoadOrStore(s, e)
	return got.(*modelEntry)
}

// autoKey returns the key field PluginConfig.AutoKeys may key in s: its single primary key, an
// integer (keycheck.IntegerType). Composite keys (GORM's join tables among them), uuid
// and text keys are never candidates, and cost no query.
func autoKey(s *schema.Schema) *schema.Field {
	if len(s.PrimaryFields) != 1 {
		return nil
	}
	key := s.PrimaryFields[0]
	if !keycheck.IntegerType(key.FieldType) || key.DBName == "" || !key.Creatable {
		return nil
	}
	return key
}

// keyOf describes s's key for the shared validator, with the rule migrations.Validate
// applies to the Go type: one idgen tag, on the only primary key, an integer field; the
// tag parses. Config is the tag's, before PluginConfig.AllocationSize and resolution.
func keyOf(s *schema.Schema) keycheck.Model {
	k := keycheck.Model{Name: typeName(s), Table: s.Table}
	var tagged []*schema.Field
	for _, f := range s.Fields {
		if _, ok := f.Tag.Lookup(idgen.TagKey); ok {
			tagged = append(tagged, f)
		}
	}
	switch len(tagged) {
	case 0:
		if hidden := keycheck.HiddenTags(s.ModelType); len(hidden) > 0 {
			k.Err = keycheck.NoKey("field %s has an %s tag, but GORM does not map it (an unexported or ignored field, or a field of an unexported embedded struct): export the embedded struct", hidden[0], idgen.TagKey)
		} else {
			k.Err = keycheck.NoKey("no field has an %s tag", idgen.TagKey)
		}
		return k
	case 1:
	default:
		k.Err = keycheck.NoKey("%d fields have an %s tag; only the primary key may", len(tagged), idgen.TagKey)
		return k
	}
	key := tagged[0]
	k.Field, k.Column = key.BindName(), key.DBName
	if k.Err = keycheck.CheckKeyField(k.Field, key.FieldType, key.PrimaryKey, len(s.PrimaryFields)); k.Err != nil {
		return k
	}
	k.Config, k.Err = idgen.ParseTag(key.Tag.Get(idgen.TagKey))
	return k
}

// typeName is the model's Go type as reflect writes it ("models.Commit"), the name both
// validators report.
func typeName(s *schema.Schema) string {
	if s.ModelType != nil {
		return s.ModelType.String()
	}
	return s.Name
}

// newModel builds the model of s keyed on key with cfg: for a tag (parseModel), for a
// tag without a sequence once it is resolved, and for a PluginConfig.AutoKeys model.
func newModel(s *schema.Schema, key *schema.Field, cfg idgen.Config) *model {
	m := &model{schema: s, create: createSchema(s, key), key: key, cfg: cfg}
	for _, name := range m.create.DBNames {
		if f := m.create.FieldsByDBName[name]; f != nil && f.Creatable {
			m.columns = append(m.columns, f)
			kind := textKindOf(f)
			m.textKinds = append(m.textKinds, kind)
			if kind != noText {
				m.text = append(m.text, textField{f: f, index: f.StructField.Index, kind: kind})
			}
		}
	}
	return m
}

// resolve returns the model of s with its key sequence known, asking the catalog on q
// (the caller's own connection, so a caller in a transaction never waits for the pool)
// the first time: pg_get_serial_sequence of the key column (idgen.ColumnSequence). It
// returns nil, nil for an untagged schema, and for a PluginConfig.AutoKeys candidate whose
// column has no sequence of its own. Definite answers are cached per schema (so per
// model and *gorm.DB) and the first one stored wins; errors are not cached. Safe for
// concurrent use.
func (p *Plugin) resolve(ctx context.Context, s *schema.Schema, q idgen.Querier) (*model, error) {
	e := p.entry(s)
	if e.err != nil || e.m == nil || e.m.cfg.Sequence != "" {
		return e.m, e.err
	}
	if r, ok := p.resolved.Load(s); ok {
		return r.(*resolvedKey).m, nil
	}
	seq, err := idgen.ColumnSequence(ctx, q, s.Table, e.m.key.DBName)
	var m *model
	switch {
	case err == nil:
		c := *e.m
		c.cfg.Sequence = seq
		m = &c
	case errors.Is(err, idgen.ErrNoColumnSequence) && e.auto:
		// Left to GORM: a key seqrepo cannot draw from a sequence.
	default:
		return nil, fmt.Errorf("repo: model %s (table %s, key %s): %w", e.m.name(), s.Table, e.m.key.DBName, err)
	}
	r, _ := p.resolved.LoadOrStore(s, &resolvedKey{m: m})
	return r.(*resolvedKey).m, nil
}

// forget drops what resolve learnt about s, for AutoMigrate, which may have given the
// key column a sequence.
func (p *Plugin) forget(s *schema.Schema) { p.resolved.Delete(s) }

// candidate returns the model a Repository or Allocator call uses for s: the tagged
// model, or a PluginConfig.AutoKeys candidate even before its sequence is resolved (its first
// key resolves it, and fails when it has none).
func (p *Plugin) candidate(s *schema.Schema) (*model, error) {
	if m, err := p.model(s); m != nil || err != nil {
		return m, err
	}
	e := p.entry(s)
	if r, ok := p.resolved.Load(s); ok && r.(*resolvedKey).m == nil {
		return nil, nil
	}
	return e.m, e.err
}

// modelAllocator returns the shared allocator of m's sequence, resolving the sequence
// first (on q) when m's tag names none or m is auto-keyed.
func (p *Plugin) modelAllocator(ctx context.Context, m *model, q idgen.Querier) (*idgen.Allocator, error) {
	if m.cfg.Sequence == "" {
		r, err := p.resolve(ctx, m.schema, q)
		if err != nil {
			return nil, err
		}
		if r == nil {
			return nil, fmt.Errorf("repo: model %s (table %s, key %s): %w; give the key an %s tag naming its sequence, or make the column serial or identity",
				m.name(), m.schema.Table, m.key.DBName, idgen.ErrNoColumnSequence, idgen.TagKey)
		}
		m = r
	}
	return p.allocator(ctx, m.cfg, q)
}

// createCallback is the create callback: it resolves the key sequence of the
// statement's model on the statement's own connection when that is still unknown, so
// that assignKeys knows whether the model is keyed, then assigns the keys. A DryRun
// statement sends nothing, so it resolves nothing either.
func (p *Plugin) createCallback(db *gorm.DB) {
	stmt := db.Statement
	if db.Error == nil && stmt.Schema != nil && !stmt.DryRun {
		if _, err := p.resolve(stmt.Context, stmt.Schema, p.querier(stmt.ConnPool)); err != nil {
			db.AddError(err)
			return
		}
	}
	p.assignKeys(db)
}

// checkModel returns value's key as the shared validator sees it; auto says it is a
// PluginConfig.AutoKeys candidate, and ok is false when the plugin leaves value to GORM and
// Validate should skip it (with PluginConfig.AutoKeys: no integer primary key, or no sequence of
// its own).
func (p *Plugin) checkModel(value any) (k keycheck.Model, auto, ok bool) {
	s, err := parseSchema(p.db, value)
	if err != nil {
		t := reflect.TypeOf(value)
		name := "<nil>"
		if t != nil {
			name = t.String()
		}
		return keycheck.Model{Name: name, Err: err}, false, true
	}
	e := p.entry(s)
	k = keyOf(s)
	switch {
	case e.err != nil:
		if k.Err == nil {
			k.Err = e.err
		}
		return k, false, true
	case e.m == nil:
		return k, false, p.autoSize == 0 // without PluginConfig.AutoKeys, k.Err says why it is no keyed model
	}
	k.Err = nil
	k.Field, k.Column, k.Config = e.m.key.BindName(), e.m.key.DBName, e.m.cfg
	if r, found := p.resolved.Load(s); found {
		if r.(*resolvedKey).m == nil {
			return k, e.auto, false
		}
		k.Config = r.(*resolvedKey).m.cfg
	}
	return k, e.auto, true
}
