package config

import (
	"errors"
	"strings"
	"testing"
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
		{"webui half credentials, password only", webui, []string{"WEBUI_PASSWORD=s3cret"}, "WEBUI_USERNAME and WEBUI_PASSWORD must be set together"},
		{"webui auth unknown", webui, []string{"WEBUI_AUTH=oidc"}, "WEBUI_AUTH must be basic, proxy or none"},
		{"webui basic without login", webui, []string{"WEBUI_AUTH=basic"}, "WEBUI_AUTH=basic needs WEBUI_USERNAME and WEBUI_PASSWORD"},
		{"webui none beyond loopback", webui, []string{"WEBUI_AUTH=none", "WEBUI_ADDR=0.0.0.0:5040"}, "WEBUI_ADDR is not a loopback address"},
		{"webui none with a login", webui, []string{"WEBUI_AUTH=none", "WEBUI_USERNAME=ops", "WEBUI_PASSWORD=s3cret"}, "WEBUI_AUTH=none but WEBUI_USERNAME"},
		{"webui proxy without proxies", webui, []string{"WEBUI_AUTH=proxy", "WEBUI_OPERATOR_GROUPS=ops"}, "WEBUI_TRUSTED_PROXIES is required with WEBUI_AUTH=proxy"},
		{"webui proxy bad cidr", webui, []string{"WEBUI_AUTH=proxy", "WEBUI_OPERATOR_GROUPS=ops", "WEBUI_TRUSTED_PROXIES=10.0.0.0/33"}, "WEBUI_TRUSTED_PROXIES has \"10.0.0.0/33\""},
		{"webui proxy without operators", webui, []string{"WEBUI_AUTH=proxy", "WEBUI_TRUSTED_PROXIES=10.0.0.0/8", "WEBUI_OPERATOR_GROUPS= , "}, "WEBUI_OPERATOR_GROUPS is required with WEBUI_AUTH=proxy"},
		{"webui proxy bad user header", webui, []string{"WEBUI_AUTH=proxy", "WEBUI_TRUSTED_PROXIES=10.0.0.0/8", "WEBUI_OPERATOR_GROUPS=ops", "WEBUI_PROXY_USER_HEADER=X Email"}, "WEBUI_PROXY_USER_HEADER must be an HTTP header name"},
		{"webui groups without proxy", webui, []string{"WEBUI_USERNAME=ops", "WEBUI_PASSWORD=s3cret", "WEBUI_OPERATOR_GROUPS=ops"}, "WEBUI_OPERATOR_GROUPS is set but WEBUI_AUTH is basic"},
		{"webui trusted proxies without proxy", webui, []string{"WEBUI_TRUSTED_PROXIES=127.0.0.1"}, "WEBUI_TRUSTED_PROXIES is set but WEBUI_AUTH is none"},
		{"webui viewers without proxy", webui, []string{"WEBUI_AUTH=none", "WEBUI_VIEWER_GROUPS=support"}, "WEBUI_VIEWER_GROUPS is set but WEBUI_AUTH is none"},
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

func ingest(e []string) error  { _, err := LoadIngest(e); return err }
func worker(e []string) error  { _, err := LoadWorker(e); return err }
func webui(e []string) error   { _, err := LoadWebUI(e); return err }
func migrate(e []string) error { _, err := LoadAdmin(e); return err }

func TestVarNames(t *testing.T) {
	t.Parallel()
	got := strings.Join(VarNames(WebUI{}), ",")
	want := "DATABASE_URL,DATABASE_URL_FILE,LOG_LEVEL,REDIS_DB,REDIS_HOST,REDIS_PASSWORD,REDIS_PASSWORD_FILE,REDIS_PORT,REDIS_SENTINEL_ADDRS,REDIS_SENTINEL_MASTER,REDIS_SENTINEL_PASSWORD,REDIS_SENTINEL_PASSWORD_FILE,STRIPE_LIVEMODE,WEBUI_ADDR,WEBUI_AUTH,WEBUI_OPERATOR_GROUPS,WEBUI_PASSWORD,WEBUI_PASSWORD_FILE,WEBUI_PROXY_GROUPS_HEADER,WEBUI_PROXY_USER_HEADER,WEBUI_TRUSTED_PROXIES,WEBUI_USERNAME,WEBUI_VIEWER_GROUPS,WORK_NAMESPACE"
	if got != want {
		t.Errorf("VarNames(WebUI{}) = %s, want %s", got, want)
	}
}
