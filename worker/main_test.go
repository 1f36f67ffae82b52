package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
)

// binDir holds bin/ingest and bin/worker built for the process-level tests.
var binDir string

func TestMain(m *testing.M) {
	testenv.RunWithBinaries(m, &binDir, "stripe-webhooks/ingest", "stripe-webhooks/worker")
}

const testSecret = "whsec_worker_tests"

// backend is one test's database and gocraft/work namespace.
type backend struct {
	dbURL     string
	redisAddr string
	namespace string
	store     *store.Store
	enqueuer  *queue.Enqueuer
}

func newBackend(t *testing.T) *backend {
	t.Helper()
	return newBackendOn(t, "", testenv.RedisAddr())
}

// privateBackend is a backend on private Postgres and Redis servers, which
// a fault test stops and starts.
type privateBackend struct {
	*backend
	pg *testenv.Postgres
	rd *testenv.Redis
}

func newPrivateBackend(t *testing.T) *privateBackend {
	t.Helper()
	pg, rd := testenv.StartPostgres(t), testenv.StartRedis(t)
	return &privateBackend{backend: newBackendOn(t, pg.URL("postgres"), rd.Addr()), pg: pg, rd: rd}
}

func newBackendOn(t *testing.T, serverURL, redisAddr string) *backend {
	t.Helper()
	b := &backend{dbURL: testenv.Database(t, serverURL), redisAddr: redisAddr}
	b.namespace = testenv.Namespace(t, b.redisAddr)
	st, err := store.Open(b.dbURL, store.Options{MaxConns: 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	b.store = st
	b.enqueuer = queue.NewEnqueuer(b.namespace, b.enqueuerPool(t))
	return b
}

func (b *backend) enqueuerPool(t *testing.T) *redis.Pool {
	t.Helper()
	pool := queue.NewPool(b.redisConfig(t), 4)
	t.Cleanup(func() { _ = pool.Close() })
	return pool
}

func (b *backend) redisConfig(t *testing.T) config.Redis {
	host, port := testenv.RedisHostPort(t, b.redisAddr)
	return config.Redis{Host: host, Port: port, Namespace: b.namespace}
}

// env is the environment every command of this backend runs with.
func (b *backend) env(t *testing.T, extra map[string]string) []string {
	host, port := testenv.RedisHostPort(t, b.redisAddr)
	vars := map[string]string{
		"DATABASE_URL":          b.dbURL,
		"REDIS_HOST":            host,
		"REDIS_PORT":            strconv.Itoa(port),
		"WORK_NAMESPACE":        b.namespace,
		"STRIPE_WEBHOOK_SECRET": testSecret,
	}
	for k, v := range extra {
		vars[k] = v
	}
	return testenv.Environ(vars)
}

// seed stores and queues events as the ingest does, and returns their ids.
func (b *backend) seed(t *testing.T, payloads ...[]byte) []string {
	t.Helper()
	ids := make([]string, 0, len(payloads))
	for _, p := range payloads {
		var e struct{ ID, Type string }
		if err := json.Unmarshal(p, &e); err != nil {
			t.Fatal(err)
		}
		row, err := b.store.InsertEvent(context.Background(), store.NewEvent{StripeEventID: e.ID, EventType: e.Type, Payload: p, ReceivedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.enqueuer.Enqueue(context.Background(), queue.Job{WebhookID: row.WebhookID, EventID: e.ID, EventType: e.Type}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	return ids
}

// storeOnly stores an event without queueing it, as the ingest does when
// Redis is down.
func (b *backend) storeOnly(t *testing.T, payload []byte) {
	t.Helper()
	var e struct{ ID, Type string }
	if err := json.Unmarshal(payload, &e); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.InsertEvent(context.Background(), store.NewEvent{StripeEventID: e.ID, EventType: e.Type, Payload: payload, ReceivedAt: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	b.store.DB().Exec("UPDATE webhook_events SET created_at = now() - interval '1 hour' WHERE stripe_event_id = ?", e.ID)
}

func (b *backend) count(t *testing.T, where string) int64 {
	t.Helper()
	var n int64
	if err := b.store.DB().Model(&store.WebhookEvent{}).Where(where).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

// service is a command run in-process through run().
type service struct {
	base   string
	logs   *testenv.Buffer
	cancel context.CancelFunc
	done   chan error
}

// startWorker runs the worker pool in-process until the test ends.
func startWorker(t *testing.T, b *backend, extra map[string]string) *service {
	t.Helper()
	port := testenv.FreePort(t)
	vars := map[string]string{"WORKER_HTTP_PORT": strconv.Itoa(port)}
	for k, v := range extra {
		vars[k] = v
	}
	return startService(t, []string{"worker"}, b.env(t, vars), fmt.Sprintf("http://127.0.0.1:%d", port), "/healthz")
}

// startWebUI runs `worker webui` in-process until the test ends.
func startWebUI(t *testing.T, b *backend, extra map[string]string) *service {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	vars := map[string]string{"WEBUI_ADDR": addr}
	for k, v := range extra {
		vars[k] = v
	}
	return startService(t, []string{"worker", "webui"}, b.env(t, vars), "http://"+addr, "/")
}

func startService(t *testing.T, args, environ []string, base, probe string) *service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &service{base: base, logs: &testenv.Buffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- run(ctx, args, environ, s.logs, s.logs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-s.done; err != nil {
			t.Errorf("%v returned %v", args, err)
		}
	})
	testenv.Eventually(t, 15*time.Second, strings.Join(args, " ")+" to serve", func() bool {
		select {
		case err := <-s.done:
			t.Fatalf("%v returned early: %v\n%s", args, err, s.logs.String())
		default:
		}
		resp, err := http.Get(base + probe)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode < 500
	})
	return s
}

// process is a built binary run as a child process.
type process = testenv.Process

func startProcess(t *testing.T, name string, args []string, environ []string, base, probe string) *process {
	t.Helper()
	return testenv.StartProcess(t, filepath.Join(binDir, name), args, environ, base, probe)
}

func (s *service) get(t *testing.T, path string, header http.Header) (int, []byte) {
	t.Helper()
	return do(t, http.MethodGet, s.base+path, header)
}

func do(t *testing.T, method, url string, header http.Header) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func post(t *testing.T, url string, payload []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Stripe-Signature", stripefixture.Sign(payload, testSecret, time.Now()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
