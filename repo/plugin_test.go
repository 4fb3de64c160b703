package repo_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/seqrepo/seqrepo/idgen"
	"github.com/seqrepo/seqrepo/repo"
	"gorm.io/gorm"
)

func teams(n int) []Team {
	out := make([]Team, n)
	for i := range out {
		out[i] = Team{Name: fmt.Sprintf("team %d", i)}
	}
	return out
}

func TestPluginCreateInBatchesNoReturningOneRoundTripPerBatch(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{}
	db, p := open(t, logTo(rec))
	alloc, err := p.Allocator(ctx, &Team{})
	if err != nil {
		t.Fatal(err)
	}
	before := alloc.Stats()
	rec.take("")

	rows := teams(600)
	if err := db.CreateInBatches(&rows, 120).Error; err != nil {
		t.Fatal(err)
	}

	inserts := rec.take(`INSERT INTO "teams"`)
	if len(inserts) != 5 {
		t.Fatalf("%d INSERTs, want 5 batches: %q", len(inserts), inserts)
	}
	for _, s := range inserts {
		if strings.Contains(s, "RETURNING") {
			t.Errorf("INSERT has RETURNING: %.200s", s)
		}
		if !strings.HasPrefix(s, `INSERT INTO "teams" ("name","id") VALUES`) && !strings.HasPrefix(s, `INSERT INTO "teams" ("id","name") VALUES`) {
			t.Errorf("INSERT does not name the key column: %.200s", s)
		}
	}
	// At most one allocation round trip per statement: prefetch (on by default) may have
	// reserved a later batch's keys in the background already.
	if got := alloc.Stats().ForegroundRoundTrips - before.ForegroundRoundTrips; got < 1 || got > 5 {
		t.Errorf("allocator made %d foreground round trips for 5 batches, want 1 to 5", got)
	}
	checkTeamsInDB(t, db, rows)
}

// checkTeamsInDB checks that every row is in the database under its key.
func checkTeamsInDB(t *testing.T, db *gorm.DB, rows []Team) {
	t.Helper()
	want := map[int64]string{}
	for _, r := range rows {
		if r.ID == 0 {
			t.Fatalf("team %q has no key", r.Name)
		}
		if _, dup := want[r.ID]; dup {
			t.Fatalf("key %d given twice", r.ID)
		}
		want[r.ID] = r.Name
	}
	var got []Team
	if err := db.Order("id").Find(&got).Error; err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d teams in the database, want %d", len(got), len(want))
	}
	for _, g := range got {
		if want[g.ID] != g.Name {
			t.Errorf("team %d is %q in the database, %q in the slice", g.ID, g.Name, want[g.ID])
		}
	}
}

func TestPluginCreateWithoutAutoIncrementTag(t *testing.T) {
	// Widget's key has no autoIncrement:false, so GORM on its own would leave the key
	// out of the INSERT and read it back with RETURNING.
	rec := &recorder{}
	db, _ := open(t, logTo(rec))
	rec.take("")
	w := Widget{Code: "a", Name: "first"}
	if err := db.Create(&w).Error; err != nil {
		t.Fatal(err)
	}
	if w.ID == 0 {
		t.Fatal("no key assigned")
	}
	ins := rec.take(`INSERT INTO "widgets"`)
	if len(ins) != 1 {
		t.Fatalf("INSERTs: %q", ins)
	}
	if strings.Contains(ins[0], `RETURNING "id"`) || !strings.Contains(ins[0], `"id"`) {
		t.Errorf("INSERT should name the key and not return it: %s", ins[0])
	}
	// The database default of Stamp is still read back.
	if !strings.Contains(ins[0], `RETURNING "stamp"`) || w.Stamp.IsZero() {
		t.Errorf("database default not returned: %s, stamp %v", ins[0], w.Stamp)
	}
	var got Widget
	if err := db.First(&got, w.ID).Error; err != nil {
		t.Fatal(err)
	}
	if got.Code != "a" || got.Size != 7 {
		t.Errorf("got %+v", got)
	}

	// GORM's cached schema is untouched: queries and migrations still see GORM's view.
	stmt := &gorm.Statement{DB: db}
	if err := stmt.Parse(&Widget{}); err != nil {
		t.Fatal(err)
	}
	if pk := stmt.Schema.PrioritizedPrimaryField; !pk.AutoIncrement || !pk.HasDefaultValue {
		t.Errorf("GORM's cached schema was changed: AutoIncrement %v HasDefaultValue %v", pk.AutoIncrement, pk.HasDefaultValue)
	}
}

