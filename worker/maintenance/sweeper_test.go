package maintenance

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocraft/work"
	"github.com/gomodule/redigo/redis"
	"github.com/prometheus/client_golang/prometheus"

	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/testenv"
	"stripe-webhooks/worker/internal/testkit"
)

// A sweep over a backlog of 100,000 old events whose jobs all wait in Redis
// sends a few commands and queues nothing; once some jobs are lost, it queues
// exactly those, and leaves alone the jobs in progress in a live pool and
// waiting for a retry.
func TestSweeperDoesNotFloodRedisInABacklog(t *testing.T) {
	t.Parallel()
	rd := testenv.StartRedis(t) // private: every command it counts is the sweep's
	b := testkit.NewBackendOn(t, "", rd.Addr())
	admin := testkit.DialRedis(t, rd.Addr())
	t.Cleanup(func() { _, _ = admin.Do("FLUSHALL") }) // before the namespace is cleaned key by key
	const n = 100_000
	jobs := queueBacklog(t, b, n)
	sent := &clientCounts{}
	reg := prometheus.NewRegistry()
	sweeper := NewSweeper(testkit.Discard(), b.Store, queue.NewEnqueuer(b.Namespace, countingPool(t, rd.Addr(), sent)),
		NewMetrics(reg), time.Minute)

	queued, cost := sweepCounted(t, sweeper, admin, sent)
	t.Logf("sweep over %d events all queued: %s", n, cost)
	if cost.commands > 10 || cost.roundTrips > 10 || cost.executed > 10 {
		t.Errorf("the sweep over %d events all queued cost %s; want at most 10 commands", n, cost)
	}
	if lost := testkit.Counter(t, reg, "stripe_webhooks_sweeper_lost_total"); queued != 0 || lost != 0 {
		t.Errorf("the sweep queued %d and counted %v lost; want none", queued, lost)
	}
	if got := llen(t, admin, queue.ListKey(b.Namespace)); got != n {
		t.Errorf("%d jobs waiting after the sweep, want %d", got, n)
	}

	lost := loseJobs(t, b, admin, jobs)
	queued, cost = sweepCounted(t, sweeper, admin, sent)
	t.Logf("sweep with %d jobs lost: %s", len(lost), cost)
	// Four MGETs; for each of the two pages with a lost job, the pools, then
	// their heartbeats and in-progress lists and the retry set, then the
	// lost jobs queued (the job name registered once, a wake-up per page).
	if maxCommands := 4 + 2*(1+2*2+1) + 1 + len(lost) + 2; cost.commands > maxCommands || cost.roundTrips > 4+2*3 {
		t.Errorf("the sweep with %d jobs lost cost %s; want at most %d commands in %d round trips", len(lost), cost, maxCommands, 4+2*3)
	}
	if queued != len(lost) {
		t.Errorf("the sweep queued %d jobs, want %d", queued, len(lost))
	}
	for _, name := range []string{"stripe_webhooks_sweeper_lost_total", "stripe_webhooks_sweeper_enqueued_total"} {
		if got := testkit.Counter(t, reg, name); got != float64(len(lost)) {
			t.Errorf("%s = %v, want %d", name, got, len(lost))
		}
	}
	for _, i := range lost {
		if ok, err := redis.Bool(admin.Do("EXISTS", uniqueKey(b.Namespace, jobs[i]))); err != nil || !ok {
			t.Errorf("jobs[%d] (lost): not waiting after the sweep (%v)", i, err)
		}
	}
	for _, i := range []int{0, 1, 3} {
		if ok, err := redis.Bool(admin.Do("EXISTS", uniqueKey(b.Namespace, jobs[i]))); err != nil || ok {
			t.Errorf("jobs[%d] (in progress, retrying or processed): queued again (%v)", i, err)
		}
	}
	if got, want := llen(t, admin, queue.ListKey(b.Namespace)), n-8-1+len(lost); got != want {
		t.Errorf("%d jobs waiting, want %d", got, want)
	}
}

