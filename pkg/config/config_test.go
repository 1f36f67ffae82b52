package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadIngestDefaults(t *testing.T) {
	t.Parallel()
	c, err := LoadIngest([]string{"STRIPE_WEBHOOK_SECRET=whsec_a, whsec_b"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.WebhookSecrets, "|"); got != "whsec_a|whsec_b" {
		t.Errorf("secrets = %q", got)
	}
	if c.HTTPPort != 8080 || c.MaxBodyBytes != 1048576 || c.RejectRateLimit != 100 {
		t.Errorf("defaults wrong: %+v", c)
	}
	if c.Database.URL != "postgres://postgres@127.0.0.1:5432/stripe_webhooks?sslmode=disable" {
		t.Errorf("DATABASE_URL default = %q", c.Database.URL)
	}
	if c.Redis.Addr() != "127.0.0.1:6379" || c.Redis.Namespace != "stripe-webhooks" {
		t.Errorf("redis defaults wrong: %+v", c.Redis)
	}
}

func TestLoadWorkerDefaults(t *testing.T) {
	t.Parallel()
	c, err := LoadWorker(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Worker{
		Database:       c.Database,
		Redis:          c.Redis,
		Log:            Log{Level: "info"},
		Livemode:       Livemode{Mode: "any"},
		Concurrency:    5,
		MaxRetries:     5,
		RetryBaseDelay: 60 * time.Second,
		JobTimeout:     30 * time.Second,
		HTTPPort:       8081,
		SweepInterval:  30 * time.Second,
		SweepAfter:     60 * time.Second,
		Retention:      720 * time.Hour,
		StripeAPI:      StripeAPI{Base: "https://api.stripe.com", Rate: 20},

		ReconcileInterval: time.Hour,
		ResyncDebounce:    30 * time.Second,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v, want %+v", c, want)
	}
	if c, err := LoadWorker([]string{"WEBHOOK_RETENTION=0"}); err != nil || c.Retention != 0 {
		t.Errorf("WEBHOOK_RETENTION=0: %v, %v", c.Retention, err)
	}
}

// Each required or malformed variable gives one line that names it.
func TestLoadErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	secret := "STRIPE_WEBHOOK_SECRET=whsec_x"
	tests := []struct {
		name    string
		load    func([]string) error
		environ []string
		want    string
	}{
		{"secret missing", ingest, nil, "STRIPE_WEBHOOK_SECRET is required"},
		{"secret empty", ingest, []string{"STRIPE_WEBHOOK_SECRET= , "}, "STRIPE_WEBHOOK_SECRET is required"},
		{"port not a number", ingest, []string{secret, "PORT=http"}, "PORT is malformed"},
		{"port out of range", ingest, []string{secret, "PORT=70000"}, "PORT must be a TCP port"},
		{"body limit zero", ingest, []string{secret, "WEBHOOK_MAX_BODY_BYTES=0"}, "WEBHOOK_MAX_BODY_BYTES must be a positive"},
		{"rate limit negative", ingest, []string{secret, "WEBHOOK_REJECT_RATE_LIMIT=-1"}, "WEBHOOK_REJECT_RATE_LIMIT must be 0 or more"},
		{"database url", ingest, []string{secret, "DATABASE_URL=mysql://x"}, "DATABASE_URL must be a postgres:// URL"},
		{"redis port", ingest, []string{secret, "REDIS_PORT=abc"}, "REDIS_PORT is malformed"},
		{"redis db", ingest, []string{secret, "REDIS_DB=-2"}, "REDIS_DB must be 0 or more"},
		{"sentinel without master", worker, []string{"REDIS_SENTINEL_ADDRS=10.0.0.1:26379"}, "REDIS_SENTINEL_MASTER is required"},
		{"sentinel address", webui, []string{"REDIS_SENTINEL_ADDRS=10.0.0.1", "REDIS_SENTINEL_MASTER=m"}, "REDIS_SENTINEL_ADDRS must be host:port"},
		{"master without sentinels", ingest, []string{secret, "REDIS_SENTINEL_MASTER=m"}, "REDIS_SENTINEL_MASTER is set without REDIS_SENTINEL_ADDRS"},
		{"namespace", ingest, []string{secret, "WORK_NAMESPACE=a b"}, "WORK_NAMESPACE must be"},
		{"log level", ingest, []string{secret, "LOG_LEVEL=loud"}, "LOG_LEVEL must be"},
		{"concurrency", worker, []string{"WEBHOOK_WORKER_CONCURRENCY=0"}, "WEBHOOK_WORKER_CONCURRENCY must be a positive"},
		{"concurrency text", worker, []string{"WEBHOOK_WORKER_CONCURRENCY=five"}, "WEBHOOK_WORKER_CONCURRENCY is malformed: want a whole number"},
		{"max retries", worker, []string{"WEBHOOK_MAX_RETRIES=0"}, "WEBHOOK_MAX_RETRIES must be a positive"},
		{"base delay", worker, []string{"WEBHOOK_RETRY_BASE_DELAY=60"}, "WEBHOOK_RETRY_BASE_DELAY is malformed: want a Go duration"},
		{"job timeout", worker, []string{"WEBHOOK_JOB_TIMEOUT=-1s"}, "WEBHOOK_JOB_TIMEOUT must be a positive duration"},
		{"worker port", worker, []string{"WORKER_HTTP_PORT=x"}, "WORKER_HTTP_PORT is malformed"},
		{"sweep interval", worker, []string{"WEBHOOK_SWEEP_INTERVAL=0s"}, "WEBHOOK_SWEEP_INTERVAL must be a positive duration"},
		{"sweep after", worker, []string{"WEBHOOK_SWEEP_AFTER=soon"}, "WEBHOOK_SWEEP_AFTER is malformed"},
		{"retention", worker, []string{"WEBHOOK_RETENTION=-1h"}, "WEBHOOK_RETENTION must be 0"},
		{"retention under three days", worker, []string{"WEBHOOK_RETENTION=24h"}, "WEBHOOK_RETENTION must be 0 (keep forever) or at least 72h"},
		{"webui addr", webui, []string{"WEBUI_ADDR=nowhere"}, "WEBUI_ADDR must be host:port"},
		{"webui half credentials", webui, []string{"WEBUI_USERNAME=ops"}, "WEBUI_USERNAME and WEBUI_PASSWORD must be set together"},
		{"webui open without login", webui, []string{"WEBUI_ADDR=0.0.0.0:5040"}, "WEBUI_ADDR is not a loopback address"},
		{"webui all interfaces without login", webui, []string{"WEBUI_ADDR=:5040"}, "WEBUI_ADDR is not a loopback address"},
		{"migrate database url", migrate, []string{"DATABASE_URL=::"}, "DATABASE_URL must be a postgres:// URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.load(tt.environ)
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("want *config.Error, got %v", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not contain %q", msg, tt.want)
			}
			if strings.Contains(msg, "\n") || len(cerr.Problems) != 1 {
				t.Errorf("want exactly one problem on one line, got %q", msg)
			}
		})
	}
}

