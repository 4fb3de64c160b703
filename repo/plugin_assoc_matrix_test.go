package repo_test

import (
	"context"
	"fmt"
	"testing"

	"gorm.io/gorm"
)

// The association matrix: keyed models on both sides of every kind of GORM association,
// written through every GORM path that creates rows. After each, every struct must hold
// the key of its row, and every foreign key and join row must point at existing rows.

type MxCompany struct {
	ID   int64 `gorm:"primaryKey" idgen:"sequence:mx_companies_id_seq;allocationSize:50"`
	Name string
}

type MxUser struct {
	ID        int64 `gorm:"primaryKey" idgen:"sequence:mx_users_id_seq;allocationSize:50"`
	Name      string
	CompanyID *int64
	Company   *MxCompany   // belongs-to
	Profile   *MxProfile   `gorm:"foreignKey:UserID"`           // has-one
	Pets      []MxPet      `gorm:"foreignKey:UserID"`           // has-many, nested below
	Toys      []MxToy      `gorm:"polymorphic:Owner"`           // polymorphic has-many
	Languages []MxLanguage `gorm:"many2many:mx_user_languages"` // GORM's join table
	Groups    []MxGroup    `gorm:"many2many:mx_memberships"`    // SetupJoinTable: MxMembership
	ManagerID *int64
	Manager   *MxUser  // self-referential belongs-to
	Reports   []MxUser `gorm:"foreignKey:ManagerID"` // self-referential has-many
}

type MxProfile struct {
	ID     int64 `gorm:"primaryKey" idgen:"sequence:mx_profiles_id_seq;allocationSize:50"`
	UserID int64
	Name   string
}

type MxPet struct {
	ID     int64 `gorm:"primaryKey" idgen:"sequence:mx_pets_id_seq;allocationSize:50"`
	UserID int64
	Name   string
	Toys   []MxToy `gorm:"polymorphic:Owner"` // nested: user → pets → toys
}

type MxToy struct {
	ID        int64 `gorm:"primaryKey" idgen:"sequence:mx_toys_id_seq;allocationSize:50"`
	OwnerID   int64
	OwnerType string
	Name      string
}

type MxLanguage struct {
	ID   int64 `gorm:"primaryKey" idgen:"sequence:mx_languages_id_seq;allocationSize:50"`
	Name string
}

type MxGroup struct {
	ID   int64 `gorm:"primaryKey" idgen:"sequence:mx_groups_id_seq;allocationSize:50"`
	Name string
}

// MxMembership is the custom join model of MxUser.Groups. Its MxUserID carries a copy of
// MxUser's key tag, as a join model written by copying the key field would: a join
// table is not a keyed model, so the copy is ignored.
type MxMembership struct {
	MxUserID  int64 `gorm:"primaryKey" idgen:"sequence:mx_users_id_seq;allocationSize:50"`
	MxGroupID int64 `gorm:"primaryKey"`
	Note      string
}

const mxSchema = `
CREATE SEQUENCE mx_companies_id_seq INCREMENT 50;
CREATE TABLE mx_companies (id bigint PRIMARY KEY, name text NOT NULL);
CREATE SEQUENCE mx_users_id_seq INCREMENT 50;
CREATE TABLE mx_users (id bigint PRIMARY KEY, name text NOT NULL,
	company_id bigint REFERENCES mx_companies, manager_id bigint REFERENCES mx_users);
CREATE SEQUENCE mx_profiles_id_seq INCREMENT 50;
CREATE TABLE mx_profiles (id bigint PRIMARY KEY, user_id bigint NOT NULL REFERENCES mx_users, name text NOT NULL);
CREATE SEQUENCE mx_pets_id_seq INCREMENT 50;
CREATE TABLE mx_pets (id bigint PRIMARY KEY, user_id bigint NOT NULL REFERENCES mx_users, name text NOT NULL);
CREATE SEQUENCE mx_toys_id_seq INCREMENT 50;
CREATE TABLE mx_toys (id bigint PRIMARY KEY, owner_id bigint NOT NULL, owner_type text NOT NULL, name text NOT NULL);
CREATE SEQUENCE mx_languages_id_seq INCREMENT 50;
CREATE TABLE mx_languages (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE mx_user_languages (mx_user_id bigint REFERENCES mx_users, mx_language_id bigint REFERENCES mx_languages,
	PRIMARY KEY (mx_user_id, mx_language_id));
CREATE SEQUENCE mx_groups_id_seq INCREMENT 50;
CREATE TABLE mx_groups (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE mx_memberships (mx_user_id bigint REFERENCES mx_users, mx_group_id bigint REFERENCES mx_groups,
	note text NOT NULL DEFAULT '', PRIMARY KEY (mx_user_id, mx_group_id));
`

