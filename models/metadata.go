package models

import (
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
)

// Metadata is a JSON object stored in a jsonb column. Its underlying type is map[string]any,
// so map literals and map[string]any values assign to it directly.
//
// It implements driver.Valuer and sql.Scanner itself, so database/sql, GORM and pgx's
// CopyFrom all store it the same way without a serializer or an extra dependency. A nil
// Metadata is stored as the empty object {}, never as NULL; a JSON null read back is nil.
//
// Like any map, a Metadata is not safe for concurrent writes.
type Metadata map[string]any

// Value encodes m as a JSON object. A nil m is "{}".
func (m Metadata) Value() (driver.Value, error) {
	if m == nil {
		return "{}", nil
	}
	b, err := json.Marshal(map[string]any(m))
	if err != nil {
		return nil, fmt.Errorf("models: encoding Metadata: %w", err)
	}
	return string(b), nil
}

// Scan decodes a JSON object read from the database, given as string or []byte. SQL NULL
// and JSON null give a nil Metadata; any JSON other than an object is an error.
func (m *Metadata) Scan(src any) error {
	var b []byte
	switch v := src.(type) {
	case nil:
		*m = nil
		return nil
	case []byte:
		b = v
	case string:
		b = []byte(v)
	default:
		return fmt.Errorf("models: cannot scan %T into Metadata", src)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		return fmt.Errorf("models: decoding Metadata: %w", err)
	}
	*m = out
	return nil
}

var (
	_ driver.Valuer = Metadata(nil)
	_ sql.Scanner   = (*Metadata)(nil)
)
