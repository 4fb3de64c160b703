package repo_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/seqrepo/seqrepo/repo"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Models of the tests of how the plugin handles GORM's statement options (issue 9). Their
// tables have DEFAULT nextval keys, as AutoMigrate makes them, so a key left out of an
// INSERT is filled by the database instead of failing.

type Member struct {
	ID    int64 `gorm:"primaryKey" idgen:"sequence:members_id_seq;allocationSize:50"`
	Email string
	Name  string
	Notes []MemberNote
}

type MemberNote struct {
	ID       int64 `gorm:"primaryKey" idgen:"sequence:member_notes_id_seq;allocationSize:50"`
	MemberID int64
	Text     string
}

// Fixed is a Member whose key has autoIncrement:false: GORM always names the key column,
// unless Select or Omit leaves it out.
type Fixed struct {
	ID    int64 `gorm:"primaryKey;autoIncrement:false" idgen:"sequence:fixeds_id_seq;allocationSize:50"`
	Email string
	Name  string
}

// SmallID is a named narrow key type.
type SmallID int32

type Small struct {
	ID   SmallID `gorm:"primaryKey;autoIncrement:false" idgen:"sequence:smalls_id_seq;allocationSize:50"`
	Name string
}

type Tiny struct {
	ID   uint8 `gorm:"primaryKey;autoIncrement:false" idgen:"sequence:tinies_id_seq;allocationSize:50"`
	Name string
}

// Hooked's BeforeCreate records the key it sees and, for the name "fixed", sets its own.
type Hooked struct {
	ID      int64 `gorm:"primaryKey" idgen:"sequence:hookeds_id_seq;allocationSize:50"`
	Name    string
	SeenKey int64
}

func (h *Hooked) BeforeCreate(*gorm.DB) error {
	h.SeenKey = h.ID
	if h.Name == "fixed" {
		h.ID = 7777
	}
	return nil
}

const stmtSchema = `
CREATE SEQUENCE members_id_seq INCREMENT 50;
CREATE TABLE members (id bigint PRIMARY KEY DEFAULT nextval('members_id_seq'), email text NOT NULL UNIQUE, name text NOT NULL);
CREATE SEQUENCE member_notes_id_seq INCREMENT 50;
CREATE TABLE member_notes (id bigint PRIMARY KEY DEFAULT nextval('member_notes_id_seq'), member_id bigint NOT NULL REFERENCES members, text text NOT NULL);
CREATE SEQUENCE fixeds_id_seq INCREMENT 50;
CREATE TABLE fixeds (id bigint PRIMARY KEY DEFAULT nextval('fixeds_id_seq'), email text NOT NULL UNIQUE, name text NOT NULL);
CREATE SEQUENCE smalls_id_seq INCREMENT 50;
CREATE TABLE smalls (id bigint PRIMARY KEY, name text NOT NULL);
CREATE SEQUENCE tinies_id_seq INCREMENT 50;
CREATE TABLE tinies (id bigint PRIMARY KEY, name text NOT NULL);
CREATE SEQUENCE hookeds_id_seq INCREMENT 50;
CREATE TABLE hookeds (id bigint PRIMARY KEY, name text NOT NULL, seen_key bigint NOT NULL);
`

// openStmt returns a GORM handle with the plugin on a fresh database holding stmtSchema too.
func openStmt(t *testing.T, opts ...func(*config)) (*gorm.DB, *repo.Plugin) {
	t.Helper()
	db, p := open(t, opts...)
	if err := db.Exec(stmtSchema).Error; err != nil {
		t.Fatal(err)
	}
	return db, p
}

// keyOf returns the key of the row of table whose email is email, 0 when there is none.
func keyOf(t *testing.T, db *gorm.DB, table, email string) int64 {
	t.Helper()
	var keys []int64
	if err := db.Table(table).Where("email = ?", email).Pluck("id", &keys).Error; err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		return 0
	}
	return keys[0]
}

// checkMembers checks that every member holds the key of its row, and every note of it
// the key of its own row and of its member's.
func checkMembers(t *testing.T, db *gorm.DB, ms ...*Member) {
	t.Helper()
	for _, m := range ms {
		if want := keyOf(t, db, "members", m.Email); m.ID != want || want == 0 {
			t.Errorf("member %s holds key %d, its row has %d", m.Email, m.ID, want)
		}
		for _, n := range m.Notes {
			var got MemberNote
			if err := db.Take(&got, "text = ?", n.Text).Error; err != nil {
				t.Errorf("note %s: %v", n.Text, err)
				continue
			}
			if got.ID != n.ID || got.MemberID != m.ID || n.MemberID != m.ID {
				t.Errorf("note %s holds key %d member %d; its row has %d member %d; member %d", n.Text, n.ID, n.MemberID, got.ID, got.MemberID, m.ID)
			}
		}
	}
}

