package repo

import (
	"fmt"
	"strings"
)

// Config configures a Repository made by NewWithConfig. The zero value means the
// defaults, which is what New uses; NewWithConfig reports an invalid field as an error
// naming it. A Config is a plain value, safe to copy and share.
type Config struct {
	// BatchSize is the number of rows per statement or COPY for CreateAll, Copy, CopySeq
	// and Upsert; 0 means DefaultBatchSize. CreateAll may use fewer rows per statement,
	// to stay within PostgreSQL's 65,535 bind parameters. It must not be negative.
	BatchSize int
}

// validate reports every invalid field of c at once, each with its fix, and returns c
// with the defaults filled in. The error has no prefix: NewWithConfig adds one naming T.
func (c Config) validate() (Config, error) {
	var problems []string
	if c.BatchSize < 0 {
		problems = append(problems, fmt.Sprintf("BatchSize is %d; use 1 or more, or 0 for DefaultBatchSize (%d)", c.BatchSize, DefaultBatchSize))
	}
	if len(problems) > 0 {
		return c, fmt.Errorf("invalid Config: %s", strings.Join(problems, "; "))
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	return c, nil
}

// PluginConfig configures a Plugin made by NewPluginWithConfig. The zero value means the
// defaults, which is what NewPlugin uses. An invalid field is reported, naming it, by
// Initialize (that is, by db.Use), together with the problems Validate finds. A
// PluginConfig is a plain value; the plugin copies it (and its Validate slice).
type PluginConfig struct {
	// Validate lists models (struct values or pointers, e.g. &models.Commit{}) whose
	// sequences Initialize checks the way Plugin.Validate does, before the plugin is
	// registered, so that db.Use fails at startup, listing every problem at once in one
	// *idgen.CheckError, instead of the first write failing later. The check runs with
	// context.Background(); call Plugin.Validate after db.Use to bound it with a context.
	Validate []any

	// AllocationSize, when not 0, makes every model use this allocation size instead of
	// its tag's allocationSize, for example to try sizes in a benchmark. Every
	// sequence's INCREMENT must then equal it: the check at first use, Validate and
	// every refill compare them. 0 keeps the tags' sizes; it must not be negative.
	AllocationSize int

	// AutoKeys, when not 0, makes the plugin key, without any tag, every model whose
	// single primary key is an integer column with a sequence of its own (a serial or
	// identity column, as GORM's AutoMigrate makes them), in blocks of AutoKeys keys:
	// what EF Core's UseHiLo() and Hibernate's global sequence strategy do. The sequence
	// is found with pg_get_serial_sequence the first time a model is created, on the
	// statement's own connection, and the answer is kept for the life of the plugin: one
	// catalog query per model. Models with an idgen tag keep their tag's configuration.
	// Models whose key has no sequence of its own (uuid or text keys, composite keys,
	// GORM's join tables, integer keys without a sequence) are left to GORM untouched.
	//
	// Every such sequence's INCREMENT must equal AutoKeys: AutoMigrate sets it, and
	// Validate lists every model whose sequence does not match. 0 (the default) leaves
	// untagged models to GORM; it must not be negative.
	AutoKeys int
}

// validate reports every invalid field of c at once, each with its fix.
func (c PluginConfig) validate() error {
	var problems []string
	if c.AllocationSize < 0 {
		problems = append(problems, fmt.Sprintf("AllocationSize is %d; use 1 or more, or 0 to keep each tag's allocationSize", c.AllocationSize))
	}
	if c.AutoKeys < 0 {
		problems = append(problems, fmt.Sprintf("AutoKeys is %d; use the allocation size for untagged models (1 or more), or 0 to leave them to GORM", c.AutoKeys))
	}
	for i, m := range c.Validate {
		if m == nil {
			problems = append(problems, fmt.Sprintf("Validate[%d] is nil; list struct values or pointers such as &Order{}", i))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("repo: invalid PluginConfig: %s", strings.Join(problems, "; "))
	}
	return nil
}
