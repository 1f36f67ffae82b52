package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
)

const testSecret = "whsec_test_ingest"

// ingest is one running ingest process (run in a goroutine) and its backends.
type ingest struct {
	t         *testing.T
	base      string
	store     *store.Store
	redisAddr string
	namespace string
	logs      *testenv.Buffer
	cancel    context.CancelFunc
	done      chan error
}

type options struct {
	env       map[string]string
	dbURL     string // default: a fresh database on the shared server
	redisAddr string // default: the shared Redis
}

func start(t *testing.T, o options) *ingest {
	t.Helper()
	if o.dbURL == "" {
		o.dbURL = testenv.Database(t, "")
	}
	if o.redisAddr == "" {
		o.redisAddr = testenv.RedisAddr()
	}
	ns := testenv.Namespace(t, o.redisAddr)
	host, rport := testenv.RedisHostPort(t, o.redisAddr)
	port := testenv.FreePort(t)
	vars := map[string]string{
		"DATABASE_URL":          o.dbURL,
		"REDIS_HOST":            host,
		"REDIS_PORT":            strconv.Itoa(rport),
		"WORK_NAMESPACE":        ns,
		"STRIPE_WEBHOOK_SECRET": testSecret,
		"PORT":                  strconv.Itoa(port),
	}
	for k, v := range o.env {
		vars[k] = v
	}
	if _, ok := vars["STRIPE_WEBHOOK_SECRET_FILE"]; ok {
		delete(vars, "STRIPE_WEBHOOK_SECRET") // both set is a start-up error
	}
	st, err := store.Open(o.dbURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	in := &ingest{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", port), store: st, redisAddr: o.redisAddr,
		namespace: ns, logs: &testenv.Buffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- run(ctx, []string{"ingest"}, testenv.Environ(vars), in.logs, in.logs) }()
	t.Cleanup(func() {
		cancel()
		if err := <-in.done; err != nil {
			t.Errorf("run returned %v", err)
		}
	})
	testenv.Eventually(t, 10*time.Second, "ingest /healthz", func() bool {
		select {
		case err := <-in.done:
			t.Fatalf("run returned early: %v\n%s", err, in.logs.String())
		default:
		}
		resp, err := http.Get(in.base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return in
}

type reply struct {
	status int
	body   map[string]any
	header http.Header
}

func (in *ingest) post(payload []byte, signature string) reply {
	in.t.Helper()
	req, err := http.NewRequest(http.MethodPost, in.base+WebhookPath, bytes.NewReader(payload))
	if err != nil {
		in.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if signature != "" {
		req.Header.Set("Stripe-Signature", signature)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	return decode(in.t, resp)
}

func (in *ingest) get(path string) reply {
	in.t.Helper()
	resp, err := http.Get(in.base + path)
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	return decode(in.t, resp)
}

func decode(t *testing.T, resp *http.Response) reply {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := reply{status: resp.StatusCode, header: resp.Header}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &r.body); err != nil {
			t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, b)
		}
	}
	return r
}

func (in *ingest) rows() int64 {
	in.t.Helper()
	var n int64
	if err := in.store.DB().Model(&store.WebhookEvent{}).Count(&n).Error; err != nil {
		in.t.Fatal(err)
	}
	return n
}

// queued returns the jobs waiting in the process-webhook list.
func (in *ingest) queued() []map[string]any {
	in.t.Helper()
	conn, err := redis.Dial("tcp", in.redisAddr)
	if err != nil {
		in.t.Fatal(err)
	}
	defer conn.Close()
	raw, err := redis.ByteSlices(conn.Do("LRANGE", queue.ListKey(in.namespace), 0, -1))
	if err != nil {
		in.t.Fatal(err)
	}
	jobs := make([]map[string]any, 0, len(raw))
	for _, r := range raw {
		var j map[string]any
		if err := json.Unmarshal(r, &j); err != nil {
			in.t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	return jobs
}

func signed(t *testing.T, typ string) ([]byte, string) {
	t.Helper()
	p := stripefixture.MustEvent(stripefixture.Options{Type: typ})
	return p, stripefixture.Sign(p, testSecret, time.Now())
}

func eventID(t *testing.T, payload []byte) string {
	t.Helper()
	var e struct{ ID string }
	if err := json.Unmarshal(payload, &e); err != nil {
		t.Fatal(err)
	}
	return e.ID
}

func TestDeliveryIsStoredAndQueued(t *testing.T) {
	t.Parallel()
	in := start(t, options{})
	payload, sig := signed(t, "account.updated")
	r := in.post(payload, sig)
	if r.status != http.StatusOK || r.body["received"] != true || r.body["duplicate"] != nil {
		t.Fatalf("answer = %d %v, want 200 {received:true}", r.status, r.body)
	}
	id := eventID(t, payload)
	row, err := in.store.EventByStripeID(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if row.EventType != "account.updated" || row.Processed {
		t.Errorf("row = %+v", row)
	}
	jobs := in.queued()
	if len(jobs) != 1 {
		t.Fatalf("queued %d jobs, want 1", len(jobs))
	}
	want := map[string]any{"webhook_id": row.ID, "event_id": id, "event_type": "account.updated"}
	if got := jobs[0]["args"]; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("job args = %v, want exactly %v", got, want)
	}
	if jobs[0]["name"] != queue.JobName {
		t.Errorf("job name = %v", jobs[0]["name"])
	}
	if strings.Contains(in.logs.String(), sig) || strings.Contains(in.logs.String(), "business_profile") {
		t.Error("logs contain the signature or the payload")
	}
}

// A redelivery of an event stored but not yet processed is queued again at
// once (its job may have been lost with Redis, or taken by a worker that
// died), not left for the sweeper; one already processed is not.
func TestRedeliveryOfAnUnprocessedEventIsQueuedAgain(t *testing.T) {
	t.Parallel()
	in := start(t, options{})
	payload, sig := signed(t, "account.updated")
	if r := in.post(payload, sig); r.status != http.StatusOK {
		t.Fatalf("first delivery: %d %v", r.status, r.body)
	}
	in.dropJobs()
	r := in.post(payload, stripefixture.Sign(payload, testSecret, time.Now()))
	if r.status != http.StatusOK || r.body["duplicate"] != true {
		t.Fatalf("redelivery: %d %v, want 200 duplicate", r.status, r.body)
	}
	row, err := in.store.EventByStripeID(context.Background(), eventID(t, payload))
	if err != nil {
		t.Fatal(err)
	}
	jobs := in.queued()
	if len(jobs) != 1 {
		t.Fatalf("queued %d jobs after the redelivery, want 1", len(jobs))
	}
	if args, _ := jobs[0]["args"].(map[string]any); args["webhook_id"] != row.ID {
		t.Errorf("job args = %v, want webhook_id %s", jobs[0]["args"], row.ID)
	}

	// Once processed, a redelivery queues nothing.
	in.dropJobs()
	if err := in.store.DB().Exec("UPDATE webhook_events SET processed = true, processed_at = now() WHERE id = ?", row.ID).Error; err != nil {
		t.Fatal(err)
	}
	if err := in.store.DB().Exec("SELECT sw_sync_pending()").Error; err != nil {
		t.Fatal(err)
	}
	if r := in.post(payload, stripefixture.Sign(payload, testSecret, time.Now())); r.status != http.StatusOK || r.body["duplicate"] != true {
		t.Fatalf("redelivery of a processed event: %d %v", r.status, r.body)
	}
	if jobs := in.queued(); len(jobs) != 0 {
		t.Errorf("a processed event's redelivery queued %d jobs, want 0", len(jobs))
	}
}

// dropJobs deletes the waiting jobs and their unique keys, as a Redis that
// lost its data would.
func (in *ingest) dropJobs() {
	in.t.Helper()
	testenv.DeleteNamespace(in.t, in.redisAddr, in.namespace)
	if jobs := in.queued(); len(jobs) != 0 {
		in.t.Fatalf("%d jobs left after deleting the namespace", len(jobs))
	}
}

// A batch insert that fails (a row Postgres refuses among concurrent
// deliveries) is logged with its cause and counted; the bad delivery alone
// is answered 503, its neighbours are stored.
func TestFailedBatchInsertIsLoggedAndCounted(t *testing.T) {
	t.Parallel()
	in := start(t, options{})
	// This test's database refuses the events of one type.
	if err := in.store.DB().Exec(`ALTER TABLE webhook_events ADD CONSTRAINT refused_in_this_test
		CHECK (event_type <> 'test.refused')`).Error; err != nil {
		t.Fatal(err)
	}
	const batch = 16
	for round := 0; round < 20 && !strings.Contains(in.logs.String(), "a batch insert failed"); round++ {
		var wg sync.WaitGroup
		for i := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				typ := "account.updated"
				if i == 0 {
					typ = "test.refused"
				}
				p := stripefixture.MustEvent(stripefixture.Options{Type: typ})
				r := in.post(p, stripefixture.Sign(p, testSecret, time.Now()))
				if (r.status == http.StatusOK) == (i == 0) {
					t.Errorf("round %d, delivery %d: %d %v", round, i, r.status, r.body)
				}
			}()
		}
		wg.Wait()
	}
	lines := logLines(t, in.logs.String(), "a batch insert failed; its deliveries are stored one by one")
	if len(lines) == 0 {
		t.Fatal("no batch insert failure logged in 20 rounds of concurrent deliveries")
	}
	for _, l := range lines {
		if l["error"] == nil || l["error"] == "" || l["deliveries"] == nil {
			t.Errorf("log line without its cause or size: %v", l)
		}
	}
	want := fmt.Sprintf("stripe_webhooks_batch_insert_failures_total %d", len(lines))
	if !strings.Contains(in.metricsText(), want) {
		t.Errorf("metrics do not say %q", want)
	}
}

func TestConcurrentDuplicatesStoreOneRow(t *testing.T) {
	t.Parallel()
	in := start(t, options{})
	payload, sig := signed(t, "capability.updated")
	const n = 25
	replies := make([]reply, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); replies[i] = in.post(payload, sig) }()
	}
	wg.Wait()
	fresh := 0
	for i, r := range replies {
		if r.status != http.StatusOK || r.body["received"] != true {
			t.Fatalf("delivery %d: %d %v", i, r.status, r.body)
		}
		if r.body["duplicate"] == nil {
			fresh++
		} else if r.body["duplicate"] != true {
			t.Errorf("delivery %d: duplicate = %v", i, r.body["duplicate"])
		}
	}
	if fresh != 1 {
		t.Errorf("%d answers without duplicate, want exactly 1", fresh)
	}
	if n := in.rows(); n != 1 {
		t.Errorf("rows = %d, want 1", n)
	}
	if jobs := in.queued(); len(jobs) != 1 {
		t.Errorf("queued %d jobs, want 1 (waiting copies merge)", len(jobs))
	}
}

func TestBadDeliveriesAreRejectedAndNotStored(t *testing.T) {
	t.Parallel()
	in := start(t, options{env: map[string]string{"WEBHOOK_REJECT_RATE_LIMIT": "0"}})
	good, _ := signed(t, "account.updated")
	now := time.Now()
	notJSON := []byte("this is not json")
	noType := []byte(`{"id":"evt_no_type","object":"event"}`)
	noID := []byte(`{"type":"account.updated","object":"event"}`)
	tests := []struct {
		name    string
		payload []byte
		sig     string
		status  int
		reason  string
	}{
		{"no signature", good, "", 400, "no_signature"},
		{"bad signature", good, stripefixture.Sign(good, "whsec_someone_else", now), 400, "bad_signature"},
		{"malformed signature", good, "t=abc,v1=zz", 400, "bad_signature"},
		{"too old", good, stripefixture.Sign(good, testSecret, now.Add(-10*time.Minute)), 400, "too_old"},
		{"not json", notJSON, stripefixture.Sign(notJSON, testSecret, now), 400, "not_an_event"},
		{"no type", noType, stripefixture.Sign(noType, testSecret, now), 400, "not_an_event"},
		{"no id", noID, stripefixture.Sign(noID, testSecret, now), 400, "not_an_event"},
	}
	for _, tt := range tests {
		r := in.post(tt.payload, tt.sig)
		if r.status != tt.status || r.body["reason"] != tt.reason || r.body["error"] == nil {
			t.Errorf("%s: answer %d %v, want %d with reason %s", tt.name, r.status, r.body, tt.status, tt.reason)
		}
	}
	if n := in.rows(); n != 0 {
		t.Errorf("rows = %d after bad deliveries, want 0", n)
	}
	if r := in.get(WebhookPath); r.status != http.StatusMethodNotAllowed {
		t.Errorf("GET %s = %d, want 405", WebhookPath, r.status)
	}
}

func TestAcceptsOtherAPIVersion(t *testing.T) {
	t.Parallel()
	in := start(t, options{})
	p := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", APIVersion: "2019-02-19"})
	if r := in.post(p, stripefixture.Sign(p, testSecret, time.Now())); r.status != http.StatusOK {
		t.Fatalf("answer = %d %v", r.status, r.body)
	}
	if n := in.rows(); n != 1 {
		t.Errorf("rows = %d, want 1", n)
	}
}

func TestSecretRoll(t *testing.T) {
	t.Parallel()
	t.Run("two configured secrets", func(t *testing.T) {
		t.Parallel()
		in := start(t, options{env: map[string]string{"STRIPE_WEBHOOK_SECRET": "whsec_old,whsec_new"}})
		for _, secret := range []string{"whsec_old", "whsec_new"} {
			p := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"})
			if r := in.post(p, stripefixture.Sign(p, secret, time.Now())); r.status != http.StatusOK {
				t.Errorf("signed with %s: %d %v", secret, r.status, r.body)
			}
		}
		p := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"})
		if r := in.post(p, stripefixture.Sign(p, "whsec_unknown", time.Now())); r.status != http.StatusBadRequest {
			t.Errorf("signed with an unknown secret: %d", r.status)
		}
		if n := in.rows(); n != 2 {
			t.Errorf("rows = %d, want 2", n)
		}
	})
	t.Run("header with two v1 signatures", func(t *testing.T) {
		t.Parallel()
		in := start(t, options{})
		p := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"})
		header := stripefixture.SignAll(p, []string{"whsec_rolled_out", testSecret}, time.Now())
		if strings.Count(header, "v1=") != 2 {
			t.Fatalf("header %q does not carry two signatures", header)
		}
		if r := in.post(p, header); r.status != http.StatusOK {
			t.Errorf("answer = %d %v", r.status, r.body)
		}
	})
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	p := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"})
	in := start(t, options{env: map[string]string{"WEBHOOK_MAX_BODY_BYTES": strconv.Itoa(len(p))}})
	if r := in.post(p, stripefixture.Sign(p, testSecret, time.Now())); r.status != http.StatusOK {
		t.Fatalf("body at the limit: %d %v", r.status, r.body)
	}
	over := append(stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"}), ' ')
	if len(over) != len(p)+1 {
		t.Fatalf("test event is %d bytes, want %d", len(over), len(p)+1)
	}
	r := in.post(over, stripefixture.Sign(over, testSecret, time.Now()))
	if r.status != http.StatusRequestEntityTooLarge || r.body["reason"] != "too_large" {
		t.Errorf("one byte over: %d %v, want 413", r.status, r.body)
	}
	if n := in.rows(); n != 1 {
		t.Errorf("rows = %d, want 1", n)
	}

	// Without a Content-Length (chunked), the same limit holds.
	chunked := func(payload []byte) reply {
		req, err := http.NewRequest(http.MethodPost, in.base+WebhookPath, io.MultiReader(bytes.NewReader(payload)))
		if err != nil {
			t.Fatal(err)
		}
		if req.ContentLength != 0 {
			t.Fatalf("request has length %d; net/http sends only an unknown length (0) chunked", req.ContentLength)
		}
		req.Header.Set("Stripe-Signature", stripefixture.Sign(payload, testSecret, time.Now()))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return decode(t, resp)
	}
	atLimit := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"})
	if r := chunked(atLimit); r.status != http.StatusOK {
		t.Errorf("chunked body at the limit: %d %v", r.status, r.body)
	}
	over = append(stripefixture.MustEvent(stripefixture.Options{Type: "account.updated"}), ' ')
	if r := chunked(over); r.status != http.StatusRequestEntityTooLarge || r.body["reason"] != "too_large" {
		t.Errorf("chunked, one byte over: %d %v, want 413", r.status, r.body)
	}
	if n := in.rows(); n != 2 {
		t.Errorf("rows = %d, want 2", n)
	}
}

func TestRejectionsAreRateLimitedPerAddress(t *testing.T) {
	t.Parallel()
	in := start(t, options{env: map[string]string{"WEBHOOK_REJECT_RATE_LIMIT": "3"}})
	p, sig := signed(t, "account.updated")
	for i := range 3 {
		if r := in.post(p, "t=1,v1=00"); r.status != http.StatusBadRequest {
			t.Fatalf("bad delivery %d: %d, want 400", i, r.status)
		}
	}
	r := in.post(p, "t=1,v1=00")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("4th bad delivery: %d (Retry-After %q), want 429", r.status, r.header.Get("Retry-After"))
	}
	// A verified delivery from the same address is never limited.
	if r := in.post(p, sig); r.status != http.StatusOK {
		t.Errorf("verified delivery after the limit: %d %v", r.status, r.body)
	}
}

func TestHealthRoutes(t *testing.T) {
	t.Parallel()
	in := start(t, options{})
	if r := in.get("/readyz"); r.status != http.StatusOK {
		t.Errorf("/readyz = %d", r.status)
	}
	r := in.get("/health")
	if r.status != http.StatusOK || r.body["status"] != "ok" || r.body["database"] != "up" || r.body["redis"] != "up" || r.body["unprocessed"] != float64(0) {
		t.Errorf("/health = %d %v", r.status, r.body)
	}
	// Over 1000 unprocessed events: degraded.
	err := in.store.DB().Exec(`WITH stored AS (INSERT INTO webhook_events (id, stripe_event_id, event_type, payload)
			SELECT sw_event_id(extract(epoch FROM now())::bigint, 'evt_backlog_' || g), 'evt_backlog_' || g, 'account.updated', '{}'
			FROM generate_series(1, 1001) g RETURNING id, created_at)
		INSERT INTO pending_events (id, created_at) SELECT id, created_at FROM stored`).Error
	if err != nil {
		t.Fatal(err)
	}
	r = in.get("/health")
	if r.status != http.StatusOK || r.body["status"] != "degraded" || r.body["unprocessed"] != float64(1001) {
		t.Errorf("/health with 1001 unprocessed = %d %v", r.status, r.body)
	}
	resp, err := http.Get(in.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "stripe_webhooks_store_duration_seconds") {
		t.Errorf("/metrics lacks stripe_webhooks_ series")
	}
}

func TestPostgresDownAnswers503AndKeepsServing(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t)
	in := start(t, options{dbURL: testenv.Database(t, pg.URL("postgres"))})
	p, sig := signed(t, "account.updated")
	pg.Stop()
	if r := in.post(p, sig); r.status != http.StatusServiceUnavailable {
		t.Fatalf("delivery with Postgres down: %d %v, want 503", r.status, r.body)
	}
	if r := in.get("/healthz"); r.status != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", r.status)
	}
	if r := in.get("/readyz"); r.status != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d, want 503", r.status)
	}
	if r := in.get("/health"); r.status != http.StatusServiceUnavailable || r.body["status"] != "down" || r.body["database"] != "down" {
		t.Errorf("/health = %d %v", r.status, r.body)
	}
	pg.Start()
	// Stripe delivers again; now it is stored.
	testenv.Eventually(t, 15*time.Second, "delivery to succeed after Postgres restarts", func() bool {
		return in.post(p, stripefixture.Sign(p, testSecret, time.Now())).status == http.StatusOK
	})
	if n := in.rows(); n != 1 {
		t.Errorf("rows = %d, want 1", n)
	}
}

