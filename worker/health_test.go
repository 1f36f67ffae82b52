package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"stripe-webhooks/worker/internal/testkit"
)

// The worker's probes and metrics answer within their 2 s deadline when
// Postgres and Redis hang, and say they are down.
func TestWorkerHealthAnswersWithinDeadlineWhenBackendsHang(t *testing.T) {
	t.Parallel()
	b := testkit.NewPrivateBackend(t)
	w := startWorker(t, b.Backend, nil)
	if code, body := w.get(t, "/readyz", nil); code != http.StatusOK {
		t.Fatalf("/readyz before the hang = %d %s", code, body)
	}
	b.PG.Pause()
	b.RD.Pause()
	for _, path := range []string{"/readyz", "/metrics", "/healthz"} {
		began := time.Now()
		code, body := w.get(t, path, nil)
		took := time.Since(began)
		t.Logf("%s answered %d in %s", path, code, took.Round(time.Millisecond))
		if took > 3*time.Second {
			t.Errorf("%s took %s with both backends hung, want under 2 s plus scheduling", path, took.Round(time.Millisecond))
		}
		switch path {
		case "/readyz":
			if code != http.StatusServiceUnavailable || !strings.Contains(string(body), `"database":"down"`) || !strings.Contains(string(body), `"redis":"down"`) {
				t.Errorf("/readyz = %d %s", code, body)
			}
		case "/metrics":
			for _, want := range []string{`stripe_webhooks_backend_up{backend="postgres"} 0`, `stripe_webhooks_backend_up{backend="redis"} 0`} {
				if !strings.Contains(string(body), want) {
					t.Errorf("/metrics lacks %s", want)
				}
			}
		case "/healthz":
			if code != http.StatusOK {
				t.Errorf("/healthz = %d, want 200", code)
			}
		}
	}
}
