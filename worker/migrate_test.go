package main

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"stripe-webhooks/migrations"
	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/testenv"
)

func TestMigrateCreatesDatabaseAndIsIdempotent(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	url := pg.URL("stripe_webhooks")
	files, _ := fs.Glob(migrations.FS, "*.sql")
	for i, want := range []string{fmt.Sprintf(`"applied":%d`, len(files)), `"applied":0`} {
		var out bytes.Buffer
		err := run(context.Background(), []string{"worker", "migrate", "--create-database"}, []string{"DATABASE_URL=" + url}, &out, &out)
		if err != nil {
			t.Fatalf("run %d: %v\n%s", i+1, err, out.String())
		}
		if !strings.Contains(out.String(), want) {
			t.Errorf("run %d: output %q lacks %s", i+1, out.String(), want)
		}
	}
}

func TestUnknownCommandIsAUsageError(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := run(context.Background(), []string{"worker", "nonsense"}, nil, &out, &out)
	if code := config.ExitCode(err, &out); code != 2 {
		t.Errorf("exit code = %d, want 2", code)
	}
	if !strings.Contains(out.String(), "usage: worker") {
		t.Errorf("output %q lacks usage", out.String())
	}
}

func TestMigrateBadDatabaseURLIsAConfigError(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := run(context.Background(), []string{"worker", "migrate"}, []string{"DATABASE_URL=mysql://nope"}, &out, &out)
	if code := config.ExitCode(err, &out); code != 2 {
		t.Errorf("exit code = %d, want 2 (%v)", code, err)
	}
}
