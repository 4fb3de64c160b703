//go:build !seqrepo

// This file is seqrepo's, copied into GORM's tests/ by scripts/gormsuite/run.sh. Without the seqrepo build
// tag (mode plain), the hooks it adds to tests_test.go do nothing: GORM's suite runs as GORM ships it.

package tests_test

import "gorm.io/gorm"

// seqrepoUse is called by OpenTestConnection on every connection it opens.
func seqrepoUse(*gorm.DB) error { return nil }

// seqrepoMigrate is called at the end of RunMigrations with the models it created.
func seqrepoMigrate([]interface{}) error { return nil }
