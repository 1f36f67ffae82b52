package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
)

// latencies posts n signed deliveries from clients goroutines and returns
// each answer's status and latency.
func (in *ingest) latencies(n, clients int) ([]int, []time.Duration) {
	in.t.Helper()
	payloads := make([][]byte, n)
	for i := range payloads {
		payloads[i] = stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"})
	}
	statuses := make([]int, n)
	took := make([]time.Duration, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 30 * time.Second}
			for i := range next {
				req, _ := http.NewRequest(http.MethodPost, in.base+WebhookPath, bytes.NewReader(payloads[i]))
				req.Header.Set("Stripe-Signature", stripefixture.Sign(payloads[i], testSecret, time.Now()))
				began := time.Now()
				resp, err := client.Do(req)
				took[i] = time.Since(began)
				if err != nil {
					continue // status 0
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				statuses[i] = resp.StatusCode
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return statuses, took
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// A Redis that accepts connections but never answers must cost a delivery
// no more than the bounded enqueue wait: every committed delivery is
// answered 200, none waits for Redis's read timeout, and deliveries keep
// flowing; the events wait in Postgres for the sweeper. Once Redis answers
// again, deliveries are queued again.
func TestHungRedisDoesNotStallDeliveries(t *testing.T) {
	t.Parallel()
	const enqueueWait = 250 * time.Millisecond
	rd := testenv.StartRedis(t)
	in := start(t, options{redisAddr: rd.Addr(), env: map[string]string{"WEBHOOK_ENQUEUE_TIMEOUT": enqueueWait.String()}})

	statuses, took := in.latencies(100, 8)
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Fatalf("delivery %d with Redis up: %d", i, s)
		}
	}
	normal := percentile(took, 0.99)

	rd.Pause()
	began := time.Now()
	statuses, took = in.latencies(400, 8)
	elapsed := time.Since(began)
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Errorf("delivery %d while Redis hangs: status %d after %s, want 200", i, s, took[i].Round(time.Millisecond))
		}
	}
	p50, p99, worst := percentile(took, 0.5), percentile(took, 0.99), slices.Max(took)
	t.Logf("Redis up: p99 %s; Redis hung: p50 %s, p99 %s, max %s, 400 deliveries in %s (%.0f/s)",
		normal.Round(time.Millisecond), p50.Round(time.Millisecond), p99.Round(time.Millisecond),
		worst.Round(time.Millisecond), elapsed.Round(time.Millisecond), 400/elapsed.Seconds())
	// Normal latency plus the bounded wait, with room for the race
	// detector's jitter; Redis's 10 s read timeout is far beyond it.
	if bound := normal + enqueueWait + time.Second; worst > bound {
		t.Errorf("slowest answer while Redis hangs took %s, over %s (p99 with Redis up %s + enqueue wait %s + 1s)",
			worst.Round(time.Millisecond), bound.Round(time.Millisecond), normal.Round(time.Millisecond), enqueueWait)
	}
	if n := in.rows(); n != 500 {
		t.Errorf("rows = %d, want 500", n)
	}
	metrics := in.metricsText()
	if strings.Contains(metrics, `outcome="store_failed"`) {
		t.Error("deliveries counted as store_failed while only Redis hangs")
	}
	if !strings.Contains(in.logs.String(), "event stored but not queued") {
		t.Error("the enqueue failures were not logged")
	}

	// /health reports Redis down within its deadline rather than hanging.
	began = time.Now()
	if r := in.get("/health"); r.body["redis"] != "down" || r.body["status"] != "degraded" {
		t.Errorf("/health while Redis hangs = %d %v", r.status, r.body)
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("/health took %s while Redis hangs, want under 2 s plus scheduling", took.Round(time.Millisecond))
	}

	rd.Resume()
	// The connections stuck on the hung server were dropped, not reused:
	// a new delivery is queued again.
	testenv.Eventually(t, 10*time.Second, "a delivery to be queued after Redis answers again", func() bool {
		p, sig := signed(t, "account.updated")
		if r := in.post(p, sig); r.status != http.StatusOK {
			return false
		}
		id := eventID(t, p)
		for _, j := range in.queued() {
			if args, _ := j["args"].(map[string]any); args["event_id"] == id {
				return true
			}
		}
		return false
	})
}

