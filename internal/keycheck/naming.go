package keycheck

import (
	"strings"

	"github.com/jinzhu/inflection"
)

// GORM's default NamingStrategy (gorm.io/gorm/schema/naming.go, v1.31), without GORM:
// the same initialisms, the same snake case, the same pluralisation (jinzhu/inflection,
// GORM's own dependency). TestNamingMatchesGORM in repo holds the two together.

var commonInitialisms = []string{"API", "ASCII", "CPU", "CSS", "DNS", "EOF", "GUID", "HTML", "HTTP", "HTTPS", "ID", "IP", "JSON", "LHS", "QPS", "RAM", "RHS", "RPC", "SLA", "SMTP", "SSH", "TLS", "TTL", "UID", "UI", "UUID", "URI", "URL", "UTF8", "VM", "XML", "XSRF", "XSS"}

// initialisms turns "ID" into "Id" and so on, as GORM's commonInitialismsReplacer does.
var initialisms = func() *strings.Replacer {
	pairs := make([]string, 0, 2*len(commonInitialisms))
	for _, s := range commonInitialisms {
		pairs = append(pairs, s, s[:1]+strings.ToLower(s[1:]))
	}
	return strings.NewReplacer(pairs...)
}()

// plural is GORM's table-name pluralisation.
func plural(s string) string { return inflection.Plural(s) }

// toDBName is GORM's NamingStrategy.toDBName with no replacer and lower-casing on.
func toDBName(name string) string {
	if name == "" {
		return ""
	}
	var (
		value                          = initialisms.Replace(name)
		buf                            strings.Builder
		lastCase, nextCase, nextNumber bool // upper case == true
		curCase                        = value[0] <= 'Z' && value[0] >= 'A'
	)
	for i, v := range value[:len(value)-1] {
		nextCase = value[i+1] <= 'Z' && value[i+1] >= 'A'
		nextNumber = value[i+1] >= '0' && value[i+1] <= '9'
		if curCase {
			if lastCase && (nextCase || nextNumber) {
				buf.WriteRune(v + 32)
			} else {
				if i > 0 && value[i-1] != '_' && value[i+1] != '_' {
					buf.WriteByte('_')
				}
				buf.WriteRune(v + 32)
			}
		} else {
			buf.WriteRune(v)
		}
		lastCase = curCase
		curCase = nextCase
	}
	if curCase {
		if !lastCase && len(value) > 1 {
			buf.WriteByte('_')
		}
		buf.WriteByte(value[len(value)-1] + 32)
	} else {
		buf.WriteByte(value[len(value)-1])
	}
	return buf.String()
}

// TableName and ColumnName expose the naming for the test that compares it with GORM's.
func TableName(goName string) string  { return plural(toDBName(goName)) }
func ColumnName(goName string) string { return toDBName(goName) }
