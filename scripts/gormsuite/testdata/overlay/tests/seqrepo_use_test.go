//go:build seqrepo

// This file is seqrepo's, copied into GORM's tests/ by scripts/gormsuite/run.sh. With the seqrepo build tag
// (modes plugin and keyed), every connection GORM's tests open has seqrepo's plugin registered.

package tests_test

import (
	"github.com/seqrepo/seqrepo/repo"
	"gorm.io/gorm"
)

// seqrepoUse is called by OpenTestConnection on every connection it opens.
func seqrepoUse(db *gorm.DB) error { return db.Use(repo.NewPlugin()) }