// queueBacklog stores n events two hours old and queues their jobs, oldest
// first: jobs[i] is at index n-1-i of the list, and the oldest are the
// first a worker takes.
func queueBacklog(t *testing.T, b *testkit.Backend, n int) []queue.Job {
	t.Helper()
	err := b.Store.DB().Exec(`INSERT INTO webhook_events (id, stripe_event_id, event_type, payload, created_at, received_at)
		SELECT md5('evt_backlog_' || i)::uuid, 'evt_backlog_' || i, 'account.updated', '{}',
			timezone('utc', now()) - interval '2 hours' + i * interval '1 ms', timezone('utc', now()) - interval '2 hours'
		FROM generate_series(1, ?) AS i`, n).Error
	if err != nil {
		t.Fatal(err)
	}
	b.SyncPending(t)
	jobs := make([]queue.Job, n)
	for i := range jobs {
		id := fmt.Sprintf("evt_backlog_%d", i+1)
		jobs[i] = queue.Job{WebhookID: md5UUID(id), EventID: id, EventType: "account.updated"}
	}
	for i := 0; i < n; i += 10_000 {
		if _, err := b.Enqueuer.EnqueueMany(context.Background(), jobs[i:i+10_000]); err != nil {
			t.Fatal(err)
		}
	}
	return jobs
}

// loseJobs has workers take the eight oldest jobs, dropping their unique
// keys: one runs in a live pool, one waits for a retry whose failure
// Postgres did not record, one was running in a pool killed since, one
// finished. The other four, and the job of an event far down the backlog,
// are lost: their indexes are returned.
func loseJobs(t *testing.T, b *testkit.Backend, admin redis.Conn, jobs []queue.Job) []int {
	t.Helper()
	taken := make([][]byte, 8)
	for i := range taken {
		taken[i] = take(t, admin, b.Namespace, jobs[i])
	}
	now := time.Now().Unix()
	redo := func(cmd string, args ...any) {
		t.Helper()
		if _, err := admin.Do(cmd, args...); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
	}
	for pool, beat := range map[string]int64{"live": now, "killed": now - 3600} {
		redo("SADD", b.Namespace+":worker_pools", pool)
		redo("HSET", b.Namespace+":worker_pools:"+pool, "heartbeat_at", beat)
	}
	redo("LPUSH", queue.ListKey(b.Namespace)+":live:inprogress", taken[0])
	redo("ZADD", queue.RetryKey(b.Namespace), now+3600, taken[1])
	redo("LPUSH", queue.ListKey(b.Namespace)+":killed:inprogress", taken[2])
	if err := b.Store.DB().Exec(`UPDATE webhook_events SET processed = true WHERE id = ?`, jobs[3].WebhookID).Error; err != nil {
		t.Fatal(err)
	}
	b.SyncPending(t)
	const far = 60_000
	n := len(jobs)
	raw, err := redis.Bytes(admin.Do("LINDEX", queue.ListKey(b.Namespace), n-1-far))
	if err != nil || !bytes.Contains(raw, []byte(jobs[far].WebhookID)) {
		t.Fatalf("the job at index %d is not jobs[%d]'s (%v)", n-1-far, far, err)
	}
	redo("LREM", queue.ListKey(b.Namespace), 1, raw)
	redo("DEL", uniqueKey(b.Namespace, jobs[far]))
	return []int{2, 4, 5, 6, 7, far}
}

