package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
	"stripe-webhooks/worker/internal/testkit"
)

// fastSweep makes the sweeper look every 500ms at events older than 2s.
var fastSweep = map[string]string{"WEBHOOK_SWEEP_INTERVAL": "500ms", "WEBHOOK_SWEEP_AFTER": "2s"}

func merge(maps ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range maps {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func startIngest(t *testing.T, b *testkit.Backend, extra ...map[string]string) *process {
	t.Helper()
	port := testenv.FreePort(t)
	return startProcess(t, "ingest", nil, b.Env(t, merge(append(extra, map[string]string{"PORT": strconv.Itoa(port)})...)),
		fmt.Sprintf("http://127.0.0.1:%d", port), "/healthz")
}

func startWorkerProcess(t *testing.T, b *testkit.Backend, extra map[string]string) *process {
	t.Helper()
	port := testenv.FreePort(t)
	return startProcess(t, "worker", nil, b.Env(t, merge(extra, map[string]string{"WORKER_HTTP_PORT": strconv.Itoa(port)})),
		fmt.Sprintf("http://127.0.0.1:%d", port), "/healthz")
}

// deliverAll posts payloads with 8 clients spread over the ingests and
// returns each answer's status by event id.
func deliverAll(t *testing.T, ingests []*process, payloads [][]byte) map[string]int {
	t.Helper()
	var mu sync.Mutex
	status := map[string]int{}
	work := make(chan int)
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				p := payloads[i]
				code := postNoFail(ingests[(i+c)%len(ingests)].Base+"/api/billing/webhooks/stripe", p)
				mu.Lock()
				id := testkit.EventID(p)
				if prev, ok := status[id]; !ok || prev != http.StatusOK {
					status[id] = code
				}
				mu.Unlock()
			}
		}()
	}
	for i := range payloads {
		work <- i
	}
	close(work)
	wg.Wait()
	return status
}

func postNoFail(url string, payload []byte) int {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(string(payload)))
	req.Header.Set("Stripe-Signature", stripefixture.Sign(payload, testkit.Secret, time.Now()))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// logLine is what the tests read of a JSON log line.
type logLine struct {
	Time time.Time `json:"time"`
	Msg  string    `json:"msg"`
	ID   string    `json:"stripe_event_id"`
}

// eachLogLine calls fn with every JSON line of logs.
func eachLogLine(logs string, fn func(logLine)) {
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line logLine
		if json.Unmarshal(sc.Bytes(), &line) == nil {
			fn(line)
		}
	}
}

// appliedCounts counts, per event id, the "event processed" lines in worker logs.
func appliedCounts(logs ...string) map[string]int {
	counts := map[string]int{}
	for _, l := range logs {
		eachLogLine(l, func(line logLine) {
			if line.Msg == "event processed" {
				counts[line.ID]++
			}
		})
	}
	return counts
}

func processedIn(t *testing.T, b *testkit.Backend, ids []string) int64 {
	t.Helper()
	var n int64
	if err := b.Store.DB().Raw("SELECT count(*) FROM webhook_events WHERE processed AND stripe_event_id IN ?", ids).Scan(&n).Error; err != nil {
		return -1
	}
	return n
}

// Redis stopped while 50 events arrive, then started empty: every event
// answered 200 is processed.
func TestFaultRedisLostWhileEventsArrive(t *testing.T) {
	t.Parallel()
	b := testkit.NewPrivateBackend(t)
	ingest := startIngest(t, b.Backend)
	startWorker(t, b.Backend, fastSweep)
	b.RD.Stop()
	status := deliverAll(t, []*process{ingest}, testkit.Events(50, "redis"))
	var ok []string
	for id, code := range status {
		if code == http.StatusOK {
			ok = append(ok, id)
		} else if code < 500 {
			t.Errorf("%s answered %d, want 200 or 5xx", id, code)
		}
	}
	if len(ok) == 0 {
		t.Fatal("no event answered 200 with Redis down")
	}
	b.RD.Start() // empty: every queued job is gone
	began := time.Now()
	testenv.Eventually(t, 60*time.Second, "every event answered 200 to be processed", func() bool {
		return processedIn(t, b.Backend, ok) == int64(len(ok))
	})
	t.Logf("recovery: %d of 50 answered 200 with Redis down; all processed %s after Redis came back empty",
		len(ok), time.Since(began).Round(10*time.Millisecond))
}

