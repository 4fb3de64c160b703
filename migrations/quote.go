package migrations

import (
	"fmt"
	"strings"
)

// maxIdentifierLength is PostgreSQL's limit on identifiers (NAMEDATALEN-1 bytes). A longer
// name would be cut silently, and might then name another object.
const maxIdentifierLength = 63

// checkIdentifier reports why name cannot be a PostgreSQL identifier, or nil. Any other
// character is allowed: names are always quoted.
func checkIdentifier(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s is empty", what)
	case strings.ContainsRune(name, 0):
		return fmt.Errorf("%s %q contains a NUL byte", what, name)
	case len(name) > maxIdentifierLength:
		return fmt.Errorf("%s %q is %d bytes long; PostgreSQL identifiers have at most %d", what, name, len(name), maxIdentifierLength)
	}
	return nil
}

// quoteIdent quotes name as an SQL identifier, kept exactly as given: "name", with every
// double quote doubled. name must pass checkIdentifier.
func quoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// quoteQualified quotes schema.name, or name alone when schema is empty.
func quoteQualified(schema, name string) string {
	if schema == "" {
		return quoteIdent(name)
	}
	return quoteIdent(schema) + "." + quoteIdent(name)
}

// quoteLiteral quotes s as an SQL string literal that reads the same whatever
// standard_conforming_strings is, as PostgreSQL's quote_literal does: '…' with quotes
// doubled, or, when s has a backslash or a control character, E'…' with backslashes
// doubled and control characters escaped, so that the literal is always one line (goose's
// SQL files are read line by line, and annotations are lines).
func quoteLiteral(s string) string {
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\\' || c < 0x20 || c == 0x7f {
			plain = false
			break
		}
	}
	if plain {
		return "'" + strings.ReplaceAll(s, "'", "''") + "'"
	}
	var b strings.Builder
	b.WriteString("E'")
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'':
			b.WriteString("''")
		case c == '\\':
			b.WriteString(`\\`)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteString("'")
	return b.String()
}
