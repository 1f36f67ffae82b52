package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

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
