package repo_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/seqrepo/seqrepo/repo"
)

// A failed CreateAll takes back the keys the plugin gave to the associations it saved,
// not only those of the caller's rows.
func TestRepositoryCreateAllClearsAssociationKeys(t *testing.T) {
	ctx := context.Background()
	db, _ := open(t)
	r := newRepo[Team](t, db, repo.Config{BatchSize: 10})
	rows := make([]Team, 25)
	for i := range rows {
		rows[i] = Team{Name: fmt.Sprint("t", i), Players: []Player{
			{Name: "a", Coach: &Coach{Name: fmt.Sprint("c", i)}},
			{Name: "b"},
		}}
	}
	rows[3].ID = 99_000
	rows[22].ID = 99_000 // the third batch fails after two were written with their children
	var dup *repo.DuplicateKeyError
	if err := r.CreateAll(ctx, rows); !errors.As(err, &dup) {
		t.Fatalf("CreateAll: %v, want a *DuplicateKeyError", err)
	}
	for i, team := range rows {
		if explicit := i == 3 || i == 22; (explicit && team.ID != 99_000) || (!explicit && team.ID != 0) {
			t.Errorf("team %d: key %d after the failed CreateAll", i, team.ID)
		}
		for j, p := range team.Players {
			if p.ID != 0 || (p.Coach != nil && p.Coach.ID != 0) {
				t.Fatalf("team %d player %d: key %d, coach %+v after the failed CreateAll", i, j, p.ID, p.Coach)
			}
		}
	}
	if n := count(t, db, "players") + count(t, db, "coaches") + count(t, db, "teams"); n != 0 {
		t.Errorf("%d rows written", n)
	}
	// The same rows, fixed, are written with fresh keys.
	rows[22].ID = 0
	if err := r.CreateAll(ctx, rows); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, "players"); n != 50 {
		t.Errorf("%d players, want 50", n)
	}
}
