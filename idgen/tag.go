package idgen

import (
	"fmt"
	"strconv"
	"strings"
)

// TagKey is the struct tag key that declares a client-assigned key:
//
//	ID int64 `gorm:"primaryKey" idgen:"sequence:commits_id_seq;allocationSize:50"`
const TagKey = "idgen"

// DefaultAllocationSize is the allocation size ParseTag uses when a tag names none.
// It is Hibernate's default, and the INCREMENT seqrepo's migrations set.
const DefaultAllocationSize = 50

// ParseTag parses the value of an idgen struct tag into a Config. The tag is a list of
// key:value pairs separated by semicolons; keys are case-insensitive:
//
//	sequence        the sequence name, as Config.Sequence; may be schema-qualified
//	                and double-quoted; a ';' inside double quotes is part of the name.
//	                Without it, Config.Sequence is "": the key column's own sequence
//	                (a serial or identity column's, see ColumnSequence), so that one
//	                tag on an embedded base struct serves every model
//	                (idgen:"allocationSize:50"). New refuses an empty Sequence: resolve
//	                it first (CheckKey does, and so do seqrepo's repo and migrations).
//	allocationSize  the block size, equal to the sequence INCREMENT (default 50)
//	optimizer       "pooled-lo" (default; also "pooledlo", "pooled_lo") or "pooled"
//
// Each key has aliases, accepted as the same key: "seq" for sequence, "size" and
// "allocation_size" for allocationSize. A key given twice, under any spellings, is an
// error.
//
// ParseTag returns an error matching ErrInvalidConfig for anything else: an unknown
// or repeated key, a missing value, a size that is not a positive integer.
// ParseTag is a pure function, safe for concurrent use.
func ParseTag(tag string) (Config, error) {
	cfg := Config{AllocationSize: DefaultAllocationSize}
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, &ConfigError{Sequence: cfg.Sequence, Problems: []string{fmt.Sprintf("tag %q: ", tag) + fmt.Sprintf(format, args...)}}
	}
	parts, err := splitTag(tag)
	if err != nil {
		return bad("%v", err)
	}
	seen := map[string]bool{}
	for _, part := range parts {
		if strings.TrimSpace(part) == "" {
			continue
		}
		key, value, ok := strings.Cut(part, ":")
		key = strings.ToLower(strings.TrimSpace(key))
		value = strings.TrimSpace(value)
		if !ok || value == "" {
			return bad("%q has no value (want key:value)", strings.TrimSpace(part))
		}
		// Aliases name the same key: "seq:a;sequence:b" is a repeated key, not b.
		if canonical, ok := tagAliases[key]; ok {
			key = canonical
		}
		if seen[key] {
			return bad("%s given twice", key)
		}
		seen[key] = true
		switch key {
		case "sequence":
			cfg.Sequence = value
		case "allocationsize":
			n, err := strconv.Atoi(value)
			if err != nil || n < 1 {
				return bad("allocationSize %q is not a positive integer", value)
			}
			cfg.AllocationSize = n
		case "optimizer":
			switch strings.ToLower(value) {
			case "pooled-lo", "pooledlo", "pooled_lo":
				cfg.Optimizer = PooledLo
			case "pooled":
				cfg.Optimizer = Pooled
			default:
				return bad("optimizer %q (want pooled-lo or pooled)", value)
			}
		default:
			return bad("unknown key %q (want sequence, allocationSize, optimizer)", key)
		}
	}
	if err := cfg.check(false); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// tagAliases maps the other spellings of a tag key to the one ParseTag switches on.
var tagAliases = map[string]string{
	"seq":             "sequence",
	"allocation_size": "allocationsize",
	"size":            "allocationsize",
}

// splitTag splits on semicolons that are not inside double quotes.
func splitTag(tag string) ([]string, error) {
	var parts []string
	start, quoted := 0, false
	for i := 0; i < len(tag); i++ {
		switch tag[i] {
		case '"':
			quoted = !quoted
		case ';':
			if !quoted {
				parts = append(parts, tag[start:i])
				start = i + 1
			}
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated double quote")
	}
	return append(parts, tag[start:]), nil
}
