package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
	"stripe-webhooks/pkg/testenv"
)

// Idle is what an idle worker and an idle ingest cost: the Redis commands
// the worker issues, alone on a Redis server of its own, and the CPU of
// each process, over a window that starts once the worker's pool has had
// no job for a while.
type Idle struct {
	WorkerBinary string  `json:"worker_binary"`
	NoJobSec     float64 `json:"no_job_for_seconds_at_start"`
	WindowSec    float64 `json:"window_seconds"`
	// RedisCommands excludes the bench's own INFO.
	RedisCommands       int64            `json:"redis_commands"`
	RedisCommandsPerSec float64          `json:"redis_commands_per_second"`
	RedisByCommand      map[string]int64 `json:"redis_commands_by_name"`
	WorkerCPUPercent    float64          `json:"worker_cpu_percent_of_a_core"`
	IngestCPUPercent    float64          `json:"ingest_cpu_percent_of_a_core"`
}

type idleResult struct {
	i   Idle
	err error
}

// idleJobs is how many jobs the idle worker processes before it idles, so
// that its pool has had work, as a deployed one has.
const idleJobs = 20

// idleStack is a bin/worker on a private redis-server and a database of
// its own, and a bin/ingest on that database (and the shared Redis, so
// that the private server sees the worker alone), left idle. They run
// through links named idle-worker and idle-ingest: /proc names them so, and
// the CPU shares of the other measures, which sum processes by name, leave
// them out while they idle beside them.
type idleStack struct {
	serverURL, dbURL string
	dir              string
	redis            *testenv.Redis
	worker, ingest   *testenv.Process
	workerPath       string
	lastJob          time.Time
}

// startIdle starts the idle stack, has the worker process idleJobs jobs,
// and returns once they are processed.
func startIdle(ctx context.Context, serverURL, bin string, env []string, ns string) (_ *idleStack, err error) {
	s := &idleStack{serverURL: serverURL}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.dir, err = os.MkdirTemp("", "sw-bench-idle-"); err != nil {
		return nil, err
	}
	if s.redis, err = testenv.RunRedis(); err != nil {
		return nil, err
	}
	if s.dbURL, err = testenv.CreateDatabase(ctx, serverURL, "sw_bench_idle_", true); err != nil {
		return nil, err
	}
	if err := s.startServices(ctx, bin, env, ns); err != nil {
		return nil, err
	}
	if err := s.work(ctx, ns); err != nil {
		return nil, err
	}
	s.lastJob = time.Now()
	return s, nil
}

// startServices starts the worker, alone on the private Redis server, and
// the ingest, through their links.
func (s *idleStack) startServices(ctx context.Context, bin string, env []string, ns string) error {
	link := func(name string) (string, error) {
		target, err := filepath.Abs(filepath.Join(bin, name))
		if err != nil {
			return "", err
		}
		path := filepath.Join(s.dir, "idle-"+name)
		return path, os.Symlink(target, path)
	}
	var err error
	if s.workerPath, err = link("worker"); err != nil {
		return err
	}
	ingestPath, err := link("ingest")
	if err != nil {
		return err
	}
	// The worker's environment names the private server alone: every
	// REDIS_* of the bench's own environment is left out.
	var workerEnv []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "REDIS_") {
			workerEnv = append(workerEnv, kv)
		}
	}
	workerEnv = append(workerEnv, "DATABASE_URL="+s.dbURL, "REDIS_HOST=127.0.0.1", "REDIS_PORT="+strconv.Itoa(s.redis.Port), "WORK_NAMESPACE="+ns)
	if s.worker, err = startService(ctx, s.workerPath, nil, workerEnv, "WORKER_HTTP_PORT"); err != nil {
		return err
	}
	s.ingest, err = startService(ctx, ingestPath, nil, withEnv(env, "DATABASE_URL="+s.dbURL, "WORK_NAMESPACE="+ns+"-idle"), "PORT")
	return err
}

