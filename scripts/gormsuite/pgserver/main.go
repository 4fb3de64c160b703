// Command pgserver starts a private PostgreSQL for scripts/gormsuite/run.sh, which runs GORM's own test
// suite against it: an ephemeral cluster from internal/pgtest (a temporary directory, a Unix socket only,
// superuser "postgres", run as the postgres OS user when started as root), with one empty database per name
// given.
//
//	pgserver -dsn-file /tmp/x/dsns plain plugin keyed
//
// Once every database exists it writes one line per database, "name<TAB>DSN", to the -dsn-file (atomically:
// the file appears complete or not at all), then runs until it gets SIGINT or SIGTERM, or its parent process
// exits, and then stops the server and removes its directory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/seqrepo/seqrepo/internal/pgtest"
)

func main() {
	dsnFile := flag.String("dsn-file", "", "write \"name<TAB>DSN\" lines here once the databases exist (required)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: pgserver -dsn-file FILE DBNAME...\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *dsnFile == "" || flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*dsnFile, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "pgserver:", err)
		os.Exit(1)
	}
}

func run(dsnFile string, dbnames []string) error {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	parent := os.Getppid()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pgtest.Start(ctx, pgtest.Options{})
	if err != nil {
		return err
	}
	defer func() {
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgserver:", err)
		}
	}()
	var lines strings.Builder
	for _, name := range dbnames {
		if err := createDatabase(ctx, c.DSN("postgres"), name); err != nil {
			return err
		}
		fmt.Fprintf(&lines, "%s\t%s\n", name, c.DSN(name))
	}
	if err := writeAtomically(dsnFile, lines.String()); err != nil {
		return err
	}

	// The server must not outlive the script that asked for it, even when the script is killed and cannot
	// signal: pgtest kills the server when this process dies, and this process exits when it is orphaned.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return nil
		case <-tick.C:
			if os.Getppid() != parent {
				return nil
			}
		}
	}
}

// createDatabase creates an empty database named name.
func createDatabase(ctx context.Context, adminDSN, name string) error {
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %q: %w", name, err)
	}
	return nil
}

// writeAtomically writes text to path through a temporary file in the same directory and a rename.
func writeAtomically(path, text string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return errors.Join(err, os.Remove(tmp))
	}
	return nil
}