// An event whose job ran between the read of the sweeper's page and its
// look in Redis left no job there, but left the event processed, or failed
// with a retry due later: the sweeper reads such events again and does not
// count or queue them.
func TestSweeperSkipsEventsDoneSinceItsPageWasRead(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	ctx := context.Background()
	for _, p := range testkit.Events(3, "stale") {
		b.StoreOnly(t, p)
	}
	before := time.Now().Add(-time.Minute)
	refs, err := b.Store.Unqueued(ctx, before, store.Cursor{}, 10)
	if err != nil || len(refs) != 3 {
		t.Fatalf("read %d events, %v; want 3", len(refs), err)
	}
	db := b.Store.DB()
	if err := db.Exec(`UPDATE webhook_events SET processed = true WHERE id = ?`, refs[0].WebhookID).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(`UPDATE webhook_events SET next_attempt_at = ? WHERE id = ?`, time.Now().Add(time.Hour).UTC(), refs[1].WebhookID).Error; err != nil {
		t.Fatal(err)
	}
	b.SyncPending(t)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	sweeper := NewSweeper(testkit.Discard(), b.Store, b.Enqueuer, m, time.Minute)
	lost, added, err := sweeper.requeueLost(ctx, before, refs)
	if err != nil || lost != 1 || added != 1 {
		t.Fatalf("requeueLost = %d lost, %d added, %v; want 1, 1", lost, added, err)
	}
	pending, err := b.Enqueuer.Pending(ctx, jobsOf(refs))
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{false, false, true}; fmt.Sprint(pending) != fmt.Sprint(want) {
		t.Errorf("jobs waiting for the processed, retrying and lost events: %v, want %v", pending, want)
	}
	if got := testkit.Counter(t, reg, "stripe_webhooks_sweeper_lost_total"); got != 1 {
		t.Errorf("sweeper_lost_total = %v, want 1", got)
	}
}

// An event younger than WEBHOOK_SWEEP_AFTER is left alone: its delivery's
// own job may still be on its way to Redis. Only the older one is queued.
func TestSweeperLeavesEventsYoungerThanSweepAfter(t *testing.T) {
	t.Parallel()
	b := testkit.NewBackend(t)
	ctx := context.Background()
	pair := testkit.Events(2, "sweep_after")
	old, fresh := pair[0], pair[1]
	b.StoreOnly(t, old) // an hour old
	row, err := b.Store.InsertEvent(ctx, store.NewEvent{StripeEventID: testkit.EventID(fresh), EventType: "account.updated",
		Payload: fresh, ReceivedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	added, err := NewSweeper(testkit.Discard(), b.Store, b.Enqueuer, m, 10*time.Minute).Sweep(ctx)
	if err != nil || added != 1 {
		t.Fatalf("sweep added %d jobs, %v; want 1 (the hour-old event only)", added, err)
	}
	conn := testkit.DialRedis(t, b.RedisAddr)
	raw, err := redis.ByteSlices(conn.Do("LRANGE", queue.ListKey(b.Namespace), 0, -1))
	if err != nil || len(raw) != 1 {
		t.Fatalf("%d jobs waiting (%v), want 1", len(raw), err)
	}
	if strings.Contains(string(raw[0]), row.WebhookID) {
		t.Error("the sweeper queued an event younger than WEBHOOK_SWEEP_AFTER")
	}
}

// sweepCost is what one sweep cost Redis.
type sweepCost struct {
	commands, roundTrips int            // sent by the sweeper
	executed             int            // by the server, scripts' own commands included
	byCommand            map[string]int // executed, by command
}

func (c sweepCost) String() string {
	return fmt.Sprintf("%d commands sent in %d round trips; %d executed by Redis %v", c.commands, c.roundTrips, c.executed, c.byCommand)
}

// sweepCounted runs one sweep and counts its Redis commands, both as the
// sweeper's connections sent them (sent) and as the server executed them
// (admin's connection; the server must be the test's alone).
func sweepCounted(t *testing.T, s *Sweeper, admin redis.Conn, sent *clientCounts) (int, sweepCost) {
	t.Helper()
	if _, err := admin.Do("CONFIG", "RESETSTAT"); err != nil {
		t.Fatal(err)
	}
	commands, trips := sent.read()
	queued, err := s.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := sweepCost{byCommand: map[string]int{}}
	c.commands, c.roundTrips = sent.read()
	c.commands -= commands
	c.roundTrips -= trips
	info, err := redis.String(admin.Do("INFO", "commandstats"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":calls=")
		if !ok || name == "info" || strings.HasPrefix(name, "config") {
			continue // admin's own
		}
		calls, err := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
		if err != nil {
			t.Fatalf("INFO commandstats line %q: %v", line, err)
		}
		c.executed += calls
		c.byCommand[name] = calls
	}
	return queued, c
}

// clientCounts counts the commands connections send, and their round
// trips: a flush of sent commands, or a command sent and answered at once.
type clientCounts struct {
	mu                   sync.Mutex
	commands, roundTrips int
}

func (c *clientCounts) add(commands, roundTrips int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.commands += commands
	c.roundTrips += roundTrips
}

func (c *clientCounts) read() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.commands, c.roundTrips
}

// countingPool is a redigo pool on addr whose connections count what they
// send in counts.
func countingPool(t *testing.T, addr string, counts *clientCounts) *redis.Pool {
	t.Helper()
	pool := &redis.Pool{MaxActive: 4, MaxIdle: 4, Wait: true, DialContext: func(ctx context.Context) (redis.Conn, error) {
		c, err := redis.DialContext(ctx, "tcp", addr, redis.DialReadTimeout(10*time.Second), redis.DialWriteTimeout(5*time.Second))
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: c, counts: counts}, nil
	}}
	t.Cleanup(func() { _ = pool.Close() })
	return pool
}