func TestRedisDownStillStores(t *testing.T) {
	t.Parallel()
	rd := testenv.StartRedis(t)
	in := start(t, options{redisAddr: rd.Addr()})
	rd.Stop()
	p, sig := signed(t, "account.updated")
	r := in.post(p, sig)
	if r.status != http.StatusOK || r.body["received"] != true {
		t.Fatalf("delivery with Redis down: %d %v, want 200", r.status, r.body)
	}
	row, err := in.store.EventByStripeID(context.Background(), eventID(t, p))
	if err != nil {
		t.Fatalf("row not stored: %v", err)
	}
	if row.Processed {
		t.Error("row marked processed")
	}
	if r := in.get("/readyz"); r.status != http.StatusOK {
		t.Errorf("/readyz = %d, want 200 (Postgres is up)", r.status)
	}
	if r := in.get("/health"); r.body["status"] != "degraded" || r.body["redis"] != "down" {
		t.Errorf("/health = %v", r.body)
	}
	resp, err := http.Get(in.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "stripe_webhooks_enqueue_failures_total 1") {
		t.Errorf("enqueue failure not counted")
	}
	if !strings.Contains(in.logs.String(), "event stored but not queued") {
		t.Errorf("enqueue failure not logged")
	}
	rd.Start() // empty, as after a Redis loss
	if jobs := in.queued(); len(jobs) != 0 {
		t.Errorf("queue holds %d jobs, want 0: the event waits in Postgres for the sweeper", len(jobs))
	}
}

