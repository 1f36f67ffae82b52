package testenv

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"stripe-webhooks/pkg/store"
)

// A migrated database is a copy of the server's template: it holds the
// whole schema (migrating it again applies nothing), the template is
// marked so and refuses connections, and copies made at once all succeed.
func TestDatabaseIsACopyOfTheMigratedTemplate(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dbURL := Database(t, "")
	if n, err := store.Migrate(ctx, dbURL, store.MigrateOptions{}); err != nil || n != 0 {
		t.Fatalf("migrating a copy of the template again applied %d migrations, err %v; want 0", n, err)
	}
	if !hasTable(t, dbURL, "webhook_events") {
		t.Error("a migrated database lacks webhook_events")
	}
	if hasTable(t, EmptyDatabase(t, ""), "webhook_events") {
		t.Error("an empty database has webhook_events")
	}
	name, err := templateName()
	if err != nil {
		t.Fatal(err)
	}
	admin := pgConn(t, ServerURL())
	var isTemplate, allowConn bool
	if err := admin.QueryRow(ctx, "SELECT datistemplate, datallowconn FROM pg_database WHERE datname = $1", name).Scan(&isTemplate, &allowConn); err != nil {
		t.Fatalf("template %s: %v", name, err)
	}
	if !isTemplate || allowConn {
		t.Errorf("template %s: IS_TEMPLATE %v, ALLOW_CONNECTIONS %v; want true, false", name, isTemplate, allowConn)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			u, err := CreateDatabase(ctx, "", "sw_test_", true)
			if err == nil {
				err = DropDatabase(ctx, "", u)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("copies at once: %v", err)
		}
	}
}

// Test binaries started at once on a server without a template build it
// once, under the build lock: each gets a migrated copy, and one template
// is left.
func TestTemplateBuiltOnceAcrossProcesses(t *testing.T) {
	t.Parallel()
	pg := StartPostgres(t)
	const processes = 4
	var wg sync.WaitGroup
	outs := make([]string, processes)
	errs := make([]error, processes)
	for i := range processes {
		wg.Go(func() {
			cmd := exec.Command(os.Args[0], "-test.run=^TestTemplateHelperProcess$", "-test.v")
			cmd.Env = append(os.Environ(), "SW_TESTENV_TEMPLATE_SERVER="+pg.URL("postgres"))
			b, err := cmd.CombinedOutput()
			outs[i], errs[i] = string(b), err
		})
	}
	wg.Wait()
	for i := range processes {
		if errs[i] != nil || !strings.Contains(outs[i], "created sw_test_") {
			t.Errorf("process %d: %v\n%s", i, errs[i], outs[i])
		}
	}
	if got := databases(t, pg.URL("postgres"), "sw_template_%"); len(got) != 1 {
		t.Errorf("templates on the server: %v, want one", got)
	}
	if got := databases(t, pg.URL("postgres"), "sw_test_%"); len(got) != processes {
		t.Errorf("copies on the server: %v, want %d", got, processes)
	}
}

// TestTemplateHelperProcess is one test binary of
// TestTemplateBuiltOnceAcrossProcesses; it does nothing on its own.
func TestTemplateHelperProcess(t *testing.T) {
	server := os.Getenv("SW_TESTENV_TEMPLATE_SERVER")
	if server == "" {
		t.Skip("run by TestTemplateBuiltOnceAcrossProcesses")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dbURL, err := CreateDatabase(ctx, server, "sw_test_", true)
	if err != nil {
		t.Fatal(err)
	}
	if !hasTable(t, dbURL, "webhook_events") {
		t.Fatal("the copy lacks webhook_events")
	}
	t.Logf("created %s", strings.TrimPrefix(dbURL[strings.LastIndex(dbURL, "/"):], "/"))
}

// Building a template drops the other sw_template_<hash> databases that no
// process uses, keeps one whose use lock is held and every other database,
// and replaces a build that did not finish.
func TestTemplateBuildDropsOnlyUnusedTemplates(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pg := StartPostgres(t)
	admin := pgConn(t, pg.URL("postgres"))
	current, err := templateName()
	if err != nil {
		t.Fatal(err)
	}
	const unused, inUse = "sw_template_00000000000000aa", "sw_template_00000000000000bb"
	for _, stmt := range []string{
		"CREATE DATABASE " + unused + " IS_TEMPLATE true ALLOW_CONNECTIONS false",
		"CREATE DATABASE " + inUse + " IS_TEMPLATE true ALLOW_CONNECTIONS false",
		"CREATE DATABASE sw_template_notahash IS_TEMPLATE true",
		"CREATE DATABASE sw_other",
		"CREATE DATABASE " + current, // a build that died before its end
	} {
		if _, err := admin.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	leftover := pgConn(t, pg.URL(current))
	if _, err := leftover.Exec(ctx, "CREATE TABLE leftover (id int)"); err != nil {
		t.Fatal(err)
	}
	_ = leftover.Close(ctx)
	user := pgConn(t, pg.URL("postgres")) // another process, copying inUse
	if _, err := user.Exec(ctx, "SELECT pg_advisory_lock_shared($1, hashtext($2))", useLockSpace, inUse); err != nil {
		t.Fatal(err)
	}

	dbURL, err := CreateDatabase(ctx, pg.URL("postgres"), "sw_test_", true)
	if err != nil {
		t.Fatal(err)
	}
	if !hasTable(t, dbURL, "webhook_events") || hasTable(t, dbURL, "leftover") {
		t.Error("the copy is not of a template built afresh")
	}
	want := []string{"sw_other", current, inUse, "sw_template_notahash"}
	slices.Sort(want)
	got := databases(t, pg.URL("postgres"), "sw\\_%")
	got = slices.DeleteFunc(got, func(s string) bool { return strings.HasPrefix(s, "sw_test_") })
	if !slices.Equal(got, want) {
		t.Errorf("databases after the build: %v, want %v", got, want)
	}
}

func pgConn(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func hasTable(t *testing.T, dbURL, table string) bool {
	t.Helper()
	var ok bool
	if err := pgConn(t, dbURL).QueryRow(context.Background(), "SELECT to_regclass($1) IS NOT NULL", table).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// databases lists the server's databases whose names are LIKE pattern, sorted.
func databases(t *testing.T, serverURL, pattern string) []string {
	t.Helper()
	rows, err := pgConn(t, serverURL).Query(context.Background(), "SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY datname", pattern)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}
