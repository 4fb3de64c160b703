package repo

import (
	"fmt"
	"slices"

	"github.com/seqrepo/seqrepo/idgen"
	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// model is what the plugin knows about one GORM schema whose primary key carries an
// idgen tag. It is built once per *schema.Schema and never changed, so it is safe to
// share between goroutines.
type model struct {
	// schema is GORM's cached schema, shared with every other user of the *gorm.DB.
	// seqrepo never writes to it.
	schema *schema.Schema
	// create is the schema create statements run with: schema itself when the key is
	// already a plain column, else a copy in which the key has no database default
	// (see createSchema).
	create *schema.Schema
	// key is the primary key field of schema.
	key *schema.Field
	cfg idgen.Config
	// columns are the fields of create that an INSERT can write, in column order, the
	// key included.
	columns []*schema.Field
	// textKinds[i] says how columns[i] holds text that goes to PostgreSQL just as it
	// is (noText for any other column); text lists those columns for checkText.
	textKinds []textKind
	text      []textField
}

// name is the model's Go type name, for errors.
func (m *model) name() string { return modelName(m.schema) }

func modelName(s *schema.Schema) string {
	if s.ModelType != nil && s.ModelType.Name() != "" {
		return s.ModelType.Name()
	}
	return s.Name
}

// parseSchema returns GORM's cached schema of value (a struct, a pointer to one, or a
// slice of either) on db.
func parseSchema(db *gorm.DB, value any) (*schema.Schema, error) {
	stmt := &gorm.Statement{DB: db}
	if err := stmt.Parse(value); err != nil {
		return nil, fmt.Errorf("repo: parse model %T: %w", value, err)
	}
	return stmt.Schema, nil
}

// parseModel finds the idgen tag of s. It returns nil, nil when no field of s has one,
// and an error when the tag is on something other than the single integer primary key
// or does not parse.
func parseModel(s *schema.Schema) (*model, error) {
	if isJoinTable(s) { // tags GORM copied from the keys of both sides
		return nil, nil
	}
	var tagged []*schema.Field
	for _, f := range s.Fields {
		if _, ok := f.Tag.Lookup(idgen.TagKey); ok {
			tagged = append(tagged, f)
		}
	}
	if len(tagged) == 0 {
		return nil, nil
	}
	name := modelName(s)
	if len(tagged) > 1 {
		return nil, fmt.Errorf("repo: model %s: %d fields have an %s tag; only the primary key may", name, len(tagged), idgen.TagKey)
	}
	key := tagged[0]
	if !key.PrimaryKey || len(s.PrimaryFields) != 1 {
		return nil, fmt.Errorf("repo: model %s: field %s has an %s tag but is not the only primary key", name, key.Name, idgen.TagKey)
	}
	if key.GORMDataType != schema.Int && key.GORMDataType != schema.Uint {
		return nil, fmt.Errorf("repo: model %s: key %s is %s; an %s key must be an integer", name, key.Name, key.FieldType, idgen.TagKey)
	}
	cfg, err := idgen.ParseTag(key.Tag.Get(idgen.TagKey))
	if err != nil {
		return nil, fmt.Errorf("repo: model %s field %s: %w", name, key.Name, err)
	}
	return newModel(s, key, cfg), nil
}

// createSchema returns the schema that create statements for s should use, given that
// the client assigns key.
//
// GORM treats an integer primary key without an autoIncrement tag as assigned by the
// database: the field gets HasDefaultValue and goes into FieldsWithDefaultDBValue, so
// every INSERT leaves the column out when it is zero and ends in RETURNING "id". When
// the model says autoIncrement:false there is nothing to do and s itself is returned.
// Otherwise the result is a copy of s whose key field (itself a copy) is a plain column:
// the INSERT always names it and RETURNING lists only the other database defaults, if
// any.
//
// s is GORM's cached schema, shared by every goroutine, so it is never written to; the
// copy is built once per schema and then only read. GORM itself changes a published
// schema only while parsing another model's relations, and then under
// s.Relationships.Mux, so the copy is taken under that lock's read side. The copy
// shares everything but the key field and the slices and maps that point to it.
func createSchema(s *schema.Schema, key *schema.Field) *schema.Schema {
	s.Relationships.Mux.RLock()
	defer s.Relationships.Mux.RUnlock()
	if !key.HasDefaultValue && !key.AutoIncrement && !slices.Contains(s.FieldsWithDefaultDBValue, key) {
		return s
	}
	k := *key
	k.HasDefaultValue = false
	k.AutoIncrement = false
	k.DefaultValue = ""
	k.DefaultValueInterface = nil
	swap := func(f *schema.Field) *schema.Field {
		if f == key {
			return &k
		}
		return f
	}
	swapAll := func(fs []*schema.Field) []*schema.Field {
		out := make([]*schema.Field, len(fs))
		for i, f := range fs {
			out[i] = swap(f)
		}
		return out
	}
	swapMap := func(m map[string]*schema.Field) map[string]*schema.Field {
		out := make(map[string]*schema.Field, len(m))
		for name, f := range m {
			out[name] = swap(f)
		}
		return out
	}
	c := &schema.Schema{
		Name:                    s.Name,
		ModelType:               s.ModelType,
		Table:                   s.Table,
		PrioritizedPrimaryField: swap(s.PrioritizedPrimaryField),
		DBNames:                 s.DBNames,
		PrimaryFields:           swapAll(s.PrimaryFields),
		PrimaryFieldDBNames:     s.PrimaryFieldDBNames,
		Fields:                  swapAll(s.Fields),
		FieldsByName:            swapMap(s.FieldsByName),
		FieldsByBindName:        swapMap(s.FieldsByBindName),
		FieldsByDBName:          swapMap(s.FieldsByDBName),
		CreateClauses:           s.CreateClauses,
		QueryClauses:            s.QueryClauses,
		UpdateClauses:           s.UpdateClauses,
		DeleteClauses:           s.DeleteClauses,
		BeforeCreate:            s.BeforeCreate,
		AfterCreate:             s.AfterCreate,
		BeforeUpdate:            s.BeforeUpdate,
		AfterUpdate:             s.AfterUpdate,
		BeforeDelete:            s.BeforeDelete,
		AfterDelete:             s.AfterDelete,
		BeforeSave:              s.BeforeSave,
		AfterSave:               s.AfterSave,
		AfterFind:               s.AfterFind,
	}
	for _, f := range s.FieldsWithDefaultDBValue {
		if f != key {
			c.FieldsWithDefaultDBValue = append(c.FieldsWithDefaultDBValue, f)
		}
	}
	// Relationships holds a mutex, so it is rebuilt field by field. The relations map is
	// shared, not copied, so that relations GORM adds later are seen here too.
	c.Relationships.HasOne = s.Relationships.HasOne
	c.Relationships.BelongsTo = s.Relationships.BelongsTo
	c.Relationships.HasMany = s.Relationships.HasMany
	c.Relationships.Many2Many = s.Relationships.Many2Many
	c.Relationships.Relations = s.Relationships.Relations
	c.Relationships.EmbeddedRelations = s.Relationships.EmbeddedRelations
	return c
}
