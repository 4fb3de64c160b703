package repo

import (
	"context"
	"reflect"
	"sync"

	"gorm.io/gorm/schema"
)

// The batch writes read every column of every row. GORM's Field.ValueOf boxes each
// value into an interface (an allocation for most types) and reports whether it is
// zero; accessors read a column straight from the row struct instead, worked out once
// per model, and fall back to ValueOf where GORM does more than read a field.

// accessor reads one column of a row.
type accessor struct {
	f *schema.Field
	// index leads from the row struct to the field when every step is a plain field
	// (no embedded pointer, which may be nil); nil when ValueOf must be used: then,
	// or for a field with a GORM serializer, gorm is set.
	index []int
	gorm  bool
	// ptr is set when the field itself is a pointer (or map, slice…), which goes to
	// pgx as it is; other fields go as a pointer to the field, which pgx dereferences,
	// so that nothing is boxed.
	ptr bool
}

// accessors returns an accessor for each field of fields, from the model's cache.
func (m *model) accessors(cache *accessorCache, fields []*schema.Field) []accessor {
	out := make([]accessor, len(fields))
	for j, f := range fields {
		out[j] = cache.get(f)
	}
	return out
}

// accessorCache holds the accessor of each column, made on first use. It is safe for
// concurrent use.
type accessorCache struct {
	m sync.Map // *schema.Field → accessor
}

func (c *accessorCache) get(f *schema.Field) accessor {
	if a, ok := c.m.Load(f); ok {
		return a.(accessor)
	}
	a := accessor{f: f, gorm: true}
	if f.Serializer == nil {
		plain := true
		for _, i := range f.StructField.Index {
			if i < 0 {
				plain = false
			}
		}
		if plain {
			a.index, a.gorm = f.StructField.Index, false
			switch f.FieldType.Kind() {
			case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
				a.ptr = true
			}
		}
	}
	c.m.Store(f, a)
	return a
}

// field returns the field of rv (an addressable row struct), or false when GORM's
// ValueOf must read it.
func (a *accessor) field(rv reflect.Value) (reflect.Value, bool) {
	if a.gorm {
		return reflect.Value{}, false
	}
	if len(a.index) == 1 {
		return rv.Field(a.index[0]), true
	}
	return rv.FieldByIndex(a.index), true
}

// value returns the column's value in rv for pgx: the field itself when it is a
// pointer-like type, else a pointer to it, or what ValueOf returns.
func (a *accessor) value(ctx context.Context, rv reflect.Value) any {
	fv, ok := a.field(rv)
	if !ok {
		v, _ := a.f.ValueOf(ctx, rv)
		return v
	}
	if a.ptr {
		return fv.Interface()
	}
	return fv.Addr().Interface()
}

// isZero reports whether the column is zero in rv, as ValueOf would.
func (a *accessor) isZero(ctx context.Context, rv reflect.Value) bool {
	fv, ok := a.field(rv)
	if !ok {
		_, zero := a.f.ValueOf(ctx, rv)
		return zero
	}
	return fv.IsZero()
}
