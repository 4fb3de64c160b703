// This file is seqrepo's, copied into GORM's tests/ by scripts/gormsuite/run.sh, in every mode.

package tests_test

import "os"

// TestInvalidCachedPlanSimpleProtocol opens postgresDSN, GORM's docker-compose server, itself rather than
// through OpenTestConnection: point it at the server GORM_DSN names, as every other test is.
func init() {
	if dsn := os.Getenv("GORM_DSN"); dsn != "" && os.Getenv("GORM_DIALECT") == "postgres" {
		postgresDSN = dsn
	}
}
