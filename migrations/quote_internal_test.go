package migrations

import (
	"database/sql"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/seqrepo/seqrepo/internal/pgtest"
)

func TestQuoteIdent(t *testing.T) {
	t.Parallel()
	assert.Equal(t, `"orders"`, quoteIdent("orders"))
	assert.Equal(t, `"Orders"`, quoteIdent("Orders"))
	assert.Equal(t, `"a""b"`, quoteIdent(`a"b`))
	assert.Equal(t, `"x""; DROP TABLE t; --"`, quoteIdent(`x"; DROP TABLE t; --`))
	assert.Equal(t, `"s"."t"`, quoteQualified("s", "t"))
	assert.Equal(t, `"t"`, quoteQualified("", "t"))
	assert.Equal(t, `"a.b"`, quoteQualified("", "a.b"), "a dot is part of the name")
}

func TestQuoteLiteral(t *testing.T) {
	t.Parallel()
	assert.Equal(t, `'abc'`, quoteLiteral("abc"))
	assert.Equal(t, `'it''s'`, quoteLiteral("it's"))
	assert.Equal(t, `E'a\\b'`, quoteLiteral(`a\b`))
	assert.Equal(t, `E'a\x0ab''c'`, quoteLiteral("a\nb'c"))
	assert.Equal(t, `E'\x7f'`, quoteLiteral("\x7f"))
	assert.Equal(t, `'€'`, quoteLiteral("€"))
}

func TestCheckIdentifier(t *testing.T) {
	t.Parallel()
	assert.NoError(t, checkIdentifier("table", strings.Repeat("x", 63)))
	assert.NoError(t, checkIdentifier("table", `weird "; name`+"\n"))
	assert.ErrorContains(t, checkIdentifier("table", ""), "table is empty")
	assert.ErrorContains(t, checkIdentifier("table", strings.Repeat("é", 32)), "64 bytes")
	assert.ErrorContains(t, checkIdentifier("column", "a\x00"), "NUL")
}

// TestQuoteRoundTrip has PostgreSQL read back what quoteLiteral and quoteIdent wrote, in
// sessions with standard_conforming_strings on and off.
func TestQuoteRoundTrip(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("pgx", pgtest.NewDatabase(t))
	require.NoError(t, err)
	defer db.Close()
	inputs := []string{
		"", "plain", "it's", `back\slash`, `\'`, `'\`, "new\nline", "tab\tcr\r", "$$", "$seqrepo$",
		`"quoted"`, "-- +goose Down", "ünïcødé €", "\x01\x1f\x7f", `E'\x41'`,
	}
	var all strings.Builder
	for b := 1; b < 128; b++ {
		all.WriteByte(byte(b))
	}
	inputs = append(inputs, all.String())
	for _, conforming := range []string{"on", "off"} {
		conn, err := db.Conn(t.Context())
		require.NoError(t, err)
		_, err = conn.ExecContext(t.Context(), "SET standard_conforming_strings = "+conforming)
		require.NoError(t, err)
		for _, in := range inputs {
			lit := quoteLiteral(in)
			assert.NotContains(t, lit, "\n")
			var got string
			require.NoError(t, conn.QueryRowContext(t.Context(), "SELECT "+lit).Scan(&got), lit)
			assert.Equal(t, in, got, "standard_conforming_strings=%s: %s", conforming, lit)
			if checkIdentifier("name", in) == nil {
				rows, err := conn.QueryContext(t.Context(), "SELECT 1 AS "+quoteIdent(in))
				require.NoError(t, err, quoteIdent(in))
				cols, err := rows.Columns()
				require.NoError(t, err)
				require.NoError(t, rows.Close())
				assert.Equal(t, []string{in}, cols, "identifier %s", quoteIdent(in))
			}
		}
		require.NoError(t, conn.Close())
	}
}