// Defect 1: a Select or Omit that leaves the key column out must not leave the struct
// with a key that no row has.
func TestPluginSelectOmitLeavingKeyOut(t *testing.T) {
	ctx := context.Background()
	db, _ := openStmt(t)
	cases := []struct {
		name   string
		create func(m *Member) error
	}{
		{"Select", func(m *Member) error { return db.Select("Email", "Name").Create(m).Error }},
		{"SelectColumns", func(m *Member) error { return db.Select("email", "name").Create(m).Error }},
		{"SelectWithAssociation", func(m *Member) error { return db.Select("Email", "Name", "Notes").Create(m).Error }},
		{"OmitID", func(m *Member) error { return db.Omit("ID").Create(m).Error }},
		{"Omitid", func(m *Member) error { return db.Omit("id").Create(m).Error }},
		{"OmitTableid", func(m *Member) error { return db.Omit("members.id").Create(m).Error }},
		{"Generics", func(m *Member) error { return gorm.G[Member](db).Select("Email", "Name").Create(ctx, m) }},
		{"GenericsOmit", func(m *Member) error { return gorm.G[Member](db).Omit("ID").Create(ctx, m) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := Member{Email: c.name + "@x", Name: c.name}
			if strings.Contains(c.name, "Association") {
				m.Notes = []MemberNote{{Text: c.name + " 1"}, {Text: c.name + " 2"}}
			}
			if err := c.create(&m); err != nil {
				t.Fatal(err)
			}
			checkMembers(t, db, &m)
		})
	}
	t.Run("Slice", func(t *testing.T) {
		ms := []Member{{Email: "s1@x", Name: "1"}, {Email: "s2@x", Name: "2"}, {Email: "s3@x", Name: "3"}}
		if err := db.Select("Email", "Name").Create(&ms).Error; err != nil {
			t.Fatal(err)
		}
		checkMembers(t, db, &ms[0], &ms[1], &ms[2])
	})
	t.Run("AutoIncrementFalse", func(t *testing.T) {
		f := Fixed{Email: "f@x", Name: "f"}
		if err := db.Select("Email", "Name").Create(&f).Error; err != nil {
			t.Fatal(err)
		}
		if want := keyOf(t, db, "fixeds", "f@x"); f.ID != want {
			t.Errorf("struct holds key %d, its row has %d", f.ID, want)
		}
	})
	t.Run("Map", func(t *testing.T) {
		row := map[string]any{"email": "map@x", "name": "map"}
		if err := db.Model(&Member{}).Select("email", "name").Create(row).Error; err != nil {
			t.Fatal(err)
		}
		want := keyOf(t, db, "members", "map@x")
		if got, ok := row["id"]; ok && got != want {
			t.Errorf("map holds key %v, its row has %d", got, want)
		}
	})
	t.Run("CallerSliceUntouched", func(t *testing.T) {
		// Select keeps the caller's []string: the plugin must not append into its
		// spare capacity.
		cols := []string{"Email", "Name", "sentinel"}
		m := Member{Email: "caller@x", Name: "c"}
		if err := db.Select(cols[:2]).Create(&m).Error; err != nil {
			t.Fatal(err)
		}
		if cols[2] != "sentinel" {
			t.Errorf("the caller's slice was written to: %q", cols)
		}
		checkMembers(t, db, &m)
	})
}

// onConflictEmail is ON CONFLICT (email) DO UPDATE SET name = excluded.name.
var onConflictEmail = clause.OnConflict{Columns: []clause.Column{{Name: "email"}}, DoUpdates: clause.AssignmentColumns([]string{"name"})}

