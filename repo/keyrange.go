package repo

import (
	"errors"
	"fmt"
	"math"
	"reflect"
)

// ErrKeyOutOfRange is matched (errors.Is) by the error that a create through the plugin
// (db.Create and every other GORM create), CreateAll, Copy, CopySeq and Upsert return
// when the sequence hands out a key that the model's key field cannot hold: an int32
// key once the sequence passes 2,147,483,647, a uint8 key past 255, any unsigned key
// for a negative value. The keys are checked when they are reserved, before any is set
// in a row or anything is written, so a narrow key never wraps into a wrong or negative
// one. The error names the model, the field, the key and the field's range; the fix is
// a wider key type (int64, and bigint in the table).
//
// It has no "repo:" prefix of its own: the error around it carries it ("repo: key out of
// range: model Order, …").
var ErrKeyOutOfRange = errors.New("key out of range")

// keyRange returns the smallest and largest int64 a key field of type t holds (a
// pointer is looked through).
func keyRange(t reflect.Type) (lo, hi int64) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int8:
		return math.MinInt8, math.MaxInt8
	case reflect.Int16:
		return math.MinInt16, math.MaxInt16
	case reflect.Int32:
		return math.MinInt32, math.MaxInt32
	case reflect.Int:
		if t.Size() < 8 {
			return math.MinInt32, math.MaxInt32
		}
	case reflect.Uint8:
		return 0, math.MaxUint8
	case reflect.Uint16:
		return 0, math.MaxUint16
	case reflect.Uint32:
		return 0, math.MaxUint32
	case reflect.Uint, reflect.Uint64, reflect.Uintptr:
		if t.Size() < 8 {
			return 0, math.MaxUint32
		}
		return 0, math.MaxInt64
	}
	return math.MinInt64, math.MaxInt64
}

// checkRange returns an error wrapping ErrKeyOutOfRange when a key in keys does not fit
// m's key field.
func (m *model) checkRange(keys []int64) error {
	lo, hi := keyRange(m.key.FieldType)
	if lo == math.MinInt64 && hi == math.MaxInt64 {
		return nil
	}
	for _, k := range keys {
		if k < lo || k > hi {
			typ := m.key.FieldType.String()
			if kind := m.key.IndirectFieldType.Kind().String(); kind != typ {
				typ += " (" + kind + ")" // a named type: say what it is
			}
			return fmt.Errorf("repo: %w: model %s, key field %s is %s, which holds %d to %d, but sequence %s handed out %d; make the field int64 (and the column bigint)",
				ErrKeyOutOfRange, m.name(), m.key.Name, typ, lo, hi, m.cfg.Sequence, k)
		}
	}
	return nil
}
