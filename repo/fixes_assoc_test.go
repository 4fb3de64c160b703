package repo_test

import (
	"context"
	"fmt"
	"testing"
)

// Children that GORM saves with their parents are batched too: 100 teams of 200 players
// are 20,000 player rows, 80,000 parameters in one INSERT.
func TestRepositoryCreateAllAssociationsParameterLimit(t *testing.T) {
	ctx := context.Background()
	db, _ := open(t)
	r := newRepo[Team](t, db)
	rows := make([]Team, 100)
	for i := range rows {
		rows[i].Name = fmt.Sprint(i)
		rows[i].Players = make([]Player, 200)
		for j := range rows[i].Players {
			rows[i].Players[j].Name = fmt.Sprintf("%d.%d", i, j)
		}
		rows[i].Players[0].Coach = &Coach{Name: fmt.Sprint("coach ", i)}
	}
	if err := r.CreateAll(ctx, rows); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, "players"); n != 20_000 {
		t.Errorf("%d players, want 20000", n)
	}
	if n := count(t, db, "coaches"); n != 100 {
		t.Errorf("%d coaches, want 100", n)
	}
	var bad int64
	err := db.Raw(`SELECT count(*) FROM players p JOIN teams t ON t.id = p.team_id WHERE p.name NOT LIKE t.name || '.%'`).Scan(&bad).Error
	if err != nil || bad != 0 {
		t.Errorf("%d players under the wrong team, %v", bad, err)
	}
}