// Defect 2: GORM's ON CONFLICT clauses. A row that was updated holds the existing row's
// key; a row that was not written holds zero or the existing row's key; never a key no
// row has.
func TestPluginOnConflict(t *testing.T) {
	db, _ := openStmt(t)
	existing := func(t *testing.T, email string) int64 {
		t.Helper()
		m := Member{Email: email, Name: "old"}
		if err := db.Create(&m).Error; err != nil {
			t.Fatal(err)
		}
		return m.ID
	}
	updates := []struct {
		name string
		c    clause.OnConflict
	}{
		{"DoUpdates", onConflictEmail},
		{"UpdateAll", clause.OnConflict{Columns: []clause.Column{{Name: "email"}}, UpdateAll: true}},
	}
	for _, u := range updates {
		t.Run(u.name+"Struct", func(t *testing.T) {
			old := existing(t, u.name+"@x")
			m := Member{Email: u.name + "@x", Name: "new"}
			if err := db.Clauses(u.c).Create(&m).Error; err != nil {
				t.Fatal(err)
			}
			if m.ID != old {
				t.Errorf("struct holds key %d, the updated row has %d", m.ID, old)
			}
			checkMembers(t, db, &m)
		})
		t.Run(u.name+"Slice", func(t *testing.T) {
			old := existing(t, u.name+"-mid@x")
			ms := []Member{{Email: u.name + "-a@x", Name: "a"}, {Email: u.name + "-mid@x", Name: "new"}, {Email: u.name + "-b@x", Name: "b"}}
			if err := db.Clauses(u.c).Create(&ms).Error; err != nil {
				t.Fatal(err)
			}
			if ms[1].ID != old {
				t.Errorf("updated row: struct holds key %d, its row has %d", ms[1].ID, old)
			}
			checkMembers(t, db, &ms[0], &ms[1], &ms[2])
		})
	}
	nothing := []struct {
		name string
		c    clause.OnConflict
	}{
		{"DoNothing", clause.OnConflict{DoNothing: true}},
		{"DoNothingEmail", clause.OnConflict{Columns: []clause.Column{{Name: "email"}}, DoNothing: true}},
	}
	for _, u := range nothing {
		t.Run(u.name+"Struct", func(t *testing.T) {
			old := existing(t, u.name+"@x")
			m := Member{Email: u.name + "@x", Name: "new"}
			if err := db.Clauses(u.c).Create(&m).Error; err != nil {
				t.Fatal(err)
			}
			if m.ID != 0 && m.ID != old {
				t.Errorf("struct holds key %d; the existing row has %d", m.ID, old)
			}
		})
		t.Run(u.name+"Slice", func(t *testing.T) {
			old := existing(t, u.name+"-mid@x")
			ms := []Member{{Email: u.name + "-a@x", Name: "a"}, {Email: u.name + "-mid@x", Name: "new"}, {Email: u.name + "-b@x", Name: "b"}}
			if err := db.Clauses(u.c).Create(&ms).Error; err != nil {
				t.Fatal(err)
			}
			if ms[1].ID != 0 && ms[1].ID != old {
				t.Errorf("row not written: struct holds key %d; the existing row has %d", ms[1].ID, old)
			}
			checkMembers(t, db, &ms[0], &ms[2])
		})
	}
	t.Run("DoUpdatesWhereStruct", func(t *testing.T) {
		old := existing(t, "where@x")
		skip := onConflictEmail
		skip.Where = clause.Where{Exprs: []clause.Expression{clause.Expr{SQL: "false"}}}
		m := Member{Email: "where@x", Name: "new"}
		if err := db.Clauses(skip).Create(&m).Error; err != nil {
			t.Fatal(err)
		}
		if m.ID != 0 && m.ID != old {
			t.Errorf("row not updated: struct holds key %d; the existing row has %d", m.ID, old)
		}
		upd := onConflictEmail
		upd.Where = clause.Where{Exprs: []clause.Expression{clause.Expr{SQL: "true"}}}
		m = Member{Email: "where@x", Name: "new"}
		if err := db.Clauses(upd).Create(&m).Error; err != nil {
			t.Fatal(err)
		}
		if m.ID != old {
			t.Errorf("row updated: struct holds key %d, its row has %d", m.ID, old)
		}
		ms := []Member{{Email: "where@x"}, {Email: "where2@x"}}
		if err := db.Clauses(skip).Create(&ms).Error; err == nil || !strings.Contains(err.Error(), "WHERE") {
			t.Errorf("DO UPDATE … WHERE on a slice: err = %v, want an error", err)
		}
		if ms[0].ID != 0 || ms[1].ID != 0 {
			t.Errorf("refused statement left keys: %d, %d", ms[0].ID, ms[1].ID)
		}
	})
	t.Run("DoUpdatesSliceOfMaps", func(t *testing.T) {
		rows := []map[string]any{{"email": "maps1@x", "name": "a"}, {"email": "maps2@x", "name": "b"}}
		err := db.Model(&Member{}).Clauses(onConflictEmail).Create(rows).Error
		if err == nil || !strings.Contains(err.Error(), "maps") {
			t.Errorf("err = %v, want an error", err)
		}
	})
	t.Run("KeyTarget", func(t *testing.T) {
		// On the key column alone, a conflicting row holds the key it conflicts with.
		old := existing(t, "key@x")
		ms := []Member{{Email: "key1@x", Name: "1"}, {ID: old, Email: "key@x", Name: "new"}}
		if err := db.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "id"}}, DoNothing: true}).Create(&ms).Error; err != nil {
			t.Fatal(err)
		}
		checkMembers(t, db, &ms[0], &ms[1])
	})
	t.Run("DoNothingAllConflict", func(t *testing.T) {
		old := existing(t, "all@x")
		ms := []Member{{Email: "all@x", Name: "new"}, {Email: "all@x", Name: "new"}}
		if err := db.Clauses(clause.OnConflict{DoNothing: true}).Create(&ms).Error; err != nil {
			t.Fatal(err)
		}
		for i, m := range ms {
			if m.ID != 0 && m.ID != old {
				t.Errorf("row %d not written: struct holds key %d; the existing row has %d", i, m.ID, old)
			}
		}
	})
	t.Run("DoNothingReturningOtherDefaults", func(t *testing.T) {
		// Widget's Stamp has a database default, so GORM reads it back with RETURNING.
		w := Widget{Code: "dup", Name: "old"}
		if err := db.Create(&w).Error; err != nil {
			t.Fatal(err)
		}
		ws := []Widget{{Code: "w-a", Name: "a"}, {Code: "dup", Name: "new"}, {Code: "w-b", Name: "b"}}
		if err := db.Clauses(clause.OnConflict{DoNothing: true}).Create(&ws).Error; err != nil {
			t.Fatal(err)
		}
		for _, x := range ws {
			var keys []int64
			if err := db.Model(&Widget{}).Where("code = ? AND name = ?", x.Code, x.Name).Pluck("id", &keys).Error; err != nil {
				t.Fatal(err)
			}
			switch {
			case len(keys) == 1 && keys[0] == x.ID:
			case len(keys) == 0 && (x.ID == 0 || x.ID == w.ID):
			default:
				t.Errorf("widget %s/%s holds key %d; rows with it: %v", x.Code, x.Name, x.ID, keys)
			}
		}
	})
	t.Run("DoNothingMap", func(t *testing.T) {
		old := existing(t, "map@x")
		row := map[string]any{"email": "map@x", "name": "new"}
		if err := db.Model(&Member{}).Clauses(clause.OnConflict{DoNothing: true}).Create(row).Error; err != nil {
			t.Fatal(err)
		}
		if id, ok := row["id"]; ok && id != nil && id != int64(0) && id != old {
			t.Errorf("map holds key %v; the existing row has %d", id, old)
		}
	})
	t.Run("DoUpdatesMap", func(t *testing.T) {
		old := existing(t, "mapu@x")
		row := map[string]any{"email": "mapu@x", "name": "new"}
		if err := db.Model(&Member{}).Clauses(onConflictEmail).Create(row).Error; err != nil {
			t.Fatal(err)
		}
		if id := row["id"]; id != old {
			t.Errorf("map holds key %v; the updated row has %d", id, old)
		}
	})
}

