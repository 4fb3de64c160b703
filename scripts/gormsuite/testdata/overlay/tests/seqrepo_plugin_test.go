//go:build seqrepo && !seqrepo_keyed

// This file is seqrepo's, copied into GORM's tests/ by scripts/gormsuite/run.sh. Mode plugin: the plugin is
// registered but no model is keyed by seqrepo, so there is nothing to migrate.

package tests_test

// seqrepoMigrate is called at the end of RunMigrations with the models it created.
func seqrepoMigrate([]interface{}) error { return nil }
