package repo

import (
	"database/sql"
	"database/sql/driver"
	"reflect"
	"strings"
	"unicode/utf8"

	"gorm.io/gorm/schema"
)

// Text PostgreSQL cannot store — a NUL byte, invalid UTF-8 — is refused by the server
// in the middle of a write, after keys were reserved and batches sent. The batch writes
// check it first instead, and say which row and field hold it (InvalidTextError).

// textField is a column whose Go value goes to PostgreSQL as text just as it is.
type textField struct {
	f *schema.Field
	// index leads from the row struct to the field: GORM's StructField.Index, in which
	// a negative step -i-1 is an embedded struct reached through a pointer.
	index []int
	kind  textKind
}

// textKind is how a column's Go value holds text that is sent just as it is.
type textKind int8

const (
	noText         textKind = iota // not such a column
	textString                     // a string, or a type whose underlying type is string
	textPointer                    // a pointer to one; nil is NULL
	textNullString                 // a sql.NullString
)

var (
	valuerType     = reflect.TypeFor[driver.Valuer]()
	nullStringType = reflect.TypeFor[sql.NullString]()
)

// textKindOf says whether f's value is sent as the text it holds, and how it holds it.
// A type with its own driver.Valuer (other than sql.NullString), a field with a GORM
// serializer and a bytea column are not: what is sent is not the Go string.
func textKindOf(f *schema.Field) textKind {
	t := f.FieldType
	switch {
	case t == nullStringType:
		return textNullString
	case f.Serializer != nil || strings.EqualFold(string(f.DataType), "bytea") || isValuer(t):
		return noText
	case t.Kind() == reflect.String:
		return textString
	case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.String && !isValuer(t.Elem()):
		return textPointer
	}
	return noText
}

func isValuer(t reflect.Type) bool {
	return t.Implements(valuerType) || reflect.PointerTo(t).Implements(valuerType)
}

// checkText returns an *InvalidTextError when a text column of rv, a row of the model,
// holds a NUL byte or invalid UTF-8, which PostgreSQL refuses in any text type (with
// the UTF8 server encoding every client of pgx uses). row is the row's index for the
// error. It reads the fields directly, without GORM's boxing ValueOf; the writes that
// extract every value anyway check it there, with checkValue.
func (m *model) checkText(rv reflect.Value, row int) error {
	for i := range m.text {
		tf := &m.text[i]
		var v reflect.Value
		if len(tf.index) == 1 && tf.index[0] >= 0 {
			v = rv.Field(tf.index[0])
		} else if v = fieldAt(rv, tf.index); !v.IsValid() {
			continue
		}
		var s string
		switch tf.kind {
		case textString:
			s = v.String()
		case textPointer:
			if v.IsNil() {
				continue
			}
			s = v.Elem().String()
		case textNullString:
			if !v.Field(1).Bool() { // Valid
				continue
			}
			s = v.Field(0).String() // String
		}
		if reason := badText(s); reason != "" {
			return &InvalidTextError{Model: m.name(), Field: tf.f.Name, Row: row, Reason: reason}
		}
	}
	return nil
}

// checkValue is checkText for one non-zero value v, as GORM's ValueOf returned it, of
// columns[ci].
func (m *model) checkValue(ci int, v any, row int) error {
	var s string
	switch m.textKinds[ci] {
	case noText:
		return nil
	case textString:
		if str, ok := v.(string); ok {
			s = str
		} else {
			s = reflect.ValueOf(v).String()
		}
	case textPointer:
		if p, ok := v.(*string); ok {
			s = *p
		} else {
			s = reflect.ValueOf(v).Elem().String()
		}
	case textNullString:
		ns := v.(sql.NullString)
		if !ns.Valid {
			return nil
		}
		s = ns.String
	}
	if reason := badText(s); reason != "" {
		return &InvalidTextError{Model: m.name(), Field: m.columns[ci].Name, Row: row, Reason: reason}
	}
	return nil
}

// fieldAt returns the field of v at index (see textField.index), the zero Value when a
// nil embedded pointer is on the way.
func fieldAt(v reflect.Value, index []int) reflect.Value {
	for _, i := range index {
		if i >= 0 {
			v = v.Field(i)
			continue
		}
		if v = v.Field(-i - 1); v.IsNil() {
			return reflect.Value{}
		}
		v = v.Elem()
	}
	return v
}

// badText says what is wrong with s as PostgreSQL text, "" when nothing is.
func badText(s string) string {
	if strings.IndexByte(s, 0) >= 0 {
		return "contains a NUL byte"
	}
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	return ""
}
