package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"stripe-webhooks/migrations"
	"stripe-webhooks/pkg/store"
)

// A migrated database (Database, CreateDatabase) is a copy of a template:
// a database per server and per set of migrations, named sw_template_ and a
// hash of the embedded migration files, migrated once and then marked
// IS_TEMPLATE, with ALLOW_CONNECTIONS false so that no session can be
// connected to it when it is copied (CREATE DATABASE … TEMPLATE fails then).
//
// Two advisory locks on the server's postgres database make this safe
// across test binaries running at once:
//
//   - the build lock (buildLockSpace, 0), taken to check for a template,
//     to build it, and to drop other templates: one process at a time;
//   - a template's use lock (useLockSpace, hashtext(name)), taken shared,
//     under the build lock, by every process that copies the template,
//     and held on one connection until the process ends.
//
// A process that builds a template drops the other sw_template_ databases
// whose use lock it can take exclusively, that is which no running process
// copies: one template per migration set stays on the server, and the old
// ones go when a new set is first used. A template left half-built by a
// process that died (it is not yet IS_TEMPLATE) is dropped and built again.
const (
	templatePrefix = "sw_template_"
	buildLockSpace = int32(0x73777462) // "swtb"
	useLockSpace   = int32(0x73777475) // "swtu"
)

// templateNamePattern matches the names templateName gives, and only them:
// nothing else on a shared server is ever dropped as a template.
var templateNamePattern = regexp.MustCompile(`^sw_template_[0-9a-f]{16}$`)

// templateName is the template of the embedded migrations: sw_template_ and
// the first 16 hex digits of a SHA-256 over each file's name and content.
var templateName = sync.OnceValues(func() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", path, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash the migrations: %w", err)
	}
	return templatePrefix + hex.EncodeToString(h.Sum(nil)[:8]), nil
})

// templates holds, per server (its postgres database's URL), the connection
// that holds this process's use lock of the template.
var templates struct {
	mu      sync.Mutex
	holders map[string]*pgx.Conn
}

// useTemplate returns the name of the migrated template on the server of
// adminURL, building it first if needed. From then on the process holds
// the template's use lock.
func useTemplate(ctx context.Context, adminURL string) (string, error) {
	name, err := templateName()
	if err != nil {
		return "", err
	}
	templates.mu.Lock()
	defer templates.mu.Unlock()
	if c := templates.holders[adminURL]; c != nil {
		if c.Ping(ctx) == nil {
			return name, nil
		}
		_ = c.Close(ctx) // the server went away (a private one, stopped)
		delete(templates.holders, adminURL)
	}
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", redact(adminURL), err)
	}
	if err := holdTemplate(ctx, conn, adminURL, name); err != nil {
		_ = conn.Close(context.Background())
		return "", err
	}
	if templates.holders == nil {
		templates.holders = map[string]*pgx.Conn{}
	}
	templates.holders[adminURL] = conn
	return name, nil
}

// forgetTemplate closes the connection holding the use lock on the server
// of adminURL, so that the next useTemplate checks the template again.
func forgetTemplate(adminURL string) {
	templates.mu.Lock()
	defer templates.mu.Unlock()
	if c := templates.holders[adminURL]; c != nil {
		_ = c.Close(context.Background())
		delete(templates.holders, adminURL)
	}
}

// holdTemplate, under the build lock, builds template name if it is not
// ready and takes its use lock on conn; a process that built it then drops
// the templates nobody uses.
func holdTemplate(ctx context.Context, conn *pgx.Conn, adminURL, name string) (err error) {
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1, 0)", buildLockSpace); err != nil {
		return fmt.Errorf("template %s: build lock: %w", name, err)
	}
	defer func() {
		if _, uerr := conn.Exec(ctx, "SELECT pg_advisory_unlock($1, 0)", buildLockSpace); uerr != nil && err == nil {
			err = fmt.Errorf("template %s: build unlock: %w", name, uerr)
		}
	}()
	var exists, ready bool
	err = conn.QueryRow(ctx, "SELECT true, datistemplate FROM pg_database WHERE datname = $1", name).Scan(&exists, &ready)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("template %s: %w", name, err)
	}
	if !ready {
		if err := buildTemplate(ctx, conn, adminURL, name, exists); err != nil {
			return fmt.Errorf("template %s: %w", name, err)
		}
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock_shared($1, hashtext($2))", useLockSpace, name); err != nil {
		return fmt.Errorf("template %s: use lock: %w", name, err)
	}
	if !ready {
		dropUnusedTemplates(ctx, conn, name)
	}
	return nil
}

// buildTemplate creates template name, migrates it and marks it a template
// no one may connect to. A database of that name that exists but is not
// yet a template is what a build that died left: it is dropped first.
func buildTemplate(ctx context.Context, conn *pgx.Conn, adminURL, name string, exists bool) error {
	quoted := pgx.Identifier{name}.Sanitize()
	if exists {
		if _, err := conn.Exec(ctx, "DROP DATABASE "+quoted+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop an unfinished build: %w", err)
		}
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+quoted); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	dbURL, err := withDatabase(adminURL, name)
	if err != nil {
		return err
	}
	if _, err := store.Migrate(ctx, dbURL, store.MigrateOptions{}); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	// The migration's sessions may still be ending: CREATE DATABASE …
	// TEMPLATE waits up to 5 s for them.
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+quoted+" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"); err != nil {
		return fmt.Errorf("mark as template: %w", err)
	}
	return nil
}

// dropUnusedTemplates drops, best effort, the templates other than keep
// whose use lock no process holds. The caller holds the build lock.
func dropUnusedTemplates(ctx context.Context, conn *pgx.Conn, keep string) {
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 'sw\_template\_%' AND datname <> $1`, keep)
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, name := range names {
		if !templateNamePattern.MatchString(name) {
			continue
		}
		var free bool
		if conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, hashtext($2))", useLockSpace, name).Scan(&free) != nil || !free {
			continue
		}
		quoted := pgx.Identifier{name}.Sanitize()
		if _, err := conn.Exec(ctx, "ALTER DATABASE "+quoted+" WITH IS_TEMPLATE false"); err == nil {
			_, _ = conn.Exec(ctx, "DROP DATABASE "+quoted)
		}
		_, _ = conn.Exec(ctx, "SELECT pg_advisory_unlock($1, hashtext($2))", useLockSpace, name)
	}
}

// isMissingDatabase reports whether err is Postgres's "database does not
// exist" (a template dropped under a connection that had died).
func isMissingDatabase(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "3D000"
}
