package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"

	"stripe-webhooks/pkg/config"
	"stripe-webhooks/pkg/queue"
	"stripe-webhooks/pkg/store"
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
	serverURL, dbName string
	dir               string
	redis             *exec.Cmd
	redisAddr         string
	worker, ingest    *proc
	workerPath        string
	lastJob           time.Time
}

// startIdle starts the idle stack, has the worker process idleJobs jobs,
// and returns once they are processed.
func startIdle(ctx context.Context, serverURL, dbName, bin string, env []string, ns string) (_ *idleStack, err error) {
	s := &idleStack{serverURL: serverURL}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.dir, err = os.MkdirTemp("", "sw-bench-idle-"); err != nil {
		return nil, err
	}
	link := func(name string) (string, error) {
		target, err := filepath.Abs(filepath.Join(bin, name))
		if err != nil {
			return "", err
		}
		path := filepath.Join(s.dir, "idle-"+name)
		return path, os.Symlink(target, path)
	}
	if s.workerPath, err = link("worker"); err != nil {
		return nil, err
	}
	ingestPath, err := link("ingest")
	if err != nil {
		return nil, err
	}
	port, err := serverPort()
	if err != nil {
		return nil, err
	}
	s.redisAddr = "127.0.0.1:" + strconv.Itoa(port)
	s.redis = exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction", "--dir", s.dir)
	if err := s.redis.Start(); err != nil {
		return nil, fmt.Errorf("redis-server: %w", err)
	}
	if err := waitRedis(s.redisAddr); err != nil {
		return nil, err
	}
	dbURL, err := createDatabase(ctx, serverURL, dbName)
	if err != nil {
		return nil, err
	}
	s.dbName = dbName

	// The worker's environment names the private server alone: every
	// REDIS_* of the bench's own environment is left out.
	var workerEnv []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "REDIS_") {
			workerEnv = append(workerEnv, kv)
		}
	}
	workerEnv = append(workerEnv, "DATABASE_URL="+dbURL, "REDIS_HOST=127.0.0.1", "REDIS_PORT="+strconv.Itoa(port), "WORK_NAMESPACE="+ns)
	if s.worker, err = startProc(ctx, s.workerPath, nil, workerEnv, "WORKER_HTTP_PORT"); err != nil {
		return nil, err
	}
	if s.ingest, err = startProc(ctx, ingestPath, nil, withEnv(env, "DATABASE_URL="+dbURL, "WORK_NAMESPACE="+ns+"-idle"), "PORT"); err != nil {
		return nil, err
	}

	st, err := store.Open(dbURL, store.Options{MaxConns: 4})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	pool := queue.NewPool(config.Redis{Host: "127.0.0.1", Port: port, Namespace: ns}, 4)
	defer pool.Close()
	if err := seed(ctx, st, queue.NewEnqueuer(ns, pool), idleJobs); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(settleWait)
	for {
		left, err := countEvents(st, false)
		if err != nil {
			return nil, err
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("idle worker: %d of %d seeded events unprocessed after %s", left, idleJobs, settleWait)
		}
		if !sleep(ctx, 50*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
	s.lastJob = time.Now()
	return s, nil
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
	conn, err := redis.Dial("tcp", s.redisAddr, redis.DialConnectTimeout(time.Second), redis.DialReadTimeout(5*time.Second))
	if err != nil {
		return Idle{}, err
	}
	defer conn.Close()
	began := time.Now()
	w0, i0 := processCPU(s.worker.pid()), processCPU(s.ingest.pid())
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
	w1, i1 := processCPU(s.worker.pid()), processCPU(s.ingest.pid())
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
	for _, p := range []*proc{s.ingest, s.worker} {
		if p != nil {
			p.stop()
		}
	}
	if s.redis != nil && s.redis.Process != nil {
		_ = s.redis.Process.Kill()
		_ = s.redis.Wait()
	}
	if s.dbName != "" {
		dropDatabase(s.serverURL, s.dbName)
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

func waitRedis(addr string) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		c, err := redis.Dial("tcp", addr, redis.DialConnectTimeout(200*time.Millisecond))
		if err == nil {
			_, err = c.Do("PING")
			c.Close()
			if err == nil {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("redis-server at %s did not answer", addr)
}

// serverPort returns a free port for a server the bench starts, drawn from
// below the kernel's ephemeral range so that no outbound connection takes
// it meanwhile.
func serverPort() (int, error) {
	low, high := 10000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				high = n
			}
		}
	}
	if high-low < 1000 {
		low, high = 61000, 65535
	}
	for range 1000 {
		port := low + rand.IntN(high-low)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		_ = l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no free port in [%d, %d)", low, high)
}
