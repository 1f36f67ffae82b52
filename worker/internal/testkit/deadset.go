package testkit

import (
	"encoding/json"
	"testing"

	"github.com/gocraft/work"
	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/queue"
)

// DeadJobs maps the ids of the jobs in the backend's dead set to when they
// died (the set's scores, Unix seconds).
func (b *Backend) DeadJobs(t *testing.T) map[string]int64 {
	t.Helper()
	conn := b.Pool(t).Get()
	defer conn.Close()
	members, err := redis.Int64Map(conn.Do("ZRANGE", queue.DeadKey(b.Namespace), 0, -1, "WITHSCORES"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for raw, diedAt := range members {
		var job work.Job
		if err := json.Unmarshal([]byte(raw), &job); err != nil {
			t.Fatal(err)
		}
		out[job.ID] = diedAt
	}
	return out
}