func TestErrorsNeverEchoSecrets(t *testing.T) {
	t.Parallel()
	err := ingest([]string{"STRIPE_WEBHOOK_SECRET=whsec_x", "DATABASE_URL=postgres://u:hunter2@/x%zz"})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("want an error without the password, got %v", err)
	}
}

// Each command requires only what it uses.
func TestCommandsRequireOnlyWhatTheyUse(t *testing.T) {
	t.Parallel()
	for name, load := range map[string]func([]string) error{"worker": worker, "webui": webui, "migrate": migrate} {
		if err := load(nil); err != nil {
			t.Errorf("%s with an empty environment: %v", name, err)
		}
	}
}

func TestWebUIBeyondLoopbackNeedsLogin(t *testing.T) {
	t.Parallel()
	for _, environ := range [][]string{
		{"WEBUI_ADDR=localhost:5040"},
		{"WEBUI_ADDR=[::1]:5040"},
		{"WEBUI_ADDR=0.0.0.0:5040", "WEBUI_USERNAME=ops", "WEBUI_PASSWORD=s3cret"},
	} {
		if err := webui(environ); err != nil {
			t.Errorf("%v: %v", environ, err)
		}
	}
}

func ingest(e []string) error  { _, err := LoadIngest(e); return err }
func worker(e []string) error  { _, err := LoadWorker(e); return err }
func webui(e []string) error   { _, err := LoadWebUI(e); return err }
func migrate(e []string) error { _, err := LoadAdmin(e); return err }