// mxGraph returns a user named name with one of every association, all new.
func mxGraph(name string) MxUser {
	return MxUser{
		Name:      name,
		Company:   &MxCompany{Name: name + " co"},
		Profile:   &MxProfile{Name: name + " profile"},
		Pets:      []MxPet{{Name: name + " pet1", Toys: []MxToy{{Name: name + " pet1 toy"}}}, {Name: name + " pet2"}},
		Toys:      []MxToy{{Name: name + " toy"}},
		Languages: []MxLanguage{{Name: name + " lang1"}, {Name: name + " lang2"}},
		Groups:    []MxGroup{{Name: name + " group"}},
		Manager:   &MxUser{Name: name + " manager"},
		Reports:   []MxUser{{Name: name + " report", Pets: []MxPet{{Name: name + " report pet"}}}},
	}
}

// mxCheck checks that every struct reachable from u holds the key of its row (the row
// with that key has the struct's name) and that the foreign keys and join rows say what
// the structs say.
func mxCheck(t *testing.T, db *gorm.DB, u *MxUser) {
	t.Helper()
	row := func(table string, id int64, name string) {
		t.Helper()
		var got []string
		if err := db.Table(table).Where("id = ?", id).Pluck("name", &got).Error; err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != name {
			t.Errorf("%s %q holds key %d; the row with that key is named %q", table, name, id, got)
		}
	}
	fk := func(table, column string, id, want int64) {
		t.Helper()
		var got []*int64
		if err := db.Table(table).Where("id = ?", id).Pluck(column, &got).Error; err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] == nil || *got[0] != want {
			t.Errorf("%s %d: %s is %v, want %d", table, id, column, got, want)
		}
	}
	join := func(table, a, b string, x, y int64) {
		t.Helper()
		var n int64
		if err := db.Table(table).Where(a+" = ? AND "+b+" = ?", x, y).Count(&n).Error; err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("%s: %d rows (%d, %d), want 1", table, n, x, y)
		}
	}
	toys := func(owner int64, ownerType string, ts []MxToy) {
		t.Helper()
		for _, toy := range ts {
			row("mx_toys", toy.ID, toy.Name)
			fk("mx_toys", "owner_id", toy.ID, owner)
			var typ []string
			db.Table("mx_toys").Where("id = ?", toy.ID).Pluck("owner_type", &typ)
			if len(typ) != 1 || typ[0] != ownerType {
				t.Errorf("toy %q: owner_type %q, want %q", toy.Name, typ, ownerType)
			}
		}
	}

	row("mx_users", u.ID, u.Name)
	if u.Company != nil {
		row("mx_companies", u.Company.ID, u.Company.Name)
		fk("mx_users", "company_id", u.ID, u.Company.ID)
	}
	if u.Profile != nil {
		row("mx_profiles", u.Profile.ID, u.Profile.Name)
		fk("mx_profiles", "user_id", u.Profile.ID, u.ID)
	}
	for _, p := range u.Pets {
		row("mx_pets", p.ID, p.Name)
		fk("mx_pets", "user_id", p.ID, u.ID)
		toys(p.ID, "mx_pets", p.Toys)
	}
	toys(u.ID, "mx_users", u.Toys)
	for _, l := range u.Languages {
		row("mx_languages", l.ID, l.Name)
		join("mx_user_languages", "mx_user_id", "mx_language_id", u.ID, l.ID)
	}
	for _, g := range u.Groups {
		row("mx_groups", g.ID, g.Name)
		join("mx_memberships", "mx_user_id", "mx_group_id", u.ID, g.ID)
	}
	if u.Manager != nil {
		mxCheck(t, db, u.Manager)
		fk("mx_users", "manager_id", u.ID, u.Manager.ID)
	}
	for i := range u.Reports {
		mxCheck(t, db, &u.Reports[i])
		fk("mx_users", "manager_id", u.Reports[i].ID, u.ID)
	}
}