// Defect 3: DryRun and ToSQL send nothing, so they reserve nothing and leave the rows
// as they are.
func TestPluginDryRunReservesNothing(t *testing.T) {
	ctx := context.Background()
	db, p := openStmt(t)
	alloc, err := p.Allocator(ctx, &Member{})
	if err != nil {
		t.Fatal(err)
	}
	teamAlloc, err := p.Allocator(ctx, &Team{})
	if err != nil {
		t.Fatal(err)
	}
	before, teamBefore := alloc.Stats(), teamAlloc.Stats()

	dry := db.Session(&gorm.Session{DryRun: true})
	m := Member{Email: "dry@x", Name: "d", Notes: []MemberNote{{Text: "dry"}}}
	if err := dry.Create(&m).Error; err != nil {
		t.Fatal(err)
	}
	if m.ID != 0 || m.Notes[0].ID != 0 {
		t.Errorf("DryRun wrote keys into the structs: %d, %d", m.ID, m.Notes[0].ID)
	}
	ms := []Member{{Email: "dry1@x"}, {Email: "dry2@x"}}
	if err := dry.CreateInBatches(&ms, 1).Error; err != nil {
		t.Fatal(err)
	}
	if ms[0].ID != 0 || ms[1].ID != 0 {
		t.Errorf("DryRun CreateInBatches wrote keys: %d, %d", ms[0].ID, ms[1].ID)
	}
	tm := Team{Name: "dry"}
	sql := db.ToSQL(func(tx *gorm.DB) *gorm.DB { return tx.Create(&tm) })
	if tm.ID != 0 {
		t.Errorf("ToSQL wrote key %d into the struct", tm.ID)
	}
	if !strings.HasPrefix(sql, `INSERT INTO "teams"`) {
		t.Errorf("ToSQL: %s", sql)
	}
	row := map[string]any{"name": "dry"}
	_ = db.ToSQL(func(tx *gorm.DB) *gorm.DB { return tx.Model(&Team{}).Create(row) })
	if _, ok := row["id"]; ok {
		t.Errorf("ToSQL wrote a key into the map: %v", row)
	}
	if got := alloc.Stats(); got != before {
		t.Errorf("Member allocator after DryRun: %+v, before %+v", got, before)
	}
	if got := teamAlloc.Stats(); got != teamBefore {
		t.Errorf("Team allocator after ToSQL: %+v, before %+v", got, teamBefore)
	}
	if n := count(t, db, "members"); n != 0 {
		t.Errorf("%d members written", n)
	}
}