// countingConn is a connection that counts its commands and round trips.
type countingConn struct {
	redis.Conn
	counts *clientCounts
	unsent bool // commands sent since the last flush
}

func (c *countingConn) Send(cmd string, args ...any) error {
	c.counts.add(1, 0)
	c.unsent = true
	return c.Conn.Send(cmd, args...)
}

func (c *countingConn) Flush() error {
	c.flushed()
	return c.Conn.Flush()
}

func (c *countingConn) flushed() {
	if c.unsent {
		c.counts.add(0, 1)
		c.unsent = false
	}
}

func (c *countingConn) do(cmd string) {
	if cmd == "" {
		c.flushed()
		return
	}
	c.counts.add(1, 1)
	c.unsent = false
}

func (c *countingConn) Do(cmd string, args ...any) (any, error) {
	c.do(cmd)
	return c.Conn.Do(cmd, args...)
}

func (c *countingConn) DoContext(ctx context.Context, cmd string, args ...any) (any, error) {
	c.do(cmd)
	return c.Conn.(redis.ConnWithContext).DoContext(ctx, cmd, args...)
}

func (c *countingConn) DoWithTimeout(timeout time.Duration, cmd string, args ...any) (any, error) {
	c.do(cmd)
	return c.Conn.(redis.ConnWithTimeout).DoWithTimeout(timeout, cmd, args...)
}

func (c *countingConn) ReceiveContext(ctx context.Context) (any, error) {
	return c.Conn.(redis.ConnWithContext).ReceiveContext(ctx)
}

func (c *countingConn) ReceiveWithTimeout(timeout time.Duration) (any, error) {
	return c.Conn.(redis.ConnWithTimeout).ReceiveWithTimeout(timeout)
}

// take removes the oldest waiting job, which must be want's, and its unique
// key, as a gocraft/work worker does, and returns the job.
func take(t *testing.T, conn redis.Conn, namespace string, want queue.Job) []byte {
	t.Helper()
	raw, err := redis.Bytes(conn.Do("RPOP", queue.ListKey(namespace)))
	if err != nil {
		t.Fatal(err)
	}
	var j work.Job
	if err := json.Unmarshal(raw, &j); err != nil {
		t.Fatal(err)
	}
	if got := j.ArgString("webhook_id"); got != want.WebhookID {
		t.Fatalf("the oldest job is %s's, want %s's", got, want.WebhookID)
	}
	if _, err := conn.Do("DEL", uniqueKey(namespace, want)); err != nil {
		t.Fatal(err)
	}
	return raw
}

// uniqueKey is gocraft/work's unique key of a job: its arguments as JSON
// (sorted keys, trailing newline) after "<namespace>:unique:<job name>:".
func uniqueKey(namespace string, j queue.Job) string {
	var buf bytes.Buffer
	buf.WriteString(namespace + ":unique:" + queue.JobName + ":")
	_ = json.NewEncoder(&buf).Encode(j.Args())
	return buf.String()
}

// md5UUID is Postgres's md5(s)::uuid.
func md5UUID(s string) string {
	h := md5.Sum([]byte(s))
	x := hex.EncodeToString(h[:])
	return x[:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}

func llen(t *testing.T, conn redis.Conn, key string) int {
	t.Helper()
	n, err := redis.Int(conn.Do("LLEN", key))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
