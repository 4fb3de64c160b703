package repo_test

import (
	"testing"

	"github.com/seqrepo/seqrepo/internal/pgtest"
)

// TestThroughPgBouncer runs this package's tests and examples again, through PgBouncer
// in transaction pooling mode (see pgtest.RerunThroughPgBouncer).
func TestThroughPgBouncer(t *testing.T) { pgtest.RerunThroughPgBouncer(t) }
