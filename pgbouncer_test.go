package seqrepo_test

import (
	"testing"

	"github.com/seqrepo/seqrepo/internal/pgtest"
)

// TestThroughPgBouncer runs the end-to-end tests again, through PgBouncer in
// transaction pooling mode (see pgtest.RerunThroughPgBouncer).
func TestThroughPgBouncer(t *testing.T) { pgtest.RerunThroughPgBouncer(t) }
