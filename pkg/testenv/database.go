package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Database creates a uniquely named, migrated database on the Postgres server
// at serverURL (ServerURL when empty), drops it when the test ends, and returns
// its URL. It is a copy of the server's template of the current migrations
// (see template.go), which the first call on a server builds.
func Database(t testing.TB, serverURL string) string {
	t.Helper()
	return testDatabase(t, serverURL, true)
}

// EmptyDatabase creates a uniquely named database without any table on the
// Postgres server at serverURL (ServerURL when empty), drops it when the test
// ends, and returns its URL.
func EmptyDatabase(t testing.TB, serverURL string) string {
	t.Helper()
	return testDatabase(t, serverURL, false)
}

func testDatabase(t testing.TB, serverURL string, migrated bool) string {
	t.Helper()
	if serverURL == "" {
		serverURL = ServerURL()
	}
	// A first migrated database may wait for the template's migration.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dbURL, err := CreateDatabase(ctx, serverURL, "sw_test_", migrated)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := DropDatabase(ctx, serverURL, dbURL); err != nil {
			t.Logf("testenv: %v", err)
		}
	})
	return dbURL
}

// CreateDatabase creates a database named prefix and 12 random hex
// characters on the Postgres server at serverURL (ServerURL when empty),
// and returns its URL: a copy of the migrated template when migrated is
// set, else a database without any table. DropDatabase drops it. It needs
// no test, for tools such as the bench.
func CreateDatabase(ctx context.Context, serverURL, prefix string, migrated bool) (string, error) {
	if serverURL == "" {
		serverURL = ServerURL()
	}
	name := RandomName(prefix)
	dbURL, err := withDatabase(serverURL, name)
	if err != nil {
		return "", err
	}
	if !migrated {
		return dbURL, createDatabase(ctx, serverURL, "CREATE DATABASE "+name)
	}
	adminURL, err := withDatabase(serverURL, "postgres")
	if err != nil {
		return "", err
	}
	for attempt := 0; ; attempt++ {
		tmpl, err := useTemplate(ctx, adminURL)
		if err != nil {
			return "", err
		}
		err = createDatabase(ctx, serverURL, "CREATE DATABASE "+name+" TEMPLATE "+tmpl)
		if err == nil || attempt > 0 || !isMissingDatabase(err) {
			return dbURL, err
		}
		forgetTemplate(adminURL) // its holder had died: check it again
	}
}

func createDatabase(ctx context.Context, serverURL, stmt string) error {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", redact(serverURL), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	return nil
}

// DropDatabase drops the database of dbURL, whoever is connected to it,
// through the server's database at serverURL (ServerURL when empty).
func DropDatabase(ctx context.Context, serverURL, dbURL string) error {
	if serverURL == "" {
		serverURL = ServerURL()
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		return errors.New("drop database: the database URL cannot be parsed")
	}
	name := strings.TrimPrefix(u.Path, "/")
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// withDatabase is serverURL naming database name instead.
func withDatabase(serverURL, name string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", fmt.Errorf("%s cannot be parsed as a URL", redact(serverURL))
	}
	u.Path = "/" + name
	return u.String(), nil
}
