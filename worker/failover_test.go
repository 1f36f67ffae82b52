package main

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
	"stripe-webhooks/worker/internal/testkit"
)

// delivery is one signed POST of the steady load and its answer.
type delivery struct {
	id       string
	payload  []byte
	sent     time.Time
	status   int // 0: no answer
	answered time.Time
}

// steadyLoad sends a new account.updated event every 1/rate seconds,
// round robin over the ingests, each on a goroutine of its own (open loop:
// a slow answer does not slow the load), until stop is closed.
type steadyLoad struct {
	mu   sync.Mutex
	all  []*delivery
	wg   sync.WaitGroup
	stop chan struct{}
}

func startLoad(ingests []*process, rate int, prefix string) *steadyLoad {
	l := &steadyLoad{stop: make(chan struct{})}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			p := stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", Account: fmt.Sprintf("acct_%s_%05d", prefix, i)})
			d := &delivery{id: testkit.EventID(p), payload: p, sent: time.Now()}
			l.mu.Lock()
			l.all = append(l.all, d)
			l.mu.Unlock()
			ingest := ingests[i%len(ingests)]
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				status := postNoFail(ingest.Base+"/api/billing/webhooks/stripe", d.payload)
				l.mu.Lock()
				d.status, d.answered = status, time.Now()
				l.mu.Unlock()
			}()
		}
	}()
	return l
}

// Stop ends the load and waits for every answer.
func (l *steadyLoad) Stop() []*delivery {
	close(l.stop)
	l.wg.Wait()
	return l.all
}

// redeliver posts each delivery not answered 200 again, as Stripe does,
// until every one is, and returns how many posts that took.
func redeliver(t *testing.T, ingests []*process, ds []*delivery) int {
	t.Helper()
	posts := 0
	testenv.Eventually(t, 60*time.Second, "every redelivery to be answered 200", func() bool {
		done := true
		for i, d := range ds {
			if d.status == http.StatusOK {
				continue
			}
			posts++
			d.status = postNoFail(ingests[i%len(ingests)].Base+"/api/billing/webhooks/stripe", d.payload)
			d.answered = time.Now()
			done = done && d.status == http.StatusOK
		}
		return done
	})
	return posts
}

// fiveXX is the number of answers 500 and above (and no answer) among ds,
// and the first and last time one was answered.
func fiveXX(ds []*delivery) (n int, first, last time.Time) {
	for _, d := range ds {
		if d.status >= 500 || d.status == 0 {
			n++
			if first.IsZero() || d.answered.Before(first) {
				first = d.answered
			}
			if d.answered.After(last) {
				last = d.answered
			}
		}
	}
	return n, first, last
}

func idsOf(ds []*delivery) []string {
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.id
	}
	return ids
}

// logTimes lists the times of the log lines with message msg.
func logTimes(logs, msg string) []time.Time {
	var out []time.Time
	eachLogLine(logs, func(line logLine) {
		if line.Msg == msg {
			out = append(out, line.Time)
		}
	})
	return out
}

// appliedTimes lists, per event id, when the workers logged it applied.
func appliedTimes(logs ...string) map[string][]time.Time {
	out := map[string][]time.Time{}
	for _, l := range logs {
		eachLogLine(l, func(line logLine) {
			if line.Msg == "event processed" {
				out[line.ID] = append(out[line.ID], line.Time)
			}
		})
	}
	return out
}

// latencies reads, for the events of ds, the time from receipt to
// processed as Postgres recorded it.
func latencies(t *testing.T, b *testkit.Backend, ds []*delivery) map[string]time.Duration {
	t.Helper()
	var rows []struct {
		StripeEventID string
		Latency       float64
	}
	if err := b.Store.DB().Raw(`SELECT stripe_event_id, extract(epoch FROM processed_at - received_at) AS latency
		FROM webhook_events WHERE processed AND stripe_event_id IN ?`, idsOf(ds)).Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	out := make(map[string]time.Duration, len(rows))
	for _, r := range rows {
		out[r.StripeEventID] = time.Duration(r.Latency * float64(time.Second))
	}
	return out
}

// checkStoredOnce fails unless each event of ds has exactly one row, processed.
func checkStoredOnce(t *testing.T, b *testkit.Backend, ds []*delivery) {
	t.Helper()
	var rows []struct {
		StripeEventID string
		N             int
		Processed     int
	}
	if err := b.Store.DB().Raw(`SELECT stripe_event_id, count(*) AS n, count(*) FILTER (WHERE processed) AS processed
		FROM webhook_events WHERE stripe_event_id IN ? GROUP BY stripe_event_id`, idsOf(ds)).Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(ds) {
		t.Errorf("%d of %d events answered 200 are stored", len(rows), len(ds))
	}
	for _, r := range rows {
		if r.N != 1 || r.Processed != 1 {
			t.Errorf("%s: %d rows, %d processed", r.StripeEventID, r.N, r.Processed)
		}
	}
}

