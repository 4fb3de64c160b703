package repo_test

import (
	"context"
	"testing"
	"time"

	"github.com/seqrepo/seqrepo/repo"
	"gorm.io/gorm"
)

// UpdateAll updates the columns the INSERT wrote, not a database-default column that
// was zero in every row and so left out: that would write the DEFAULT over the stored
// value.
func TestRepositoryUpsertUpdateAllKeepsUnwrittenColumns(t *testing.T) {
	upsertCases(t, func(t *testing.T, db *gorm.DB, upsert func(context.Context, []Widget, repo.OnConflict) (repo.UpsertResult, error)) {
		ctx := context.Background()
		on := repo.OnConflict{Columns: []string{"code"}, UpdateAll: true}
		stamp := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
		if _, err := upsert(ctx, []Widget{{Code: "a", Name: "one", Stamp: stamp}}, on); err != nil {
			t.Fatal(err)
		}
		// Stamp is zero in every row: the INSERT leaves it to its default, now().
		if _, err := upsert(ctx, []Widget{{Code: "a", Name: "two"}, {Code: "b", Name: "new"}}, on); err != nil {
			t.Fatal(err)
		}
		inDB := dbKeys(t, db)
		if a := inDB["a"]; a.Name != "two" || !a.Stamp.Equal(stamp) {
			t.Errorf("after UpdateAll: name %q stamp %v, want two and %v", a.Name, a.Stamp, stamp)
		}
		if b := inDB["b"]; b.Stamp.IsZero() || b.Stamp.Equal(stamp) {
			t.Errorf("inserted row's stamp %v, want the database default", b.Stamp)
		}
		// Written in some row, the column is written in all and updated.
		later := stamp.Add(time.Hour)
		if _, err := upsert(ctx, []Widget{{Code: "a", Name: "three", Stamp: later}}, on); err != nil {
			t.Fatal(err)
		}
		if a := dbKeys(t, db)["a"]; a.Name != "three" || !a.Stamp.Equal(later) {
			t.Errorf("after UpdateAll with a stamp: name %q stamp %v, want three and %v", a.Name, a.Stamp, later)
		}
	})
}
