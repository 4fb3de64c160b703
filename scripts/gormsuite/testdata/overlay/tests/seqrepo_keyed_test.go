//go:build seqrepo && seqrepo_keyed

// This file is seqrepo's, copied into GORM's tests/ by scripts/gormsuite/run.sh. Mode keyed: GORM's core
// models embed the keyed Model of utils/tests/seqrepo_model_keyed.go, and after GORM's own AutoMigrate,
// seqrepo's sets their sequences to INCREMENT 50, as an application would at startup.

package tests_test

import (
	"context"

	"github.com/seqrepo/seqrepo/repo"
)

// seqrepoMigrate is called at the end of RunMigrations with the models it created.
func seqrepoMigrate(models []interface{}) error {
	return repo.AutoMigrate(context.Background(), DB, models...)
}