// Postgres stopped: deliveries get 503 and ingest keeps serving its health
// routes; started again, the redelivered events are stored and processed.
func TestFaultPostgresDown(t *testing.T) {
	t.Parallel()
	b := testkit.NewPrivateBackend(t)
	ingest := startIngest(t, b.Backend)
	startWorker(t, b.Backend, fastSweep)
	payloads := testkit.Events(20, "pg")
	b.PG.Stop()
	for id, code := range deliverAll(t, []*process{ingest}, payloads) {
		if code != http.StatusServiceUnavailable {
			t.Errorf("%s answered %d with Postgres down, want 503", id, code)
		}
	}
	if code, _ := do(t, http.MethodGet, ingest.Base+"/healthz", nil); code != http.StatusOK {
		t.Errorf("/healthz = %d with Postgres down, want 200", code)
	}
	if code, body := do(t, http.MethodGet, ingest.Base+"/health", nil); code != http.StatusServiceUnavailable || !strings.Contains(string(body), `"database":"down"`) {
		t.Errorf("/health = %d %s", code, body)
	}
	b.PG.Start()
	began := time.Now()
	// Stripe redelivers until it gets a 200.
	pending := payloads
	testenv.Eventually(t, 60*time.Second, "redeliveries to be stored", func() bool {
		var still [][]byte
		for id, code := range deliverAll(t, []*process{ingest}, pending) {
			if code != http.StatusOK {
				for _, p := range pending {
					if testkit.EventID(p) == id {
						still = append(still, p)
					}
				}
			}
		}
		pending = still
		return len(pending) == 0
	})
	ids := make([]string, len(payloads))
	for i, p := range payloads {
		ids[i] = testkit.EventID(p)
	}
	testenv.Eventually(t, 60*time.Second, "redelivered events to be processed", func() bool {
		return processedIn(t, b.Backend, ids) == int64(len(ids))
	})
	t.Logf("recovery: 20 events stored and processed %s after Postgres came back", time.Since(began).Round(10*time.Millisecond))
}

// A worker SIGKILLed a third of the way through 300 events, a new one
// started: all processed, none applied twice, none failed.
func TestFaultWorkerKilled(t *testing.T) {
	t.Parallel()
	b := testkit.NewPrivateBackend(t)
	b.Seed(t, testkit.Events(300, "kill")...)
	w1 := startWorkerProcess(t, b.Backend, fastSweep)
	testenv.Eventually(t, 30*time.Second, "a third processed", func() bool { return b.Count(t, "processed") >= 100 })
	if err := w1.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-w1.Done
	killedAt := b.Count(t, "processed")
	began := time.Now()
	w2 := startWorkerProcess(t, b.Backend, fastSweep)
	testenv.Eventually(t, 60*time.Second, "all 300 processed", func() bool { return b.Count(t, "processed") == 300 })
	if n := b.Count(t, "retry_count > 0 OR error IS NOT NULL"); n != 0 {
		t.Errorf("%d events have a failure recorded", n)
	}
	for id, n := range appliedCounts(w1.Logs.String(), w2.Logs.String()) {
		if n > 1 {
			t.Errorf("%s applied %d times", id, n)
		}
	}
	t.Logf("recovery: killed at %d of 300 processed; the rest processed %s after a new worker started",
		killedAt, time.Since(began).Round(10*time.Millisecond))
}

// Ingest SIGKILLed under load: every event it answered 200 for is stored
// and processed.
func TestFaultIngestKilled(t *testing.T) {
	t.Parallel()
	b := testkit.NewPrivateBackend(t)
	ingest := startIngest(t, b.Backend)
	startWorker(t, b.Backend, fastSweep)
	var mu sync.Mutex
	var ok []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := stripefixture.MustEvent(stripefixture.Options{Type: "capability.updated", Account: fmt.Sprintf("acct_ik_%d_%d", c, i)})
				if postNoFail(ingest.Base+"/api/billing/webhooks/stripe", p) == http.StatusOK {
					mu.Lock()
					ok = append(ok, testkit.EventID(p))
					mu.Unlock()
				}
			}
		}()
	}
	testenv.Eventually(t, 30*time.Second, "200 answers", func() bool { mu.Lock(); defer mu.Unlock(); return len(ok) >= 200 })
	_ = ingest.Cmd.Process.Signal(syscall.SIGKILL)
	<-ingest.Done
	close(stop)
	wg.Wait()
	began := time.Now()
	testenv.Eventually(t, 60*time.Second, "every event answered 200 to be processed", func() bool {
		return processedIn(t, b.Backend, ok) == int64(len(ok))
	})
	t.Logf("recovery: ingest killed after %d answers of 200; all processed %s later", len(ok), time.Since(began).Round(10*time.Millisecond))
}