// processedOnce waits until every event of ds is processed, checks that
// each is stored once, and returns when they were all processed and, per
// event, when the workers logged it applied.
func processedOnce(t *testing.T, b *testkit.Backend, workers []*process, ds []*delivery) (time.Time, map[string][]time.Time) {
	t.Helper()
	testenv.Eventually(t, 90*time.Second, "every event answered 200 to be processed", func() bool {
		return processedIn(t, b, idsOf(ds)) == int64(len(ds))
	})
	drained := time.Now()
	checkStoredOnce(t, b, ds)
	var logs []string
	for _, w := range workers {
		logs = append(logs, w.Logs.String())
	}
	return drained, appliedTimes(logs...)
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// Redis Sentinel: a master, a replica and three sentinels. Under a steady
// load of signed deliveries to two ingests, applied by two workers, the
// master is killed (SIGKILL). No process is restarted: every delivery
// answered 200 is processed exactly once, the ingest answers no 5xx, and
// deliveries after the failover reach the workers through the new master
// at once (not through the sweeper).
func TestFailoverRedisSentinelUnderLoad(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedisSentinel(t)
	b := testkit.NewBackendOn(t, "", rs.Master())
	sentinel := map[string]string{"REDIS_SENTINEL_ADDRS": strings.Join(rs.SentinelAddrs(), ","),
		"REDIS_SENTINEL_MASTER": rs.MasterName}
	ingests := []*process{startIngest(t, b, sentinel), startIngest(t, b, sentinel)}
	workers := []*process{startWorkerProcess(t, b, merge(fastSweep, sentinel)), startWorkerProcess(t, b, merge(fastSweep, sentinel))}

	load := startLoad(ingests, 100, "rs")
	testenv.Eventually(t, 10*time.Second, "the load to run for 2 s", func() bool {
		load.mu.Lock()
		defer load.mu.Unlock()
		return len(load.all) >= 200
	})
	old := rs.Master()
	killed := time.Now()
	rs.KillMaster()
	next := rs.WaitForFailover(60 * time.Second)
	promoted := time.Now()
	testenv.Eventually(t, 10*time.Second, "4 s more of load on the new master", func() bool { return time.Since(promoted) > 4*time.Second })
	ds := load.Stop()
	posts := redeliver(t, ingests, ds)
	n5xx, first5xx, last5xx := fiveXX(ds)

	drained, applied := processedOnce(t, b, workers, ds)
	for id, at := range applied {
		if len(at) != 1 {
			t.Errorf("%s applied %d times, at %v", id, len(at), at)
		}
	}

	// Seen by the services: the ingests log each event they stored but
	// could not queue; the last of those is the end of the outage for them.
	var unqueued int
	var lastUnqueued time.Time
	for _, in := range ingests {
		for _, at := range logTimes(in.Logs.String(), "event stored but not queued; the sweeper will queue it") {
			unqueued++
			if at.After(lastUnqueued) {
				lastUnqueued = at
			}
		}
	}
	seen := time.Duration(0)
	if !lastUnqueued.IsZero() {
		seen = lastUnqueued.Sub(killed)
	}
	if seen > promoted.Sub(killed)+3*time.Second {
		t.Errorf("the ingests could not queue until %s after the kill, %s after the sentinels agreed", seen, seen-promoted.Sub(killed))
	}
	lat := latencies(t, b, ds)
	var after []time.Duration
	for _, d := range ds {
		if d.sent.After(promoted.Add(2 * time.Second)) {
			after = append(after, lat[d.id])
		}
	}
	if len(after) == 0 || percentile(after, 0.5) > time.Second {
		t.Errorf("deliveries 2 s after the failover: p50 %s, want under 1 s (through the new master, not the sweeper)", percentile(after, 0.5))
	}
	if n5xx > 0 && last5xx.Sub(first5xx) > promoted.Sub(killed) {
		t.Errorf("5xx answered for %s, longer than the failover (%s)", last5xx.Sub(first5xx), promoted.Sub(killed))
	}
	t.Logf("Redis failover %s → %s: %d deliveries (%d redelivered posts), 5xx %d; sentinels agreed %s after the kill; "+
		"the ingests queued again %s after the kill (%d events stored but not queued, for the sweeper); 2 s after the failover p50/p99 %s/%s; all processed %s after the sentinels agreed",
		old, next, len(ds), posts, n5xx, promoted.Sub(killed).Round(10*time.Millisecond), seen.Round(10*time.Millisecond), unqueued,
		percentile(after, 0.5).Round(time.Millisecond), percentile(after, 0.99).Round(time.Millisecond), drained.Sub(promoted).Round(10*time.Millisecond))
}

// Postgres: a primary and a synchronous streaming standby. Under the same
// load, the primary stops hard and, a second later, the standby is
// promoted. No process is restarted: the ingest answers 503 (never 200)
// while no primary takes the write; every delivery answered 200 is on the
// new primary and processed once; those answered 503 are stored when
// delivered again.
func TestFailoverPostgresUnderLoad(t *testing.T) {
	t.Parallel()
	pair := testenv.StartPostgresPair(t)
	b := testkit.NewBackendOn(t, pair.URL("postgres"), testenv.RedisAddr())
	ingests := []*process{startIngest(t, b), startIngest(t, b)}
	workers := []*process{startWorkerProcess(t, b, fastSweep), startWorkerProcess(t, b, fastSweep)}

	load := startLoad(ingests, 100, "pg")
	testenv.Eventually(t, 10*time.Second, "the load to run for 2 s", func() bool {
		load.mu.Lock()
		defer load.mu.Unlock()
		return len(load.all) >= 200
	})
	stopped := time.Now()
	pair.StopPrimaryHard()
	down := time.Now() // pg_ctl has seen the primary gone
	testenv.Eventually(t, 10*time.Second, "a second without a primary", func() bool { return time.Since(stopped) > time.Second })
	promoting := time.Now() // the standby takes writes from some moment in Promote
	pair.Promote()
	promoted := time.Now()
	testenv.Eventually(t, 10*time.Second, "3 s more of load on the new primary", func() bool { return time.Since(promoted) > 3*time.Second })
	ds := load.Stop()

	// No 200 while no primary could take the write.
	var okWithout int
	var firstOK time.Time
	for _, d := range ds {
		if d.status != http.StatusOK {
			continue
		}
		if d.sent.After(down) && d.answered.Before(promoting) {
			okWithout++
		}
		if d.sent.After(down) && (firstOK.IsZero() || d.answered.Before(firstOK)) {
			firstOK = d.answered
		}
	}
	if okWithout > 0 {
		t.Errorf("%d deliveries sent after the primary stopped were answered 200 before the promotion", okWithout)
	}
	n5xx, first5xx, last5xx := fiveXX(ds)
	posts := redeliver(t, ingests, ds)

	drained, applied := processedOnce(t, b, workers, ds)
	// The workers commit asynchronously: the few applications committed in
	// the last instant before the crash, not yet sent to the standby, are
	// lost with their processed mark and applied again. None may be applied
	// twice after the failover.
	lost := 0
	for id, at := range applied {
		if len(at) == 1 {
			continue
		}
		lost++
		slices.SortFunc(at, time.Time.Compare)
		for _, a := range at[:len(at)-1] {
			if a.After(down) {
				t.Errorf("%s applied %d times, at %v: twice after the primary stopped", id, len(at), at)
			}
		}
	}
	if firstOK.IsZero() {
		t.Fatal("no delivery was answered 200 after the primary stopped")
	}
	// The periodic tasks go on by themselves: a sweep completes on the new
	// primary (one replica sweeps each 500 ms interval).
	before := sweeps(t, workers)
	testenv.Eventually(t, 30*time.Second, "a sweep to complete after the failover", func() bool {
		return sweeps(t, workers) > before
	})
	t.Logf("Postgres failover: %d deliveries, 5xx %d (first %s, last %s after the stop; %d redelivered posts); "+
		"first 200 to a delivery sent after it was down %s after the stop (%s after the promotion was asked; it took %s); all processed %s after the promotion; %d applications lost with the old primary and applied again",
		len(ds), n5xx, first5xx.Sub(stopped).Round(10*time.Millisecond), last5xx.Sub(stopped).Round(10*time.Millisecond), posts,
		firstOK.Sub(stopped).Round(10*time.Millisecond), firstOK.Sub(promoting).Round(10*time.Millisecond), promoted.Sub(promoting).Round(10*time.Millisecond),
		drained.Sub(promoted).Round(10*time.Millisecond), lost)
}

// sweeps is the number of completed sweeps the workers report in /metrics.
func sweeps(t *testing.T, workers []*process) float64 {
	t.Helper()
	var n float64
	for _, w := range workers {
		code, body := do(t, http.MethodGet, w.Base+"/metrics", nil)
		if code != http.StatusOK {
			t.Fatalf("%s/metrics = %d", w.Base, code)
		}
		for _, line := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, "stripe_webhooks_sweeps_total "); ok {
				var f float64
				if _, err := fmt.Sscan(v, &f); err == nil {
					n += f
				}
			}
		}
	}
	return n
}