func TestVarNames(t *testing.T) {
	t.Parallel()
	got := strings.Join(VarNames(WebUI{}), ",")
	want := "DATABASE_URL,DATABASE_URL_FILE,LOG_LEVEL,REDIS_DB,REDIS_HOST,REDIS_PASSWORD,REDIS_PASSWORD_FILE,REDIS_PORT,REDIS_SENTINEL_ADDRS,REDIS_SENTINEL_MASTER,REDIS_SENTINEL_PASSWORD,REDIS_SENTINEL_PASSWORD_FILE,STRIPE_LIVEMODE,WEBUI_ADDR,WEBUI_PASSWORD,WEBUI_PASSWORD_FILE,WEBUI_USERNAME,WORK_NAMESPACE"
	if got != want {
		t.Errorf("VarNames(WebUI{}) = %s, want %s", got, want)
	}
}

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

func TestLivemodeAndAllowlist(t *testing.T) {
	t.Parallel()
	for mode, applies := range map[string][2]bool{"live": {true, false}, "test": {false, true}, "any": {true, true}} {
		c, err := LoadWorker([]string{"STRIPE_LIVEMODE=" + mode})
		if err != nil {
			t.Fatal(err)
		}
		if c.Applies(true) != applies[0] || c.Applies(false) != applies[1] {
			t.Errorf("STRIPE_LIVEMODE=%s applies live %v, test %v", mode, c.Applies(true), c.Applies(false))
		}
	}
	if err := worker([]string{"STRIPE_LIVEMODE=prod"}); err == nil || !strings.Contains(err.Error(), "STRIPE_LIVEMODE must be live, test or any") {
		t.Errorf("STRIPE_LIVEMODE=prod: %v", err)
	}
	a, err := ParseAllowlist([]string{"stripe", " 10.0.0.0/8", "192.0.2.7", "::ffff:198.51.100.1", ""})
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(a.Prefixes)
	if !a.Stripe || got != "[10.0.0.0/8 192.0.2.7/32 198.51.100.1/32]" {
		t.Errorf("allowlist = %v %s", a.Stripe, got)
	}
	if err := ingest([]string{"STRIPE_WEBHOOK_SECRET=whsec_x", "STRIPE_IP_ALLOWLIST=stripe,10.0.0.300"}); err == nil || !strings.Contains(err.Error(), "STRIPE_IP_ALLOWLIST") {
		t.Errorf("a bad allowlist: %v", err)
	}
	if a, _ := ParseAllowlist(nil); a.On() {
		t.Error("an empty allowlist restricts")
	}
}

func TestLoadReconcile(t *testing.T) {
	t.Parallel()
	if _, err := LoadReconcile(nil); err == nil || !strings.Contains(err.Error(), "STRIPE_API_KEY is required") {
		t.Errorf("reconcile without a key: %v", err)
	}
	err := worker([]string{"STRIPE_API_KEY=pk_live_secretish", "STRIPE_API_RATE=0", "STRIPE_API_BASE=ftp://x"})
	for _, want := range []string{"STRIPE_API_KEY must be", "STRIPE_API_RATE must be", "STRIPE_API_BASE must be"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "secretish") {
		t.Errorf("an error quotes the key: %v", err)
	}
	c, err := LoadReconcile([]string{"STRIPE_API_KEY=rk_test_x", "STRIPE_API_BASE=http://127.0.0.1:12111", "STRIPE_API_RATE=5"})
	if err != nil || c.Key != "rk_test_x" || c.Base != "http://127.0.0.1:12111" || c.Rate != 5 {
		t.Errorf("LoadReconcile = %+v, %v", c.StripeAPI, err)
	}
	// reconcile reads the workers' retention, and holds it to their rule.
	if c.Retention != 720*time.Hour {
		t.Errorf("LoadReconcile: retention %s, want the default 720h", c.Retention)
	}
	for env, want := range map[string]time.Duration{"WEBHOOK_RETENTION=0": 0, "WEBHOOK_RETENTION=96h": 96 * time.Hour} {
		if c, err := LoadReconcile([]string{"STRIPE_API_KEY=rk_test_x", env}); err != nil || c.Retention != want {
			t.Errorf("LoadReconcile(%s) = %s, %v", env, c.Retention, err)
		}
	}
	if _, err := LoadReconcile([]string{"STRIPE_API_KEY=rk_test_x", "WEBHOOK_RETENTION=24h"}); err == nil ||
		!strings.Contains(err.Error(), "WEBHOOK_RETENTION must be 0 (keep forever) or at least 72h") {
		t.Errorf("reconcile with a retention under three days: %v", err)
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