// Two ingests and three workers on 1,500 deliveries with 10% duplicates:
// every distinct event stored once and applied once.
func TestFaultTwoIngestsThreeWorkers(t *testing.T) {
	t.Parallel()
	b := testkit.NewPrivateBackend(t)
	ingests := []*process{startIngest(t, b.Backend), startIngest(t, b.Backend)}
	var workers []*process
	for range 3 {
		workers = append(workers, startWorkerProcess(t, b.Backend, fastSweep))
	}
	distinct := testkit.Events(1350, "multi")
	deliveries := append([][]byte{}, distinct...)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 150 {
		deliveries = append(deliveries, distinct[rng.IntN(len(distinct))])
	}
	rng.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })
	began := time.Now()
	for id, code := range deliverAll(t, ingests, deliveries) {
		if code != http.StatusOK {
			t.Fatalf("%s answered %d", id, code)
		}
	}
	testenv.Eventually(t, 120*time.Second, "1,350 distinct events processed", func() bool { return b.Count(t, "processed") == 1350 })
	if n := b.Count(t, "true"); n != 1350 {
		t.Errorf("%d rows, want 1350", n)
	}
	// Each worker logs an event after its commit: wait for the last lines.
	var counts map[string]int
	testenv.Eventually(t, 10*time.Second, "an \"event processed\" line for each event", func() bool {
		var logs []string
		for _, w := range workers {
			logs = append(logs, w.Logs.String())
		}
		counts = appliedCounts(logs...)
		return len(counts) >= 1350
	})
	twice := 0
	for _, n := range counts {
		if n != 1 {
			twice++
		}
	}
	if len(counts) != 1350 || twice != 0 {
		t.Errorf("%d events applied, %d of them more than once; want 1350 applied once each", len(counts), twice)
	}
	t.Logf("1,500 deliveries (1,350 distinct) through 2 ingests and 3 workers: all processed %s after the first", time.Since(began).Round(10*time.Millisecond))
}

// A database outage far longer than a job's deadline and its retries costs
// the waiting events no attempt: their jobs are put back without a fail
// (never dead), their rows record nothing, and they are processed once
// the database is back.
func TestDatabaseOutageCostsNoAttempt(t *testing.T) {
	t.Parallel()
	b := testkit.NewPrivateBackend(t)
	ingest := startIngest(t, b.Backend)
	payloads := testkit.Events(10, "outage")
	for id, code := range deliverAll(t, []*process{ingest}, payloads) {
		if code != http.StatusOK {
			t.Fatalf("%s answered %d", id, code)
		}
	}
	b.PG.Stop()
	// Two attempts in all, 100 ms apart, 1 s each: a fail per attempt would
	// kill every job within a few seconds.
	w := startWorkerProcess(t, b.Backend, map[string]string{"WEBHOOK_JOB_TIMEOUT": "1s", "WEBHOOK_MAX_RETRIES": "2",
		"WEBHOOK_RETRY_BASE_DELAY": "100ms", "WEBHOOK_SWEEP_INTERVAL": "1h"})
	testenv.Eventually(t, 60*time.Second, "every job to be put back three times", func() bool {
		return strings.Count(w.Logs.String(), `"deferred":3`) >= len(payloads)
	})
	rc, err := redis.Dial("tcp", b.RedisAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if n, err := redis.Int(rc.Do("ZCARD", queue.DeadKey(b.Namespace))); err != nil || n != 0 {
		t.Errorf("dead set holds %d jobs (%v) after the outage, want 0", n, err)
	}
	b.PG.Start()
	began := time.Now()
	ids := make([]string, len(payloads))
	for i, p := range payloads {
		ids[i] = testkit.EventID(p)
	}
	testenv.Eventually(t, 60*time.Second, "the events to be processed once Postgres is back", func() bool {
		return processedIn(t, b.Backend, ids) == int64(len(ids))
	})
	t.Logf("processed %s after Postgres came back", time.Since(began).Round(10*time.Millisecond))
	var recorded int64
	if err := b.Store.DB().Raw("SELECT count(*) FROM webhook_events WHERE retry_count > 0 OR error IS NOT NULL OR dead_at IS NOT NULL").Scan(&recorded).Error; err != nil {
		t.Fatal(err)
	}
	if recorded != 0 {
		t.Errorf("%d events have an attempt recorded for the outage", recorded)
	}
	for id, n := range appliedCounts(w.Logs.String()) {
		if n != 1 {
			t.Errorf("%s applied %d times", id, n)
		}
	}
}
