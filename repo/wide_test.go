package repo_test

import "strings"

// Wide has 40 columns, so a statement of 2,000 rows would need 80,000 bind parameters,
// more than PostgreSQL's 65,535.
type Wide struct {
	ID  int64 `gorm:"primaryKey;autoIncrement:false" idgen:"sequence:wides_id_seq;allocationSize:50"`
	N01 int64
	N02 int64
	S03 string
	N04 int64
	N05 int64
	S06 string
	N07 int64
	N08 int64
	S09 string
	N10 int64
	N11 int64
	S12 string
	N13 int64
	N14 int64
	S15 string
	N16 int64
	N17 int64
	S18 string
	N19 int64
	N20 int64
	S21 string
	N22 int64
	N23 int64
	S24 string
	N25 int64
	N26 int64
	S27 string
	N28 int64
	N29 int64
	S30 string
	N31 int64
	N32 int64
	S33 string
	N34 int64
	N35 int64
	S36 string
	N37 int64
	N38 int64
	S39 string
}

// wideColumns is the number of columns of Wide.
const wideColumns = 40

func wideSchema() string {
	return "CREATE SEQUENCE wides_id_seq INCREMENT 50;\nCREATE TABLE wides (id bigint PRIMARY KEY, " +
		strings.Join([]string{
			"n01 bigint NOT NULL",
			"n02 bigint NOT NULL",
			"s03 text NOT NULL",
			"n04 bigint NOT NULL",
			"n05 bigint NOT NULL",
			"s06 text NOT NULL",
			"n07 bigint NOT NULL",
			"n08 bigint NOT NULL",
			"s09 text NOT NULL",
			"n10 bigint NOT NULL",
			"n11 bigint NOT NULL",
			"s12 text NOT NULL",
			"n13 bigint NOT NULL",
			"n14 bigint NOT NULL",
			"s15 text NOT NULL",
			"n16 bigint NOT NULL",
			"n17 bigint NOT NULL",
			"s18 text NOT NULL",
			"n19 bigint NOT NULL",
			"n20 bigint NOT NULL",
			"s21 text NOT NULL",
			"n22 bigint NOT NULL",
			"n23 bigint NOT NULL",
			"s24 text NOT NULL",
			"n25 bigint NOT NULL",
			"n26 bigint NOT NULL",
			"s27 text NOT NULL",
			"n28 bigint NOT NULL",
			"n29 bigint NOT NULL",
			"s30 text NOT NULL",
			"n31 bigint NOT NULL",
			"n32 bigint NOT NULL",
			"s33 text NOT NULL",
			"n34 bigint NOT NULL",
			"n35 bigint NOT NULL",
			"s36 text NOT NULL",
			"n37 bigint NOT NULL",
			"n38 bigint NOT NULL",
			"s39 text NOT NULL",
		}, ", ") + ");\n"
}

// newWides returns n Wide rows whose every column is set.
func newWides(n int) []Wide {
	rows := make([]Wide, n)
	for i := range rows {
		w := &rows[i]
		w.N01 = int64(i * 1)
		w.N02 = int64(i * 2)
		w.S03 = "s"
		w.N04 = int64(i * 4)
		w.N05 = int64(i * 5)
		w.S06 = "s"
		w.N07 = int64(i * 7)
		w.N08 = int64(i * 8)
		w.S09 = "s"
		w.N10 = int64(i * 10)
		w.N11 = int64(i * 11)
		w.S12 = "s"
		w.N13 = int64(i * 13)
		w.N14 = int64(i * 14)
		w.S15 = "s"
		w.N16 = int64(i * 16)
		w.N17 = int64(i * 17)
		w.S18 = "s"
		w.N19 = int64(i * 19)
		w.N20 = int64(i * 20)
		w.S21 = "s"
		w.N22 = int64(i * 22)
		w.N23 = int64(i * 23)
		w.S24 = "s"
		w.N25 = int64(i * 25)
		w.N26 = int64(i * 26)
		w.S27 = "s"
		w.N28 = int64(i * 28)
		w.N29 = int64(i * 29)
		w.S30 = "s"
		w.N31 = int64(i * 31)
		w.N32 = int64(i * 32)
		w.S33 = "s"
		w.N34 = int64(i * 34)
		w.N35 = int64(i * 35)
		w.S36 = "s"
		w.N37 = int64(i * 37)
		w.N38 = int64(i * 38)
		w.S39 = "s"
	}
	return rows
}