func TestPluginAssociationMatrix(t *testing.T) {
	ctx := context.Background()
	db, _ := open(t)
	if err := db.Exec(mxSchema).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.SetupJoinTable(&MxUser{}, "Groups", &MxMembership{}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		run  func(t *testing.T, name string) []*MxUser
	}{
		{"Create", func(t *testing.T, name string) []*MxUser {
			u := mxGraph(name)
			mxDo(t, db.Create(&u))
			return []*MxUser{&u}
		}},
		{"CreateSlice", func(t *testing.T, name string) []*MxUser {
			us := []MxUser{mxGraph(name + " 1"), mxGraph(name + " 2")}
			mxDo(t, db.Create(&us))
			return []*MxUser{&us[0], &us[1]}
		}},
		{"CreateInBatches", func(t *testing.T, name string) []*MxUser {
			us := []MxUser{mxGraph(name + " 1"), mxGraph(name + " 2"), mxGraph(name + " 3")}
			mxDo(t, db.CreateInBatches(&us, 2))
			return []*MxUser{&us[0], &us[1], &us[2]}
		}},
		{"CreateBatchSizeSession", func(t *testing.T, name string) []*MxUser {
			us := []MxUser{mxGraph(name + " 1"), mxGraph(name + " 2"), mxGraph(name + " 3")}
			mxDo(t, db.Session(&gorm.Session{CreateBatchSize: 1}).Create(&us))
			return []*MxUser{&us[0], &us[1], &us[2]}
		}},
		{"SaveNew", func(t *testing.T, name string) []*MxUser {
			u := mxGraph(name)
			mxDo(t, db.Save(&u))
			return []*MxUser{&u}
		}},
		{"SaveExistingWithNewChildren", func(t *testing.T, name string) []*MxUser {
			u := MxUser{Name: name}
			mxDo(t, db.Create(&u))
			g := mxGraph(name)
			g.ID = u.ID
			mxDo(t, db.Save(&g))
			return []*MxUser{&g}
		}},
		{"FullSaveAssociations", func(t *testing.T, name string) []*MxUser {
			u := mxGraph(name)
			mxDo(t, db.Session(&gorm.Session{FullSaveAssociations: true}).Create(&u))
			return []*MxUser{&u}
		}},
		{"AssociationAppend", func(t *testing.T, name string) []*MxUser {
			u := MxUser{Name: name}
			mxDo(t, db.Create(&u))
			g := mxGraph(name)
			// Append saves the appended rows, not their own associations (GORM omits
			// those), so they have none here.
			g.Pets[0].Toys, g.Reports[0].Pets = nil, nil
			for _, a := range []struct {
				name string
				v    any
			}{
				{"Company", g.Company}, {"Profile", g.Profile}, {"Pets", &g.Pets}, {"Toys", &g.Toys},
				{"Languages", &g.Languages}, {"Groups", &g.Groups}, {"Manager", g.Manager}, {"Reports", &g.Reports},
			} {
				if err := db.Model(&u).Association(a.name).Append(a.v); err != nil {
					t.Fatalf("Append %s: %v", a.name, err)
				}
			}
			return []*MxUser{&u}
		}},
		{"AssociationReplace", func(t *testing.T, name string) []*MxUser {
			first := mxGraph(name + " old")
			first.Name = name
			mxDo(t, db.Create(&first))
			u := MxUser{ID: first.ID, Name: name}
			g := mxGraph(name)
			for _, a := range []struct {
				name string
				v    any
			}{
				// Replace unlinks the old has-one/has-many rows by setting their foreign
				// key NULL, which these NOT NULL columns refuse; so only the relations
				// whose old links can go.
				{"Company", g.Company}, {"Languages", &g.Languages}, {"Groups", &g.Groups},
				{"Manager", g.Manager},
			} {
				if err := db.Model(&u).Association(a.name).Replace(a.v); err != nil {
					t.Fatalf("Replace %s: %v", a.name, err)
				}
			}
			return []*MxUser{&u}
		}},
		{"FirstOrCreate", func(t *testing.T, name string) []*MxUser {
			u := mxGraph(name)
			mxDo(t, db.FirstOrCreate(&u, MxUser{Name: name}))
			again := MxUser{}
			mxDo(t, db.FirstOrCreate(&again, MxUser{Name: name}))
			if again.ID != u.ID {
				t.Errorf("FirstOrCreate found key %d, created %d", again.ID, u.ID)
			}
			return []*MxUser{&u}
		}},
		{"CreateAll", func(t *testing.T, name string) []*MxUser {
			r := newRepo[MxUser](t, db)
			us := []MxUser{mxGraph(name + " 1"), mxGraph(name + " 2")}
			if err := r.CreateAll(ctx, us); err != nil {
				t.Fatal(err)
			}
			return []*MxUser{&us[0], &us[1]}
		}},
		{"Generics", func(t *testing.T, name string) []*MxUser {
			u := mxGraph(name)
			if err := gorm.G[MxUser](db).Create(ctx, &u); err != nil {
				t.Fatal(err)
			}
			return []*MxUser{&u}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, u := range c.run(t, c.name) {
				mxCheck(t, db, u)
			}
		})
	}
	t.Run("NoOrphans", func(t *testing.T) {
		var n int64
		err := db.Raw(`SELECT count(*) FROM mx_toys t WHERE NOT EXISTS (
			SELECT 1 FROM mx_users u WHERE t.owner_type = 'mx_users' AND u.id = t.owner_id
			UNION ALL SELECT 1 FROM mx_pets p WHERE t.owner_type = 'mx_pets' AND p.id = t.owner_id)`).Scan(&n).Error
		if err != nil || n != 0 {
			t.Errorf("%d toys without their owner (%v)", n, err)
		}
	})
}

// mxDo fails the test on tx's error.
func mxDo(t *testing.T, tx *gorm.DB) {
	t.Helper()
	if tx.Error != nil {
		t.Fatal(fmt.Errorf("%w", tx.Error))
	}
}