func TestPluginKeepsExplicitKeys(t *testing.T) {
	db, _ := open(t)
	rows := []Team{{ID: 7, Name: "seven"}, {Name: "new"}, {ID: 1000000, Name: "million"}}
	if err := db.Create(&rows).Error; err != nil {
		t.Fatal(err)
	}
	if rows[0].ID != 7 || rows[2].ID != 1000000 || rows[1].ID == 0 {
		t.Fatalf("keys %d %d %d", rows[0].ID, rows[1].ID, rows[2].ID)
	}
	checkTeamsInDB(t, db, rows)
}

func TestPluginAssociations(t *testing.T) {
	rec := &recorder{}
	db, _ := open(t, logTo(rec))
	rec.take("")
	shared := &Coach{Name: "shared"}
	team := Team{Name: "blue", Players: []Player{
		{Name: "a", Coach: shared},
		{Name: "b", Coach: &Coach{Name: "own"}},
		{Name: "c"},
	}}
	if err := db.Create(&team).Error; err != nil {
		t.Fatal(err)
	}
	for _, s := range rec.take("INSERT") {
		if strings.Contains(s, "RETURNING") {
			t.Errorf("association INSERT has RETURNING: %s", s)
		}
	}
	if team.ID == 0 || shared.ID == 0 {
		t.Fatal("no keys")
	}
	var players []Player
	if err := db.Order("name").Find(&players).Error; err != nil {
		t.Fatal(err)
	}
	if len(players) != 3 {
		t.Fatalf("%d players", len(players))
	}
	for i, p := range players {
		if p.ID != team.Players[i].ID || p.ID == 0 {
			t.Errorf("player %s: key %d in the database, %d in the struct", p.Name, p.ID, team.Players[i].ID)
		}
		if p.TeamID != team.ID {
			t.Errorf("player %s: team_id %d, want %d", p.Name, p.TeamID, team.ID)
		}
	}
	if players[0].CoachID == nil || *players[0].CoachID != shared.ID {
		t.Errorf("player a: coach_id %v, want %d", players[0].CoachID, shared.ID)
	}
	if players[1].CoachID == nil || *players[1].CoachID != team.Players[1].Coach.ID {
		t.Errorf("player b: coach_id %v, want %d", players[1].CoachID, team.Players[1].Coach.ID)
	}
	if players[2].CoachID != nil {
		t.Errorf("player c: coach_id %v, want NULL", *players[2].CoachID)
	}

	// A batch of parents with children: one INSERT per table.
	many := make([]Team, 40)
	for i := range many {
		many[i] = Team{Name: fmt.Sprint("t", i), Players: []Player{{Name: "x"}, {Name: "y", Coach: &Coach{Name: fmt.Sprint("c", i)}}}}
	}
	rec.take("")
	if err := db.CreateInBatches(&many, 100).Error; err != nil {
		t.Fatal(err)
	}
	if n := len(rec.take("INSERT")); n != 3 {
		t.Errorf("%d INSERTs for teams, players and coaches, want 3", n)
	}
	var bad int64
	if err := db.Raw(`SELECT count(*) FROM players p LEFT JOIN teams t ON t.id = p.team_id WHERE t.id IS NULL`).Scan(&bad).Error; err != nil {
		t.Fatal(err)
	}
	if got := count(t, db, "players"); got != 83 || bad != 0 {
		t.Errorf("%d players, %d without their team", got, bad)
	}
}

