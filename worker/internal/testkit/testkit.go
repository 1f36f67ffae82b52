// Package testkit holds what the worker's tests share: a test's own
// database and gocraft/work namespace on the real Postgres and Redis, and
// ways to seed and read them. It is for tests only.
package testkit

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/payload"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
)

// Secret is the webhook signing secret the worker's tests sign with.
const Secret = "whsec_worker_tests"

// Backend is one test's database and gocraft/work namespace.
type Backend struct {
	DBURL     string
	RedisAddr string
	Namespace string
	Store     *store.Store
	Enqueuer  *queue.Enqueuer
}

// NewBackend is a backend on the shared Postgres and Redis.
func NewBackend(t *testing.T) *Backend {
	t.Helper()
	return NewBackendOn(t, "", testenv.RedisAddr())
}

// PrivateBackend is a backend on private Postgres and Redis servers, which
// a fault test stops and starts.
type PrivateBackend struct {
	*Backend
	PG *testenv.Postgres
	RD *testenv.Redis
}

// NewPrivateBackend starts private servers and a backend on them.
func NewPrivateBackend(t *testing.T) *PrivateBackend {
	t.Helper()
	pg, rd := testenv.StartPostgres(t), testenv.StartRedis(t)
	return &PrivateBackend{Backend: NewBackendOn(t, pg.URL("postgres"), rd.Addr()), PG: pg, RD: rd}
}

// NewBackendOn is a backend on the Postgres server at serverURL (the
// shared one when empty) and the Redis at redisAddr.
func NewBackendOn(t *testing.T, serverURL, redisAddr string) *Backend {
	t.Helper()
	b := &Backend{DBURL: testenv.Database(t, serverURL), RedisAddr: redisAddr}
	b.Namespace = testenv.Namespace(t, b.RedisAddr)
	st, err := store.Open(b.DBURL, store.Options{MaxConns: 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	b.Store = st
	b.Enqueuer = queue.NewEnqueuer(b.Namespace, b.Pool(t))
	return b
}

// Pool is a new redigo pool on the backend's Redis, closed when the test ends.
func (b *Backend) Pool(t *testing.T) *redis.Pool {
	t.Helper()
	pool := queue.NewPool(b.RedisConfig(t), 4)
	t.Cleanup(func() { _ = pool.Close() })
	return pool
}

// RedisConfig is the backend's Redis as the services configure it.
func (b *Backend) RedisConfig(t *testing.T) config.Redis {
	host, port := testenv.RedisHostPort(t, b.RedisAddr)
	return config.Redis{Host: host, Port: port, Namespace: b.Namespace}
}

// Env is the environment every command of this backend runs with, extra
// added (or overriding).
func (b *Backend) Env(t *testing.T, extra map[string]string) []string {
	host, port := testenv.RedisHostPort(t, b.RedisAddr)
	vars := map[string]string{
		"DATABASE_URL":          b.DBURL,
		"REDIS_HOST":            host,
		"REDIS_PORT":            strconv.Itoa(port),
		"WORK_NAMESPACE":        b.Namespace,
		"STRIPE_WEBHOOK_SECRET": Secret,
	}
	for k, v := range extra {
		vars[k] = v
	}
	return testenv.Environ(vars)
}

// Seed stores and queues events as the ingest does, and returns their ids.
func (b *Backend) Seed(t *testing.T, payloads ...[]byte) []string {
	t.Helper()
	ids := make([]string, 0, len(payloads))
	for _, p := range payloads {
		id, typ := envelope(t, p)
		row, err := b.Store.InsertEvent(context.Background(), store.NewEvent{StripeEventID: id, EventType: typ, Payload: p, ReceivedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Enqueuer.Enqueue(context.Background(), queue.Job{WebhookID: row.WebhookID, EventID: id, EventType: typ}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// StoreOnly stores an event, an hour old, without queueing it, as the
// ingest does when Redis is down.
func (b *Backend) StoreOnly(t *testing.T, payload []byte) {
	t.Helper()
	id, typ := envelope(t, payload)
	if _, err := b.Store.InsertEvent(context.Background(), store.NewEvent{StripeEventID: id, EventType: typ, Payload: payload, ReceivedAt: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	b.Store.DB().Exec("UPDATE webhook_events SET created_at = now() - interval '1 hour' WHERE stripe_event_id = ?", id)
	b.SyncPending(t)
}

// SyncPending brings pending_events in line with the state a test gave
// webhook_events' rows by hand (sw_sync_pending).
func (b *Backend) SyncPending(t *testing.T) {
	t.Helper()
	if err := b.Store.DB().Exec("SELECT sw_sync_pending()").Error; err != nil {
		t.Fatal(err)
	}
}

// EditPayload changes the stored payload of the event stripeEventID with
// edit, as ops fixing a bad payload by hand would.
func (b *Backend) EditPayload(t *testing.T, stripeEventID string, edit func(event map[string]any)) {
	t.Helper()
	row, err := b.Store.EventByStripeID(context.Background(), stripeEventID)
	if err != nil {
		t.Fatal(err)
	}
	var event map[string]any
	if err := json.Unmarshal(row.Payload, &event); err != nil {
		t.Fatal(err)
	}
	edit(event)
	p, err := json.Marshal(event)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Store.DB().Exec("UPDATE webhook_events SET payload = ? WHERE id = ?", payload.Encode(p), row.ID).Error; err != nil {
		t.Fatal(err)
	}
}

// DataObject is the data.object of event, for EditPayload.
func DataObject(event map[string]any) map[string]any {
	return event["data"].(map[string]any)["object"].(map[string]any)
}

// Count is how many events match where.
func (b *Backend) Count(t *testing.T, where string) int64 {
	t.Helper()
	var n int64
	if err := b.Store.DB().Model(&store.WebhookEvent{}).Where(where).Count(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

func envelope(t *testing.T, payload []byte) (id, typ string) {
	t.Helper()
	var e struct{ ID, Type string }
	if err := json.Unmarshal(payload, &e); err != nil {
		t.Fatal(err)
	}
	return e.ID, e.Type
}

// DialRedis is a plain connection to the Redis at addr, closed when the
// test ends.
func DialRedis(t *testing.T, addr string) redis.Conn {
	t.Helper()
	conn, err := redis.Dial("tcp", addr, redis.DialConnectTimeout(2*time.Second), redis.DialReadTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Counter is the value of the counter name (its first series) in reg.
func Counter(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// Set returns a stripefixture Mutate func that sets each key to the value
// after it.
func Set(kv ...any) func(map[string]any) {
	return func(o map[string]any) {
		for i := 0; i < len(kv); i += 2 {
			o[kv[i].(string)] = kv[i+1]
		}
	}
}

// Discard is a logger that writes nothing.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// Events returns n account.updated events, each for its own connected
// account acct_<prefix>_<i>.
func Events(n int, prefix string) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: fmt.Sprintf("acct_%s_%04d", prefix, i)})
	}
	return out
}

// EventID is the id of the event payload ("" if it has none).
func EventID(payload []byte) string {
	var e struct{ ID string }
	_ = json.Unmarshal(payload, &e)
	return e.ID
}