// work seeds idleJobs events through the private Redis server and waits
// until the worker has processed them.
func (s *idleStack) work(ctx context.Context, ns string) error {
	st, err := store.Open(s.dbURL, store.Options{MaxConns: 4})
	if err != nil {
		return err
	}
	defer st.Close()
	pool := queue.NewPool(config.Redis{Host: "127.0.0.1", Port: s.redis.Port, Namespace: ns}, 4)
	defer pool.Close()
	if err := seed(ctx, st, queue.NewEnqueuer(ns, pool), idleJobs); err != nil {
		return err
	}
	deadline := time.Now().Add(settleWait)
	for {
		left, err := st.CountUnprocessed(ctx)
		if err != nil {
			return err
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("idle worker: %d of %d seeded events unprocessed after %s", left, idleJobs, settleWait)
		}
		if !sleep(ctx, 50*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// measure waits until the worker has had no job for warmup, then counts,
// over window, the commands the private Redis server processed (less the
// bench's own INFO) and the CPU time of the worker and the ingest.
func (s *idleStack) measure(ctx context.Context, warmup, window time.Duration) (Idle, error) {
	if wait := time.Until(s.lastJob.Add(warmup)); wait > 0 {
		fmt.Fprintf(os.Stderr, "idle: %.0fs more without a job…\n", wait.Seconds())
		if !sleep(ctx, wait) {
			return Idle{}, ctx.Err()
		}
	}
	fmt.Fprintf(os.Stderr, "idle: counting for %s…\n", window)
	conn, err := redis.Dial("tcp", s.redis.Addr(), redis.DialConnectTimeout(time.Second), redis.DialReadTimeout(5*time.Second))
	if err != nil {
		return Idle{}, err
	}
	defer conn.Close()
	began := time.Now()
	w0, i0 := processCPU(s.worker.Pid()), processCPU(s.ingest.Pid())
	total0, before, err := commandStats(conn)
	if err != nil {
		return Idle{}, err
	}
	if !sleep(ctx, window) {
		return Idle{}, ctx.Err()
	}
	total1, after, err := commandStats(conn)
	if err != nil {
		return Idle{}, err
	}
	w1, i1 := processCPU(s.worker.Pid()), processCPU(s.ingest.Pid())
	took := time.Since(began).Seconds()
	// The first INFO is counted in the second reading (a command counts
	// once it has run); the second is in neither.
	total := total1 - total0 - 1
	by := map[string]int64{}
	for name, n := range after {
		if name == "info" {
			n--
		}
		if d := n - before[name]; d > 0 {
			by[name] = d
		}
	}
	target, _ := os.Readlink(s.workerPath)
	return Idle{WorkerBinary: target, NoJobSec: began.Sub(s.lastJob).Seconds(), WindowSec: took,
		RedisCommands: total, RedisCommandsPerSec: float64(total) / took, RedisByCommand: by,
		WorkerCPUPercent: (w1 - w0) / took * 100, IngestCPUPercent: (i1 - i0) / took * 100}, nil
}

// close stops what startIdle started and drops its database.
func (s *idleStack) close() {
	for _, p := range []*testenv.Process{s.ingest, s.worker} {
		if p != nil {
			p.Stop()
		}
	}
	if s.redis != nil {
		s.redis.Stop()
	}
	if s.dbURL != "" {
		_ = testenv.DropDatabase(context.Background(), s.serverURL, s.dbURL)
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// commandStats reads total_commands_processed from INFO stats, and the
// calls of each command from INFO commandstats, in one INFO.
func commandStats(conn redis.Conn) (int64, map[string]int64, error) {
	info, err := redis.String(conn.Do("INFO", "stats", "commandstats"))
	if err != nil {
		return 0, nil, err
	}
	total := int64(-1)
	by := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		key, value, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		if key == "total_commands_processed" {
			if total, err = strconv.ParseInt(value, 10, 64); err != nil {
				return 0, nil, fmt.Errorf("INFO stats: %q", line)
			}
			continue
		}
		// cmdstat_get:calls=3,usec=…
		name, isCmd := strings.CutPrefix(key, "cmdstat_")
		if !isCmd {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(value, "calls="), ",")
		n, err := strconv.ParseInt(calls, 10, 64)
		if err != nil {
			return 0, nil, fmt.Errorf("INFO commandstats: %q", line)
		}
		by[name] = n
	}
	if total < 0 {
		return 0, nil, fmt.Errorf("INFO stats: no total_commands_processed")
	}
	return total, by, nil
}