// Defect 5: a key beyond the range of a narrow key field is an error before anything is
// set or sent, never a wrapped key.
func TestPluginKeyOutOfRange(t *testing.T) {
	ctx := context.Background()
	db, _ := openStmt(t)
	// The next block is 2147483600 … 2147483649; int32 ends at 2147483647.
	if err := db.Exec(`SELECT setval('smalls_id_seq', 2147483550)`).Error; err != nil {
		t.Fatal(err)
	}
	rows := make([]Small, 40)
	for i := range rows {
		rows[i].Name = "in range"
	}
	if err := db.Create(&rows).Error; err != nil {
		t.Fatal(err)
	}
	if rows[39].ID != 2147483639 {
		t.Fatalf("last key %d, want 2147483639", rows[39].ID)
	}
	more := make([]Small, 10)
	err := db.Create(&more).Error
	if !errors.Is(err, repo.ErrKeyOutOfRange) {
		t.Fatalf("err = %v, want ErrKeyOutOfRange", err)
	}
	t.Log(err)
	for _, want := range []string{"Small", "ID", "SmallID (int32)", "2147483648", "2147483647", "int64"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
	for i, r := range more {
		if r.ID != 0 {
			t.Errorf("row %d got key %d", i, r.ID)
		}
	}
	if n := count(t, db, "smalls"); n != 40 {
		t.Errorf("%d rows in smalls, want 40", n)
	}
	var neg int64
	if err := db.Raw(`SELECT count(*) FROM smalls WHERE id < 0`).Scan(&neg).Error; err != nil || neg != 0 {
		t.Errorf("%d negative keys stored (%v)", neg, err)
	}

	// Through the Repository, which gets its keys from the same place.
	r := newRepo[Tiny](t, db)
	if err := db.Exec(`SELECT setval('tinies_id_seq', 201)`).Error; err != nil {
		t.Fatal(err)
	}
	tiny := make([]Tiny, 60) // 251 … 310: 256 and beyond do not fit a uint8
	err = r.CreateAll(ctx, tiny)
	if !errors.Is(err, repo.ErrKeyOutOfRange) {
		t.Fatalf("CreateAll: err = %v, want ErrKeyOutOfRange", err)
	}
	if !strings.Contains(err.Error(), "255") {
		t.Errorf("error does not name the field's range: %v", err)
	}
	if err := r.Copy(ctx, tiny); !errors.Is(err, repo.ErrKeyOutOfRange) {
		t.Fatalf("Copy: err = %v, want ErrKeyOutOfRange", err)
	}
	if n := count(t, db, "tinies"); n != 0 {
		t.Errorf("%d rows in tinies, want 0", n)
	}
}

// Hooks run after the plugin assigned the key: BeforeCreate sees it, and a key the hook
// sets is the one written and kept.
func TestPluginHookSetsKey(t *testing.T) {
	db, _ := openStmt(t)
	rows := []Hooked{{Name: "plain"}, {Name: "fixed"}}
	if err := db.Create(&rows).Error; err != nil {
		t.Fatal(err)
	}
	if rows[0].ID == 0 || rows[0].SeenKey != rows[0].ID {
		t.Errorf("BeforeCreate saw key %d, the row holds %d", rows[0].SeenKey, rows[0].ID)
	}
	if rows[1].ID != 7777 {
		t.Errorf("the hook's key was replaced: %d", rows[1].ID)
	}
	for _, r := range rows {
		var got Hooked
		if err := db.Take(&got, "name = ?", r.Name).Error; err != nil {
			t.Fatal(err)
		}
		if got.ID != r.ID {
			t.Errorf("%s: row has key %d, struct %d", r.Name, got.ID, r.ID)
		}
	}
	one := Hooked{Name: "fixed"}
	if err := db.Create(&one).Error; err == nil {
		t.Error("a second row with the hook's key 7777 was written")
	}
}
