package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A secret may come from <NAME>_FILE; both set, or a file that cannot be
// read, stops the command with a line naming the variable (never the value).
func TestFileVariables(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	secrets := write("secret", "whsec_new\nwhsec_old\n")
	dbURL := write("db", "postgres://app:s3cret@db:5432/x?sslmode=require\n")
	c, err := LoadIngest([]string{"STRIPE_WEBHOOK_SECRET_FILE=" + secrets, "DATABASE_URL_FILE=" + dbURL})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.WebhookSecrets, "|"); got != "whsec_new|whsec_old" || c.WebhookSecretFile != secrets {
		t.Errorf("secrets = %q from %q", got, c.WebhookSecretFile)
	}
	if c.Database.URL != "postgres://app:s3cret@db:5432/x?sslmode=require" {
		t.Errorf("DATABASE_URL from its file = %q", c.Database.URL)
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"STRIPE_WEBHOOK_SECRET=whsec_x", "STRIPE_WEBHOOK_SECRET_FILE=" + secrets}, "STRIPE_WEBHOOK_SECRET and STRIPE_WEBHOOK_SECRET_FILE are both set"},
		{[]string{"STRIPE_WEBHOOK_SECRET_FILE=" + filepath.Join(dir, "missing")}, "STRIPE_WEBHOOK_SECRET_FILE: cannot read " + filepath.Join(dir, "missing")},
		{[]string{"STRIPE_WEBHOOK_SECRET_FILE=" + write("empty", "\n")}, "STRIPE_WEBHOOK_SECRET is required"},
		{[]string{"STRIPE_WEBHOOK_SECRET=whsec_x", "DATABASE_URL_FILE=" + write("bad", "mysql://x")}, "DATABASE_URL must be a postgres:// URL"},
	} {
		err := ingest(tc.env)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one naming %q", tc.env, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "whsec_x") || strings.Contains(err.Error(), "s3cret")) {
			t.Errorf("an error quotes a secret: %v", err)
		}
	}
	// An allowlist file may carry comments; a secret keeps its '#'.
	allow := write("allow", "# Stripe, taken 2026-09-04\n3.18.12.63\n10.0.0.0/8 # the proxies\n")
	hashed := write("hashed", "whsec_a#b\n")
	c, err = LoadIngest([]string{"STRIPE_IP_ALLOWLIST_FILE=" + allow, "STRIPE_WEBHOOK_SECRET_FILE=" + hashed})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.IPAllowlist, ","); got != "3.18.12.63,10.0.0.0/8" || c.WebhookSecrets[0] != "whsec_a#b" {
		t.Errorf("allowlist %q, secret kept whole: %v", got, c.WebhookSecrets[0] == "whsec_a#b")
	}
	if c.IPAllowlistFile != allow {
		t.Errorf("IPAllowlistFile = %q, want %q", c.IPAllowlistFile, allow)
	}
	// A command reads only the files of the variables it uses.
	if _, err := LoadAdmin([]string{"DATABASE_URL_FILE=" + dbURL, "STRIPE_WEBHOOK_SECRET_FILE=" + filepath.Join(dir, "missing")}); err != nil {
		t.Errorf("migrate read another command's file: %v", err)
	}
}

// An allowlist file that lists no address (a failed download of Stripe's
// list) stops the ingest at start, naming the variable: taken as no
// allowlist at all, it would let deliveries in from anywhere.
func TestEmptyIPAllowlistFileIsAStartupError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, content := range map[string]string{"empty": "", "blank": " \n\n", "comments": "# Stripe webhook IPs\n# taken: 2026-12-01\n"} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadIngest([]string{"STRIPE_WEBHOOK_SECRET=whsec_x", "STRIPE_IP_ALLOWLIST_FILE=" + path})
		if err == nil || !strings.Contains(err.Error(), "STRIPE_IP_ALLOWLIST_FILE") || !strings.Contains(err.Error(), "lists no address") {
			t.Errorf("%s allowlist file: error %v, want one naming STRIPE_IP_ALLOWLIST_FILE", name, err)
		}
	}
}