// SIGTERM (here: the context) lets a request in flight finish before run returns.
func TestShutdownFinishesInFlightRequests(t *testing.T) {
	t.Parallel()
	in := start(t, options{})
	// Hold the table so the delivery's INSERT waits: then it is in flight.
	tx := in.store.DB().Begin()
	if err := tx.Exec("LOCK TABLE webhook_events IN EXCLUSIVE MODE").Error; err != nil {
		t.Fatal(err)
	}
	p, sig := signed(t, "account.updated")
	answer := make(chan reply, 1)
	go func() { answer <- in.post(p, sig) }()
	testenv.Eventually(t, 10*time.Second, "the delivery's INSERT to wait on the lock", func() bool {
		var waiting int64
		err := in.store.DB().Raw(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO webhook_events%'`).Scan(&waiting).Error
		return err == nil && waiting == 1
	})
	in.cancel()
	testenv.Eventually(t, 5*time.Second, "the listener to close", func() bool {
		resp, err := http.Get(in.base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err != nil
	})
	select {
	case err := <-in.done:
		t.Fatalf("run returned with a request in flight: %v", err)
	default:
	}
	if err := tx.Commit().Error; err != nil {
		t.Fatal(err)
	}
	if r := <-answer; r.status != http.StatusOK {
		t.Errorf("in-flight request answered %d %v, want 200", r.status, r.body)
	}
	if n := in.rows(); n != 1 {
		t.Errorf("rows = %d, want 1", n)
	}
	err := <-in.done
	in.done <- err // for the cleanup
	if err != nil {
		t.Errorf("run returned %v", err)
	}
}

func TestMissingSecretIsAConfigError(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := run(context.Background(), []string{"ingest"}, nil, &out, &out)
	if code := config.ExitCode(err, &out); code != 2 {
		t.Fatalf("exit code = %d, want 2 (%v)", code, err)
	}
	if got := strings.TrimSpace(out.String()); got != "config: STRIPE_WEBHOOK_SECRET is required (the endpoint's whsec_… signing secret; comma-separate several during a roll)" {
		t.Errorf("output = %q", got)
	}
}