func TestPluginOneConnectionTransaction(t *testing.T) {
	// The transaction holds the pool's only connection: allocating on the pool would
	// wait forever. The first use also makes the allocator, whose check must run on the
	// transaction too.
	db, p := open(t, oneConn)
	ctx := context.Background()
	var rows []Team
	err := db.Transaction(func(tx *gorm.DB) error {
		for range 3 {
			batch := teams(70) // more than one block each time
			if err := tx.Create(&batch).Error; err != nil {
				return err
			}
			rows = append(rows, batch...)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Outside a transaction, with GORM's default transaction: keys come before BEGIN.
	batch := teams(130)
	if err := db.CreateInBatches(&batch, 60).Error; err != nil {
		t.Fatal(err)
	}
	rows = append(rows, batch...)
	err = repo.InTx(ctx, db, func(tx *gorm.DB) error {
		batch := teams(55)
		if err := tx.Create(&batch).Error; err != nil {
			return err
		}
		rows = append(rows, batch...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkTeamsInDB(t, db, rows)
	if _, err := p.Allocator(ctx, &Team{}); err != nil {
		t.Fatal(err)
	}
}

func TestPluginPreparedStatements(t *testing.T) {
	db, _ := open(t, prepared, oneConn)
	rows := teams(120)
	head := rows[:60]
	if err := db.Create(&head).Error; err != nil {
		t.Fatal(err)
	}
	err := db.Transaction(func(tx *gorm.DB) error {
		s := rows[60:]
		return tx.CreateInBatches(&s, 25).Error
	})
	if err != nil {
		t.Fatal(err)
	}
	checkTeamsInDB(t, db, rows)
}

func TestPluginSkipDefaultTransaction(t *testing.T) {
	rec := &recorder{}
	db, _ := open(t, skipDefaultTx, logTo(rec))
	rec.take("")
	rows := teams(10)
	if err := db.Create(&rows).Error; err != nil {
		t.Fatal(err)
	}
	for _, s := range rec.take("INSERT") {
		if strings.Contains(s, "RETURNING") {
			t.Errorf("RETURNING: %s", s)
		}
	}
	checkTeamsInDB(t, db, rows)
}

func TestPluginSaveMapAndGenerics(t *testing.T) {
	ctx := context.Background()
	db, _ := open(t)
	saved := Team{Name: "saved"}
	if err := db.Save(&saved).Error; err != nil {
		t.Fatal(err)
	}
	m := map[string]any{"name": "from a map"}
	if err := db.Model(&Team{}).Create(m).Error; err != nil {
		t.Fatal(err)
	}
	g := Team{Name: "generic"}
	if err := gorm.G[Team](db).Create(ctx, &g); err != nil {
		t.Fatal(err)
	}
	mk, _ := m["id"].(int64)
	if saved.ID == 0 || mk == 0 || g.ID == 0 {
		t.Fatalf("keys: save %d, map %v, generics %d", saved.ID, m["id"], g.ID)
	}
	checkTeamsInDB(t, db, []Team{saved, {ID: mk, Name: "from a map"}, g})
}

func TestPluginLeavesUntaggedModelsAlone(t *testing.T) {
	db, _ := open(t)
	p := Plain{Name: "identity"}
	if err := db.Create(&p).Error; err != nil {
		t.Fatal(err)
	}
	if p.ID != 1 {
		t.Errorf("identity key %d, want 1", p.ID)
	}
}

func TestPluginValidation(t *testing.T) {
	dsn := pgtestDatabase(t)
	db, _ := openDSN(t, dsn, config{})
	if err := db.Exec(`ALTER SEQUENCE teams_id_seq INCREMENT 7; DROP TABLE players; DROP SEQUENCE players_id_seq`).Error; err != nil {
		t.Fatal(err)
	}
	gdb, err := gorm.Open(postgresOpen(dsn), &gorm.Config{Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	err = gdb.Use(repo.NewPluginWithConfig(repo.PluginConfig{Validate: []any{&Widget{}, &Team{}, &Player{}, &Plain{}, &Coach{}}}))
	var check *idgen.CheckError
	if !errors.As(err, &check) {
		t.Fatalf("db.Use: %v, want an *idgen.CheckError", err)
	}
	if len(check.Problems) != 3 {
		t.Errorf("%d problems, want 3 (Team, Player, Plain):\n%v", len(check.Problems), err)
	}
	if !errors.Is(err, idgen.ErrIncrementMismatch) || !errors.Is(err, idgen.ErrSequenceNotFound) {
		t.Errorf("sentinels not found in %v", err)
	}
	for _, name := range []string{"Team", "Player", "Plain"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("no problem names %s:\n%v", name, err)
		}
	}
	if _, ok := gdb.Config.Plugins["seqrepo"]; ok {
		t.Error("plugin registered although validation failed")
	}

	// Validate, on a registered plugin, with a context.
	_, p := openDSN(t, dsn, config{})
	if err := p.Validate(context.Background(), &Widget{}, &Coach{}); err != nil {
		t.Errorf("Validate of sound models: %v", err)
	}
	if err := p.Validate(context.Background(), &Team{}); !errors.Is(err, idgen.ErrIncrementMismatch) {
		t.Errorf("Validate: %v", err)
	}
}

func TestPluginIncrementMismatchPassesThrough(t *testing.T) {
	db, _ := open(t)
	first := teams(10)
	if err := db.Create(&first).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(`ALTER SEQUENCE teams_id_seq INCREMENT 20`).Error; err != nil {
		t.Fatal(err)
	}
	more := teams(1000) // needs a refill: more than the allocator holds, prefetch's headroom included
	err := db.Create(&more).Error
	var mismatch *idgen.IncrementMismatchError
	if !errors.Is(err, idgen.ErrIncrementMismatch) || !errors.As(err, &mismatch) || mismatch.Increment != 20 {
		t.Fatalf("Create after ALTER SEQUENCE: %v", err)
	}
	if n := count(t, db, "teams"); n != 10 {
		t.Errorf("%d teams, want 10", n)
	}
}

func TestPluginRegisteredOnOneDB(t *testing.T) {
	db, p := open(t)
	other, err := gorm.Open(postgresOpen(pgtestDatabase(t)), &gorm.Config{Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Use(p); err == nil {
		t.Error("one Plugin registered on two *gorm.DB")
	}
	if err := db.Create(&Team{Name: "still works"}).Error; err != nil {
		t.Error(err)
	}
}

func TestPluginConcurrentCreates(t *testing.T) {
	// Goroutines race to make the allocator and the create schema, and share refills.
	db, _ := open(t)
	var wg sync.WaitGroup
	results := make([][]Widget, 8)
	errs := make([]error, 8)
	for g := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rows := widgets(fmt.Sprint("g", g), 300)
			for i := 0; i < len(rows); i += 100 {
				batch := rows[i : i+100]
				if err := db.Create(&batch).Error; err != nil {
					errs[g] = err
					return
				}
			}
			results[g] = rows
		}()
	}
	wg.Wait()
	seen := map[int64]bool{}
	for g, rows := range results {
		if errs[g] != nil {
			t.Fatal(errs[g])
		}
		for _, w := range rows {
			if w.ID == 0 || seen[w.ID] {
				t.Fatalf("key %d zero or repeated", w.ID)
			}
			seen[w.ID] = true
		}
	}
	if n := count(t, db, "widgets"); n != 2400 {
		t.Errorf("%d widgets, want 2400", n)
	}
}

func TestPluginConfigAllocationSize(t *testing.T) {
	ctx := context.Background()
	dsn := pgtestDatabase(t)
	db, err := gorm.Open(postgresOpen(dsn), &gorm.Config{Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(`ALTER SEQUENCE teams_id_seq INCREMENT 5`).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Use(repo.NewPluginWithConfig(repo.PluginConfig{AllocationSize: -5, AutoKeys: -1, Validate: []any{nil}})); err == nil ||
		!strings.Contains(err.Error(), "AllocationSize is -5") || !strings.Contains(err.Error(), "AutoKeys is -1") || !strings.Contains(err.Error(), "Validate[0] is nil") {
		t.Errorf("invalid PluginConfig: %v, want one error naming all three fields", err)
	}
	p := repo.NewPluginWithConfig(repo.PluginConfig{AllocationSize: 5, Validate: []any{&Team{}}})
	if err := db.Use(p); err != nil {
		t.Fatal(err)
	}
	rows := teams(12)
	if err := db.Create(&rows).Error; err != nil {
		t.Fatal(err)
	}
	a, err := p.Allocator(ctx, &Team{})
	if err != nil {
		t.Fatal(err)
	}
	// 3 blocks for the 12 keys, and 2 that prefetch keeps ahead (twice its watermark of
	// one block), in the same round trip.
	if s := a.Stats(); a.Config().AllocationSize != 5 || s.Blocks != 5 || s.RoundTrips != 1 {
		t.Errorf("allocation size %d, %d blocks in %d round trips for 12 keys, want 5 and 5 in 1", a.Config().AllocationSize, s.Blocks, s.RoundTrips)
	}
	checkTeamsInDB(t, db, rows)
}