// A Sentinel-managed master that hangs (SIGSTOP: connections accepted and
// kept, nothing answered) costs a delivery no more than the bounded enqueue
// wait, as a hung plain Redis does: the pool's ROLE checks of connections
// idle for a second and of new connections are asked under the enqueue's
// deadline. Every delivery made while the master is frozen and the
// sentinels fail over from it is answered 200 and stored; none gets a 503.
func TestHungSentinelMasterDoesNotStallDeliveries(t *testing.T) {
	t.Parallel()
	const enqueueWait = 250 * time.Millisecond
	rs := testenv.StartRedisSentinel(t)
	old := rs.Master()
	in := start(t, options{redisAddr: old, env: map[string]string{
		"WEBHOOK_ENQUEUE_TIMEOUT": enqueueWait.String(),
		"REDIS_SENTINEL_ADDRS":    strings.Join(rs.SentinelAddrs(), ","),
		"REDIS_SENTINEL_MASTER":   rs.MasterName,
	}})

	statuses, took := in.latencies(100, 8)
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Fatalf("delivery %d with the master up: %d", i, s)
		}
	}
	normal := percentile(took, 0.99)
	// The pool's connections idle for over a second: the next borrow of
	// each checks its ROLE.
	testenv.Consistently(t, 1200*time.Millisecond, "the master to stay "+old, func() bool { return rs.Master() == old })

	rs.PauseMaster()
	const n = 120
	began := time.Now()
	statuses, took = in.latencies(n, 8)
	elapsed := time.Since(began)
	failed := 0
	for i, s := range statuses {
		if s != http.StatusOK {
			failed++
			t.Errorf("delivery %d while the master hangs: status %d after %s, want 200", i, s, took[i].Round(time.Millisecond))
		}
	}
	p50, p99, worst := percentile(took, 0.5), percentile(took, 0.99), slices.Max(took)
	t.Logf("master up: p99 %s; master frozen (and failed over from): p50 %s, p99 %s, max %s, %d deliveries in %s, %d not 200",
		normal.Round(time.Millisecond), p50.Round(time.Millisecond), p99.Round(time.Millisecond),
		worst.Round(time.Millisecond), n, elapsed.Round(time.Millisecond), failed)
	if bound := normal + enqueueWait + time.Second; worst > bound {
		t.Errorf("slowest answer while the master hangs took %s, over %s (p99 with the master up %s + enqueue wait %s + 1s)",
			worst.Round(time.Millisecond), bound.Round(time.Millisecond), normal.Round(time.Millisecond), enqueueWait)
	}
	if rows := in.rows(); rows != 100+n {
		t.Errorf("rows = %d, want %d", rows, 100+n)
	}
}

// Every health route answers within its 2 s deadline when Postgres and
// Redis hang, and says they are down.
func TestHealthAnswersWithinDeadlineWhenBackendsHang(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	rd := testenv.StartRedis(t)
	in := start(t, options{dbURL: testenv.Database(t, pg.URL("postgres")), redisAddr: rd.Addr()})
	if r := in.get("/health"); r.body["status"] != "ok" {
		t.Fatalf("/health before the hang = %d %v", r.status, r.body)
	}
	pg.Pause()
	rd.Pause()
	for _, path := range []string{"/health", "/readyz", "/metrics", "/healthz"} {
		began := time.Now()
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Get(in.base + path)
		took := time.Since(began)
		if err != nil {
			t.Errorf("%s: %v after %s", path, err, took.Round(time.Millisecond))
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("%s answered %d in %s", path, resp.StatusCode, took.Round(time.Millisecond))
		if took > 3*time.Second {
			t.Errorf("%s took %s with both backends hung, want under 2 s plus scheduling", path, took.Round(time.Millisecond))
		}
		switch path {
		case "/health":
			if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"database":"down"`) || !strings.Contains(string(body), `"redis":"down"`) {
				t.Errorf("/health = %d %s", resp.StatusCode, body)
			}
		case "/readyz":
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("/readyz = %d, want 503", resp.StatusCode)
			}
		case "/metrics":
			for _, want := range []string{`stripe_webhooks_backend_up{backend="postgres"} 0`, `stripe_webhooks_backend_up{backend="redis"} 0`} {
				if !strings.Contains(string(body), want) {
					t.Errorf("/metrics lacks %s", want)
				}
			}
		case "/healthz":
			if resp.StatusCode != http.StatusOK {
				t.Errorf("/healthz = %d, want 200 (the process serves)", resp.StatusCode)
			}
		}
	}
}

func (in *ingest) metricsText() string {
	in.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.base+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
