package keycheck

import (
	"fmt"
	"go/ast"
	"reflect"
	"strings"
	"time"

	"database/sql/driver"

	"github.com/seqrepo/seqrepo/idgen"
)

// field is one column of a model as GORM maps it.
type field struct {
	path   string // Go field path, "Base.ID"
	column string
	typ    reflect.Type
	pk     bool // a primaryKey tag
	tag    string
	tagged bool
}

// FromType describes the key of the model whose Go type is t (pointers are followed)
// the way GORM's default schema parsing does, without GORM: exported fields only, of
// the struct and of the structs it embeds (anonymously, or with gorm:"embedded", with
// embeddedPrefix), columns named by gorm:"column:…" or GORM's default NamingStrategy,
// the table by a TableName() string method or that NamingStrategy, the primary key by
// gorm:"primaryKey" or else the column "id". A model parsed by GORM with another
// NamingStrategy may map to other names: validate it with repo's Plugin.Validate.
func FromType(t reflect.Type) Model {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	m := Model{Name: "<nil>"}
	if t != nil {
		m.Name = t.String()
	}
	if t == nil || t.Kind() != reflect.Struct {
		m.Err = NoKey("%s is not a struct", m.Name)
		return m
	}
	m.Table = tableName(t)
	var fields []field
	collect(t, nil, "", &fields)
	var tagged, pks []field
	for _, f := range fields {
		if f.tagged {
			tagged = append(tagged, f)
		}
		if f.pk {
			pks = append(pks, f)
		}
	}
	if len(pks) == 0 {
		for _, f := range fields {
			if f.column == "id" {
				f.pk = true
				pks = append(pks, f)
				break
			}
		}
	}
	switch len(tagged) {
	case 0:
		if hidden := HiddenTags(t); len(hidden) > 0 {
			m.Err = NoKey("field %s has an %s tag, but GORM does not map it (an unexported or ignored field, or a field of an unexported embedded struct): export the embedded struct", hidden[0], idgen.TagKey)
			return m
		}
		m.Err = NoKey("no field has an %s tag", idgen.TagKey)
		return m
	case 1:
	default:
		names := make([]string, len(tagged))
		for i, f := range tagged {
			names[i] = f.path
		}
		m.Err = NoKey("%d fields have an %s tag (%s); only the primary key may", len(tagged), idgen.TagKey, strings.Join(names, ", "))
		return m
	}
	key := tagged[0]
	m.Field, m.Column = key.path, key.column
	m.Err = CheckKeyField(key.path, key.typ, key.pk || (len(pks) == 1 && pks[0].column == key.column), len(pks))
	if m.Err != nil {
		return m
	}
	cfg, err := idgen.ParseTag(key.tag)
	if err != nil {
		m.Err = err
		return m
	}
	m.Config = cfg
	return m
}

// CheckKeyField is the rule for the field that carries the idgen tag: the model's only
// primary key, of an integer type (IntegerType). It returns an error matching
// idgen.ErrNoKeyTag, or nil.
func CheckKeyField(name string, typ reflect.Type, primary bool, primaries int) error {
	if !primary || primaries != 1 {
		return NoKey("field %s has an %s tag but is not the only primary key", name, idgen.TagKey)
	}
	if !IntegerType(typ) {
		return NoKey("key %s is %s; an %s key must be an integer (int, int8 … int64, uint … uint64)", name, typ, idgen.TagKey)
	}
	return nil
}

var (
	timeType   = reflect.TypeFor[time.Time]()
	valuerType = reflect.TypeFor[driver.Valuer]()
)

// collect appends the columns of struct t, as GORM's schema parsing maps them.
func collect(t reflect.Type, path []string, prefix string, out *[]field) {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !ast.IsExported(sf.Name) {
			continue // GORM maps exported fields only
		}
		settings := tagSettings(sf.Tag.Get("gorm"))
		if v, ok := settings["-"]; ok && (v == "-" || strings.EqualFold(strings.TrimSpace(v), "all")) {
			continue
		}
		p := append(path[:len(path):len(path)], sf.Name)
		ft := sf.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		_, embedded := settings["EMBEDDED"]
		if ft.Kind() == reflect.Struct && ft != timeType && !reflect.PointerTo(ft).Implements(valuerType) && (embedded || sf.Anonymous) {
			collect(ft, p, prefix+settings["EMBEDDEDPREFIX"], out)
			continue
		}
		col := settings["COLUMN"]
		if col == "" {
			col = toDBName(sf.Name)
		}
		tag, tagged := sf.Tag.Lookup(idgen.TagKey)
		*out = append(*out, field{
			path:   strings.Join(p, "."),
			column: prefix + col,
			typ:    sf.Type,
			pk:     truth(settings["PRIMARYKEY"]) || truth(settings["PRIMARY_KEY"]),
			tag:    tag,
			tagged: tagged,
		})
	}
}

// HiddenTags returns the paths of the fields of t (and the structs it embeds) that have
// an idgen tag but that GORM does not map: unexported fields, fields of unexported
// embedded structs, fields tagged gorm:"-". A tag there used to be ignored in silence.
func HiddenTags(t reflect.Type) []string {
	var out []string
	var walk func(t reflect.Type, path []string, hidden bool)
	walk = func(t reflect.Type, path []string, hidden bool) {
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			h := hidden || !ast.IsExported(sf.Name)
			if v, ok := tagSettings(sf.Tag.Get("gorm"))["-"]; ok && (v == "-" || strings.EqualFold(strings.TrimSpace(v), "all")) {
				h = true
			}
			p := append(path[:len(path):len(path)], sf.Name)
			if _, ok := sf.Tag.Lookup(idgen.TagKey); ok && h {
				out = append(out, strings.Join(p, "."))
			}
			ft := sf.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if sf.Anonymous && ft.Kind() == reflect.Struct {
				walk(ft, p, h)
			}
		}
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && t.Kind() == reflect.Struct {
		walk(t, nil, false)
	}
	return out
}

// tagSettings parses a gorm struct tag as GORM's schema.ParseTagSetting does: keys
// upper-cased, "\;" keeps a semicolon.
func tagSettings(tag string) map[string]string {
	settings := map[string]string{}
	names := strings.Split(tag, ";")
	for i := 0; i < len(names); i++ {
		s := names[i]
		for strings.HasSuffix(s, `\`) && i+1 < len(names) {
			i++
			s = s[:len(s)-1] + ";" + names[i]
		}
		k, v, ok := strings.Cut(s, ":")
		k = strings.TrimSpace(strings.ToUpper(k))
		if ok {
			settings[k] = strings.ReplaceAll(v, `\"`, `"`)
		} else if k != "" {
			settings[k] = k
		}
	}
	return settings
}

// truth is GORM's utils.CheckTruth for one value.
func truth(v string) bool { return v != "" && !strings.EqualFold(v, "false") }

// tableName returns the table GORM names t with by default: its TableName() method's,
// else the NamingStrategy's plural snake case.
func tableName(t reflect.Type) string {
	if tn, ok := reflect.New(t).Interface().(interface{ TableName() string }); ok {
		return tn.TableName()
	}
	return plural(toDBName(t.Name()))
}

// String returns a short description of f, for tests.
func (f field) String() string { return fmt.Sprintf("%s→%s", f.path, f.column) }
