package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gocraft/work"
	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/stripefixture"
	"stripe-webhooks/pkg/testenv"
	"stripe-webhooks/worker/internal/testkit"
)

// A job whose webhook_id is not a uuid can name no event: it goes to the
// dead set at once, logged and counted, and is never put back or retried.
func TestMalformedJobGoesDeadAtOnce(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	w := startWorker(t, b, nil)
	conn := testkit.DialRedis(t, b.RedisAddr)
	_, err := work.NewEnqueuer(b.Namespace, b.Pool(t)).Enqueue(queue.JobName,
		work.Q{"webhook_id": "not-a-uuid", "event_id": "evt_malformed", "event_type": "account.updated"})
	if err != nil {
		t.Fatal(err)
	}
	// A good event at the same time is applied as usual.
	b.Seed(t, stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: "evt_good_neighbour"}))
	testenv.Eventually(t, 15*time.Second, "the malformed job in the dead set", func() bool {
		n, err := redis.Int(conn.Do("ZCARD", queue.DeadKey(b.Namespace)))
		return err == nil && n == 1
	})
	raw, err := redis.ByteSlices(conn.Do("ZRANGE", queue.DeadKey(b.Namespace), 0, -1))
	if err != nil {
		t.Fatal(err)
	}
	var dead work.Job
	if err := json.Unmarshal(raw[0], &dead); err != nil {
		t.Fatal(err)
	}
	if dead.ArgString("event_id") != "evt_malformed" || dead.Fails != 1 || dead.LastErr == "" {
		t.Errorf("dead job = %+v, want evt_malformed with one fail and its reason", dead)
	}
	if n, err := redis.Int(conn.Do("ZCARD", queue.RetryKey(b.Namespace))); err != nil || n != 0 {
		t.Errorf("retry set holds %d jobs (%v), want 0", n, err)
	}
	testenv.Eventually(t, 15*time.Second, "the good event processed", func() bool { return b.Count(t, "processed") == 1 })
	if m := metricsOf(t, w.base); !strings.Contains(m, "\nstripe_webhooks_jobs_malformed_total 1\n") {
		t.Errorf("metrics say %q, want stripe_webhooks_jobs_malformed_total 1", grep(m, "malformed"))
	}
	if grep(w.logs.String(), "malformed job") == "" {
		t.Error("no log line says the job was malformed")
	}
}

// A group transaction that fails is logged once with its cause and counted,
// before its jobs' events are processed one by one.
func TestGroupFailureIsLoggedAndCounted(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	w := startWorker(t, b, map[string]string{"WEBHOOK_RETRY_BASE_DELAY": "1h"})
	b.Seed(t, stripefixture.MustEvent(stripefixture.Options{Type: "account.updated", ID: "evt_group_poison", Account: "acct_group_poison",
		Mutate: testkit.Set("charges_enabled", "yes")}))
	testenv.Eventually(t, 15*time.Second, "the poison event's failure recorded", func() bool {
		return b.Count(t, "stripe_event_id = 'evt_group_poison' AND retry_count = 1") == 1
	})
	lines := grep(w.logs.String(), "a group transaction failed")
	if strings.Count(lines, "\n")+1 != 1 || !strings.Contains(lines, "charges_enabled") {
		t.Errorf("log lines for the failed group:\n%s\nwant one, with its cause", lines)
	}
	if m := metricsOf(t, w.base); !strings.Contains(m, "\nstripe_webhooks_group_failures_total 1\n") {
		t.Errorf("metrics say %q, want stripe_webhooks_group_failures_total 1", grep(m, "group_failures"))
	}
}
