package queue_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/gocraft/work"
	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/queue"
)

// A job's traceparent travels as its optional "traceparent" argument: a job
// without one has no such argument (as before tracing), copies of one event
// with the same traceparent still merge while waiting, Pending finds them,
// and JobFrom reads the argument back, or "" from a job that has none.
func TestJobCarriesItsTraceparent(t *testing.T) {
	t.Parallel()
	ns, pool := sharedRedis(t, 4)
	q := queue.NewEnqueuer(ns, pool)
	traced := queue.Job{WebhookID: "6f1c2e1a-0000-4000-8000-000000000001", EventID: "evt_1", EventType: "account.updated",
		Traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
	untraced := queue.Job{WebhookID: "6f1c2e1a-0000-4000-8000-000000000002", EventID: "evt_2", EventType: "account.updated"}
	added, err := q.EnqueueMany(context.Background(), []queue.Job{traced, untraced, traced})
	if err != nil || !added[0] || !added[1] || added[2] {
		t.Fatalf("added %v, %v; want the copy of evt_1 merged", added, err)
	}
	pending, err := q.Pending(context.Background(), []queue.Job{traced, untraced})
	if err != nil || !pending[0] || !pending[1] {
		t.Errorf("Pending = %v, %v", pending, err)
	}
	conn := pool.Get()
	defer conn.Close()
	raws, err := redis.ByteSlices(conn.Do("LRANGE", queue.ListKey(ns), 0, -1))
	if err != nil || len(raws) != 2 {
		t.Fatalf("queue: %d jobs, %v", len(raws), err)
	}
	for _, raw := range raws {
		var wj work.Job
		if err := json.Unmarshal(raw, &wj); err != nil {
			t.Fatal(err)
		}
		j, err := queue.JobFrom(&wj)
		if err != nil {
			t.Fatal(err)
		}
		_, hasArg := wj.Args["traceparent"]
		switch j.EventID {
		case "evt_1":
			if j != traced {
				t.Errorf("read back %+v, want %+v", j, traced)
			}
		case "evt_2":
			if j != untraced || hasArg {
				t.Errorf("untraced job: %+v, args %v", j, wj.Args)
			}
		}
	}
}
