package main

import (
	"context"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/jackc/pgx/v5"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/testenv"
)

// harness is what the measures share: a database of the bench's own (a
// copy of the migrated template on the server of DATABASE_URL) and a
// gocraft/work namespace, a store on them for what the services would do
// (storing and queueing a batch), and the bench's own connection for what
// only the bench does (emptying the tables, counting events).
type harness struct {
	serverURL, dbURL string
	ns               string
	pool             *redis.Pool
	st               *store.Store
	conn             *pgx.Conn
	// env is the services' environment: the bench's own, with the
	// database, namespace, Redis and signing secret it names.
	env []string
	// concurrency is the workers' WEBHOOK_WORKER_CONCURRENCY, as they read it.
	concurrency int
}

func newHarness(ctx context.Context) (_ *harness, err error) {
	h := &harness{serverURL: os.Getenv("DATABASE_URL")}
	if h.serverURL == "" {
		h.serverURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	redisCfg, err := config.LoadWebUI(os.Environ()) // REDIS_* from the environment, with defaults
	if err != nil {
		return nil, err
	}
	workerCfg, err := config.LoadWorker(os.Environ()) // the workers' concurrency, as they will read it
	if err != nil {
		return nil, err
	}
	h.concurrency = workerCfg.Concurrency
	defer func() {
		if err != nil {
			h.close()
		}
	}()
	if h.dbURL, err = testenv.CreateDatabase(ctx, h.serverURL, "sw_bench_", true); err != nil {
		return nil, err
	}
	h.ns = "sw-bench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	rc := redisCfg.Redis
	rc.Namespace = h.ns
	h.pool = queue.NewPool(rc, 16)
	if h.st, err = store.Open(h.dbURL, store.Options{MaxConns: 8}); err != nil {
		return nil, err
	}
	if h.conn, err = pgx.Connect(ctx, h.dbURL); err != nil {
		return nil, err
	}
	h.env = append(os.Environ(), "DATABASE_URL="+h.dbURL, "WORK_NAMESPACE="+h.ns, "STRIPE_WEBHOOK_SECRET="+secret,
		"REDIS_HOST="+rc.Host, "REDIS_PORT="+strconv.Itoa(rc.Port))
	return h, nil
}

// close empties the namespace and drops the database.
func (h *harness) close() {
	if h.conn != nil {
		_ = h.conn.Close(context.Background())
	}
	if h.st != nil {
		_ = h.st.Close()
	}
	if h.pool != nil {
		_ = h.clearNamespace()
		_ = h.pool.Close()
	}
	if h.dbURL != "" {
		_ = testenv.DropDatabase(context.Background(), h.serverURL, h.dbURL)
	}
}

func (h *harness) clearNamespace() error {
	conn := h.pool.Get()
	defer conn.Close()
	return testenv.ClearNamespace(conn, h.ns)
}

// reset empties the namespace and the tables between measures.
func (h *harness) reset(ctx context.Context) error {
	if err := h.clearNamespace(); err != nil {
		return err
	}
	_, err := h.conn.Exec(ctx, "TRUNCATE webhook_events, pending_events, stripe_connected_accounts, stripe_external_accounts")
	return err
}

// processed counts the events processed.
func (h *harness) processed(ctx context.Context) (int, error) {
	var n int
	err := h.conn.QueryRow(ctx, "SELECT count(*) FROM webhook_events WHERE processed").Scan(&n)
	return n, err
}

// unprocessed counts the events not processed.
func (h *harness) unprocessed(ctx context.Context) (int, error) {
	n, err := h.st.CountUnprocessed(ctx)
	return int(n), err
}

// anyUnprocessed reports whether an event is not processed: a light check
// to poll with while the workers drain.
func (h *harness) anyUnprocessed(ctx context.Context) (bool, error) {
	var waiting bool
	err := h.conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pending_events)").Scan(&waiting)
	return waiting, err
}

const webhookPath = "/api/billing/webhooks/stripe"

// startService starts a service binary on a free port, named to it by
// portVar (PORT, WORKER_HTTP_PORT), and waits until its /healthz answers.
// Its output goes to /dev/null (no copying goroutine in the bench), its
// errors to the bench's.
func startService(ctx context.Context, path string, args, env []string, portVar string) (*testenv.Process, error) {
	port, err := testenv.PickPort()
	if err != nil {
		return nil, err
	}
	return testenv.Launch(ctx, path, testenv.ProcessOptions{Args: args, Env: withEnv(env, portVar+"="+strconv.Itoa(port)),
		Base: "http://127.0.0.1:" + strconv.Itoa(port), Probe: "/healthz", Stderr: os.Stderr})
}

// withEnv is env with vars added (a later entry wins), in a slice of its own.
func withEnv(env []string, vars ...string) []string {
	return append(slices.Clip(env), vars...)
}
